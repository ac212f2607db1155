"""The ready-state cache's pure parts: what its key covers and ignores, which
entries it trusts, what it evicts, and the XML that lets a saved guest come
back under another fleet's names."""

from __future__ import annotations

import dataclasses
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from domxml import small_domain_xml

from dcnlab.cluster.spec import parse_spec
from dcnlab.fleet.libvirt.domainxml import network_xml
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage
from dcnlab.ready import store as readystate
from dcnlab.ready.store import ReadyState, SavedNode, ready_key

SPEC = """
cluster: {name: dcn}
workloads:
  - id: vip
    type: ipaddr2
    network: 0
    address: 10.77.0.100
"""

IMAGE = BuiltImage(
    recipe="dcn-debian",
    digest="d997512adccc9979",
    disk=Path("/cache/images/dcn-debian-d997512adccc9979/disk.qcow2"),
    kernel=None,
    initrd=None,
    cmdline="root=/dev/vda rw",
    built_seconds=0.0,
)


def _key(**changes: object) -> readystate.ReadyKey:
    args: dict[str, object] = {
        "image": IMAGE,
        "fleet": FleetSpec(name="pt1"),
        "cluster": parse_spec(SPEC, "a.yaml"),
        "domain_type": "qemu",
        "hypervisor_versions": "libvirt 9000000; QEMU emulator version 7.2.0",
        "sources": "abc",
    }
    args.update(changes)
    return ready_key(**args)  # type: ignore[arg-type]


def test_key_ignores_the_fleet_name_and_where_the_spec_lives() -> None:
    base = _key()
    assert _key(fleet=FleetSpec(name="other", boot_timeout=500)) == base
    assert _key(cluster=parse_spec("# a comment moves every line\n" + SPEC, "elsewhere.yaml")) == base
    thresholds = SPEC + "certification:\n  thresholds:\n    default: {downtime: 30}\n"
    assert _key(cluster=parse_spec(thresholds, "a.yaml")).digest == base.digest


@pytest.mark.parametrize(
    "change",
    [
        {"image": dataclasses.replace(IMAGE, digest="0000000000000000")},
        {"image": dataclasses.replace(IMAGE, disk=Path("/elsewhere/disk.qcow2"))},
        {"fleet": FleetSpec(name="pt1", nodes=4)},
        {"fleet": FleetSpec(name="pt1", networks=3)},
        {"fleet": FleetSpec(name="pt1", memory_mib=2048)},
        {"cluster": parse_spec(SPEC.replace("10.77.0.100", "10.77.0.101"), "a.yaml")},
        {"domain_type": "kvm"},
        {"hypervisor_versions": "libvirt 9000000; QEMU emulator version 8.0.0"},
        {"sources": "abd"},
    ],
    ids=["image", "image-path", "nodes", "networks", "memory", "spec", "accelerator", "qemu", "harness"],
)
def test_key_changes_with_what_shapes_the_saved_guests(change: dict[str, object]) -> None:
    assert _key(**change).digest != _key().digest


def test_sources_digest_follows_the_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    first = readystate.sources_digest(tmp_path, ("pkg", "b.py"))
    assert readystate.sources_digest(tmp_path, ("pkg", "b.py")) == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert readystate.sources_digest(tmp_path, ("pkg", "b.py")) != first


def _entry(root: Path, key: readystate.ReadyKey, *, skip: str = "", used: float = 0.0) -> Path:
    path = root / key.digest
    path.mkdir(parents=True)
    nodes = [SavedNode("dcn1", 1, "0b6c6a52-5a4e-4c1e-9d1e-3f6a1c2b3d4e", ("52:54:00:dc:00:01",))]
    for name in ("dcn1.save", "dcn1.qcow2", readystate.KEY_FILE):
        if name != skip:
            (path / name).write_bytes(b"x")
    state = ReadyState(path, key.as_dict(), tuple(nodes), 1.0, "pt1", 2.5)
    (path / readystate.MANIFEST).write_text(json.dumps(state.to_dict()))
    if used:
        os.utime(path / readystate.MANIFEST, (used, used))
    return path


def test_an_entry_is_used_only_whole_and_for_its_own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    key = _key()
    assert readystate.lookup(key) is None
    _entry(readystate.ready_dir(), key)
    found = readystate.lookup(key)
    assert found is not None
    assert found.node("dcn1").uuid.startswith("0b6c")
    # Same directory, other inputs (a collision or a hand edit): not trusted.
    manifest = readystate.ready_dir() / key.digest / readystate.MANIFEST
    data = json.loads(manifest.read_text())
    data["key"]["image"] = "dcn-debian-0000000000000000"
    manifest.write_text(json.dumps(data))
    assert readystate.lookup(key) is None


@pytest.mark.parametrize("missing", ["dcn1.save", "dcn1.qcow2", readystate.KEY_FILE])
def test_a_half_written_entry_is_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    _entry(readystate.ready_dir(), _key(), skip=missing)
    assert readystate.lookup(_key()) is None


def test_an_entry_of_another_format_is_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    path = _entry(readystate.ready_dir(), _key())
    data = json.loads((path / readystate.MANIFEST).read_text())
    data["format"] = readystate.FORMAT + 1
    (path / readystate.MANIFEST).write_text(json.dumps(data))
    assert readystate.lookup(_key()) is None


