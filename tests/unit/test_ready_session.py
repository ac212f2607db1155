"""When the ready-state cache may hold the session's cluster (dcnlab.ready.session.cache_entry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage
from dcnlab.ready import session

SPEC = load_spec(Path(DEFAULT_SPEC))


def image(tmp_path: Path, login_user: str | None = None) -> BuiltImage:
    return BuiltImage(
        recipe="dcn-debian",
        digest="0" * 16,
        disk=tmp_path / "disk.qcow2",
        kernel=tmp_path / "vmlinuz",
        initrd=None,
        cmdline="",
        built_seconds=0.0,
        login_user=login_user,
    )


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path / "cache"))


def test_off_is_off(tmp_path: Path) -> None:
    assert session.cache_entry("off", FleetSpec(name="t"), image(tmp_path), SPEC, "qemu") is None


def test_use_gives_the_key_and_no_entry_in_an_empty_cache(tmp_path: Path) -> None:
    entry = session.cache_entry("use", FleetSpec(name="t"), image(tmp_path), SPEC, "qemu")
    assert entry is not None
    key, state = entry
    assert state is None
    assert key.as_dict()["domain_type"] == "qemu"
    assert session.cache_entry("refresh", FleetSpec(name="t"), image(tmp_path), SPEC, "qemu") == (key, None)


def test_a_login_user_or_uefi_keeps_the_cache_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert session.cache_entry("use", FleetSpec(name="t"), image(tmp_path, login_user="dcnadmin"), SPEC, "qemu") is None
    monkeypatch.setattr(session, "resolve_firmware", lambda *_args: ("uefi", "asked for"))
    assert session.cache_entry("use", FleetSpec(name="t"), image(tmp_path), SPEC, "qemu") is None
