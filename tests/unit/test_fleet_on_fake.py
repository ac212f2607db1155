"""A Fleet's networks and machines are created and removed through its provider
(dcnlab.fleet.provider.Inventory), labelled with its run, and a teardown removes
what its run owns and nothing else. On the fake provider of tests/unit/fakes.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fakes import FakeProvider, fleet_on_fake

from dcnlab.core.errors import HypervisorError, ProvisionError
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.provider import Owner

OTHER = Owner("other-run", "other")


def _fleet(tmp_path: Path, nodes: int = 3) -> tuple[Fleet, FakeProvider]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fleet, provider = fleet_on_fake(run_dir, nodes=nodes)
    # A direct-kernel image: identity on the kernel line, no seed to write.
    fleet.image = dataclasses.replace(fleet.image, kernel=tmp_path / "vmlinuz")
    fleet.run_key.with_name(fleet.run_key.name + ".pub").write_text("ssh-ed25519 AAAA test\n")
    return fleet, provider


def test_a_defined_node_carries_the_run_label_and_the_fleet_networks(tmp_path: Path) -> None:
    fleet, provider = _fleet(tmp_path, nodes=2)
    plan = fleet.plan.node(3, fleet.spec.networks)
    node = fleet.define_node(plan, tmp_path / "dcn3.qcow2")
    assert provider.calls == [("define", plan.domain)]
    (machine,) = provider.defined
    assert machine.owner == fleet.owner == Owner(fleet.record.run_id, fleet.name)
    assert [n.name for n in machine.networks.values()] == [fleet.plan.network(i).name for i in (0, 1)]
    assert machine.boot.kernel == tmp_path / "vmlinuz"
    assert f"systemd.hostname={plan.name}" in machine.boot.cmdline
    assert provider.state(plan.domain) == "shut-off"  # defined, not started
    assert fleet.nodes["dcn3"] is node
    assert 3 in fleet.record.nodes
    assert "dcn3" in fleet.access.ssh_config.read_text()


def test_removing_a_node_undefines_its_machine_only(tmp_path: Path) -> None:
    fleet, provider = _fleet(tmp_path)
    gone = fleet.node("dcn2").domain
    fleet.remove_node("dcn2")
    assert provider.calls == [("undefine", gone)]
    assert provider.state(gone) == "absent"
    assert [provider.state(fleet.node(n).domain) for n in ("dcn1", "dcn3")] == ["running", "running"]
    assert fleet.record.nodes == [1, 3]
    assert "dcn2" not in fleet.access.ssh_config.read_text()


def test_a_machine_of_another_run_is_never_removed(tmp_path: Path) -> None:
    fleet, provider = _fleet(tmp_path)
    domain = fleet.node("dcn2").domain
    provider.owners[domain] = OTHER
    with pytest.raises(ProvisionError, match="not owned by run"):
        fleet.remove_node("dcn2")
    assert provider.state(domain) == "running"


def test_teardown_removes_what_the_run_owns_and_nothing_else(tmp_path: Path) -> None:
    fleet, provider = _fleet(tmp_path)
    fleet.record.uri, fleet.record.embedded = "fake:///", False
    provider.states["foreign"], provider.owners["foreign"] = "running", OTHER
    provider.networks["dcnlab-other-n0"] = OTHER
    run_dir = fleet.run_dir
    fleet.down()
    assert provider.calls == [("remove_owned", fleet.record.run_id), ("close",)]
    assert provider.states == {"foreign": "running"}
    assert provider.networks == {"dcnlab-other-n0": OTHER}
    assert not run_dir.exists()


def test_an_unreachable_engine_fails_the_create_and_the_teardown_asks_it_nothing(tmp_path: Path) -> None:
    fleet, provider = _fleet(tmp_path)
    fleet.record.uri, fleet.record.embedded = "fake:///", False
    fleet.created = False  # as a fleet is before its create
    provider.fail_next = HypervisorError("cannot reach libvirt at fake:///: no daemon")
    with pytest.raises(HypervisorError, match="cannot reach libvirt"):
        fleet._create(fleet.spec)
    assert not fleet.created
    fleet.down()
    # One error, the cause: no second attempt to reach the engine in the teardown.
    assert provider.calls == [("reach",), ("close",)]
