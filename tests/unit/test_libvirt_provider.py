"""The libvirt provider's partition bookkeeping, with its ebtables and tap lookups stood in for."""

from __future__ import annotations

import pytest

from dcnlab.core.errors import CommandError, HypervisorError
from dcnlab.fleet.libvirt.provider import LibvirtProvider

A = [("dcnlab-dcn1", "52:54:00:dc:00:01")]
B = [("dcnlab-dcn2", "52:54:00:dc:00:02"), ("dcnlab-dcn3", "52:54:00:dc:00:03")]
TAPS = {"52:54:00:dc:00:01": "t1", "52:54:00:dc:00:02": "t2", "52:54:00:dc:00:03": "t3"}


def refuse() -> object:
    raise AssertionError("no libvirt connection in this test")


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> tuple[LibvirtProvider, list[tuple[str, str, str]], list[str]]:
    p = LibvirtProvider(refuse)  # type: ignore[arg-type]
    calls: list[tuple[str, str, str]] = []
    lookups: list[str] = []
    failing: list[str] = []

    def taps(nics: list[tuple[str, str]]) -> list[str]:
        lookups.append(",".join(m for _d, m in nics))
        return [TAPS[m] for _d, m in nics]

    def ebtables(action: str, rule: list[str]) -> None:
        if failing and failing[0] == rule[1]:
            failing.pop(0)
            raise CommandError(f"ebtables {action}: busy", None)
        calls.append((action, rule[1], rule[3]))

    monkeypatch.setattr(p, "taps", taps)
    monkeypatch.setattr(p, "ebtables", ebtables)
    p.failing = failing  # type: ignore[attr-defined]
    return p, calls, lookups


def test_unblock_removes_exactly_what_block_added_without_looking_up_taps_again(
    provider: tuple[LibvirtProvider, list[tuple[str, str, str]], list[str]],
) -> None:
    p, calls, lookups = provider
    p.block(A, B)
    added = [c for c in calls if c[0] == "-A"]
    assert sorted((i, o) for _a, i, o in added) == sorted([("t1", "t2"), ("t2", "t1"), ("t1", "t3"), ("t3", "t1")])
    looked = len(lookups)
    p.unblock(A, B)
    removed = [(i, o) for act, i, o in calls if act == "-D"]
    assert removed == [(i, o) for _a, i, o in added]
    assert len(lookups) == looked  # the node may be off by now: its taps are not read again


def test_an_unblock_that_fails_half_way_leaves_only_the_rest_for_the_next(
    provider: tuple[LibvirtProvider, list[tuple[str, str, str]], list[str]],
) -> None:
    p, calls, _lookups = provider
    p.block(A, B)
    p.failing.append("t3")  # type: ignore[attr-defined]
    with pytest.raises(HypervisorError, match="ebtables -D: ebtables -D: busy"):
        p.unblock(A, B)
    first = [(i, o) for act, i, o in calls if act == "-D"]
    p.unblock(A, B)
    second = [(i, o) for act, i, o in calls if act == "-D"][len(first) :]
    assert second == [("t3", "t1")]
    assert sorted(first + second) == sorted([("t1", "t2"), ("t2", "t1"), ("t1", "t3"), ("t3", "t1")])