def test_evict_keeps_the_most_recently_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    root = readystate.ready_dir()
    paths = [_entry(root, _key(sources=f"s{i}"), used=1_000_000 + i) for i in range(5)]
    stale_tmp = root / ".abc.run.tmp"
    stale_tmp.mkdir()
    os.utime(stale_tmp, (1.0, 1.0))
    fresh_tmp = root / ".def.run.tmp"  # a save running now
    fresh_tmp.mkdir()
    removed = readystate.evict(keep=2)
    assert sorted(removed) == sorted([stale_tmp, *paths[:3]])
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    assert fresh_tmp.exists()


def test_macs_and_gateway_macs_do_not_depend_on_the_fleet_name() -> None:
    a, b = FleetSpec(name="pt1").plan(), FleetSpec(name="pt2").plan()
    assert [n.mac for n in a.node(2, networks=2).nics] == ["52:54:00:dc:00:02", "52:54:00:dc:01:02"]
    assert [n.mac for n in a.node(2, networks=2).nics] == [n.mac for n in b.node(2, networks=2).nics]
    assert a.network(1).mac == b.network(1).mac == "52:54:00:dc:01:00"
    assert a.network(1).bridge != b.network(1).bridge  # names stay per fleet
    assert ET.fromstring(network_xml(a.network(1))).find("mac").get("address") == "52:54:00:dc:01:00"  # type: ignore[union-attr]


def test_a_restored_domain_keeps_the_saved_uuid() -> None:
    xml = small_domain_xml("pt2", 1, "run", uuid="0b6c6a52-5a4e-4c1e-9d1e-3f6a1c2b3d4e")
    root = ET.fromstring(xml)
    assert root.findtext("uuid") == "0b6c6a52-5a4e-4c1e-9d1e-3f6a1c2b3d4e"
    assert root.findtext("name") == "dcnlab-pt2-dcn1"


def test_domain_names_carry_the_fleet_name_only_on_a_shared_hypervisor() -> None:
    # libvirt refuses a restore whose domain name differs from the saved one.
    assert FleetSpec(name="pt1").plan(private_hypervisor=True).node(1, 2).domain == "dcnlab-dcn1"
    assert FleetSpec(name="pt2").plan(private_hypervisor=True).node(1, 2).domain == "dcnlab-dcn1"
    assert FleetSpec(name="pt1").plan().node(1, 2).domain == "dcnlab-pt1-dcn1"


def test_the_fleet_comes_up_restored_only_when_its_first_user_needs_the_cluster() -> None:
    from types import SimpleNamespace

    from dcnlab.pytest_plugin.plugin import _RUNNING, _first_fleet_user_needs_a_cluster

    def config(running: tuple[str, ...] | None) -> Any:
        stash = pytest.Stash()
        if running is not None:
            stash[_RUNNING] = SimpleNamespace(fixturenames=running)
        return SimpleNamespace(stash=stash)

    # The test the fleet comes up for: this process's first on the fleet
    # (under xdist, whichever the scheduler sent first).
    assert _first_fleet_user_needs_a_cluster(config(("fleet", "cluster", "fault_cluster")))
    assert _first_fleet_user_needs_a_cluster(config(("fault_cluster", "cluster", "fleet")))
    # A preflight first wants freshly booted nodes: the cluster comes later, restored over them.
    assert not _first_fleet_user_needs_a_cluster(config(("fleet", "dcn_host")))
    assert not _first_fleet_user_needs_a_cluster(config(None))


def test_when_a_test_gets_a_fresh_cluster() -> None:
    from dcnlab.ready.session import SessionCluster

    sc = SessionCluster(current=None, state=None)  # type: ignore[arg-type]
    assert sc.renewal_needed(destructive=True) == ""  # nothing ran on it yet: it is fresh
    sc.used = True
    assert sc.renewal_needed(destructive=False) == ""
    assert sc.renewal_needed(destructive=True) == "destructive test"
    sc.spoiled = "after a failed test"
    assert sc.renewal_needed(destructive=False) == "after a failed test"
    assert sc.renewal_needed(destructive=True) == "after a failed test"


def test_refresh_counts_only_an_entry_saved_during_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    key = _key()
    _entry(readystate.ready_dir(), key)  # saved at 1.0 (wall clock)
    assert readystate.lookup_since(key, since=0.5) is not None  # another worker of this run saved it
    assert readystate.lookup_since(key, since=2.0) is None  # older than the run: refresh replaces it


def test_a_second_builder_of_the_same_entry_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dcnlab.core.errors import WaitTimeout

    monkeypatch.setenv("DCNLAB_CACHE", str(tmp_path))
    key, other = _key(), _key(sources="def")
    said: list[str] = []
    with readystate.building(key, said.append):
        with readystate.building(other, said.append, timeout=0.1):
            pass  # another key builds beside it
        assert said == []
        # flock conflicts between two open files even in one process: the
        # second session's view of it.
        held = r"another session to finish building .*lock .*dcn-ready-cache off"
        with pytest.raises(WaitTimeout, match=held), readystate.building(key, said.append, timeout=0.1):
            pytest.fail("took a lock another session holds")
        assert len(said) == 1
        assert "waiting to restore it" in said[0]
        assert readystate.clear_locks() == [readystate.ready_dir() / f".{other.digest}.lock"]  # not the held one
    with readystate.building(key, said.append, timeout=0.1):
        pass  # released: taken at once
    assert len(said) == 1
    assert readystate.clear_locks() == [readystate.ready_dir() / f".{key.digest}.lock"]
