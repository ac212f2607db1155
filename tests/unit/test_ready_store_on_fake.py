"""Saving a converged cluster to the ready-state cache and bringing it back,
on the fake provider: the order of the engine calls, and what a failed save
leaves (the nodes running again, no entry)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakeProvider, fleet_on_fake

from dcnlab.core.errors import CommandError, HypervisorError, ProvisionError
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.fleet.provider import POWER, NotApplicable
from dcnlab.ready import store
from dcnlab.ready.store import ReadyKey


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Fleet, FakeProvider]:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path / "cache"))
    fleet, provider = fleet_on_fake(tmp_path / "run")
    (fleet.run_dir / "disks").mkdir(parents=True)
    for name in fleet.nodes:
        (fleet.run_dir / "disks" / f"{name}.qcow2").write_text(f"overlay of {name}\n")
    fleet.run_key.write_text("private key\n")
    return fleet, provider


KEY = ReadyKey((("format", "1"), ("test", "fake")))


def test_a_save_freezes_saves_and_brings_back_every_node(fake: tuple[Fleet, FakeProvider]) -> None:
    fleet, provider = fake
    state = store.save(fleet, KEY, None, lambda _line: None)
    actions = [c[0] if c[0] != "power" else c[2] for c in provider.calls]
    assert actions == ["suspend"] * 3 + ["save"] * 3 + ["restore"] * 3 + ["resume"] * 3
    assert all(c[3] == "as saved" for c in provider.calls if c[0] == "restore")
    assert {fleet.domain_state(n) for n in fleet.nodes} == {"running"}
    assert state.path == store.ready_dir() / KEY.digest
    assert [n.name for n in state.nodes] == ["dcn1", "dcn2", "dcn3"]
    assert [n.uuid for n in state.nodes] == [provider.uuid(fleet.node(n).domain) for n in fleet.nodes]
    assert (state.path / "dcn2.qcow2").read_text() == "overlay of dcn2\n"
    assert store.lookup(KEY) is not None


def test_a_failed_save_restores_the_nodes_already_saved_and_writes_no_entry(fake: tuple[Fleet, FakeProvider]) -> None:
    fleet, provider = fake
    original = provider.save

    def second_fails(domain: str, dest: Path) -> None:
        if len([c for c in provider.calls if c[0] == "save"]) == 1:
            provider.fail_next = HypervisorError("No space left on device")
        original(domain, dest)

    provider.save = second_fails  # type: ignore[method-assign]
    with pytest.raises(ProvisionError, match="cannot save dcn2: No space left on device"):
        store.save(fleet, KEY, None, lambda _line: None)
    assert {fleet.domain_state(n) for n in fleet.nodes} == {"running"}
    restored = [c for c in provider.calls if c[0] == "restore"]
    assert [c[1] for c in restored] == [fleet.node("dcn1").domain]  # only the one saved
    assert store.lookup(KEY) is None
    assert not list(store.ready_dir().glob(".*tmp"))


def test_an_engine_without_snapshots_cannot_save_and_nothing_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path / "cache"))
    fleet, provider = fleet_on_fake(tmp_path, capabilities=frozenset({POWER}))
    with pytest.raises(NotApplicable, match="saving a converged cluster needs the engine to offer 'snapshots'"):
        store.save(fleet, KEY, None, lambda _line: None)
    assert provider.calls == []
    assert not (tmp_path / "cache").exists()


def test_rekey_tries_again_when_a_resumed_guest_drops_the_first_session(
    fake: tuple[Fleet, FakeProvider], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet, _provider = fake
    (tmp_path / "run" / "old_key").write_text("the saving run's key\n")
    fleet.run_key.with_name(fleet.run_key.name + ".pub").write_text("ssh-ed25519 AAAA this-run\n")
    attempts: dict[str, int] = {}
    given: list[tuple[str, str | None]] = []

    def connect(node: Node, network: int = 0) -> None:
        attempts[node.name] = attempts.get(node.name, 0) + 1
        if attempts[node.name] == 1:
            raise CommandError(f"[{node.name}] cannot connect: SSHException: No existing session", None)

    def run_with_clock(node: Node, script: str, stdin: str | None, timeout: float) -> None:
        assert node.access.key == tmp_path / "run" / "old_key"  # the saved state's key opens the door
        given.append((node.name, stdin))

    monkeypatch.setattr(Node, "connect", connect)
    monkeypatch.setattr(store, "run_with_clock", run_with_clock)
    monkeypatch.setattr(time, "sleep", lambda _s: None)  # wait_until's pause between tries
    store.rekey(fleet, tmp_path / "run" / "old_key")
    assert attempts == {"dcn1": 2, "dcn2": 2, "dcn3": 2}
    assert sorted(given) == [(n, "ssh-ed25519 AAAA this-run\n") for n in ("dcn1", "dcn2", "dcn3")]
