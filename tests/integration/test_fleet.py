"""The session fleet (3 nodes, 2 networks by default): reach every node over
every network, check identity and wiring, then grow and shrink it."""

from __future__ import annotations

import json

import pytest

from dcnlab.core.errors import CommandError
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node

pytestmark = pytest.mark.integration


def test_every_node_answers_over_every_network(fleet: Fleet) -> None:
    for node in fleet.nodes.values():
        for net in range(fleet.spec.networks):
            res = node.run(["hostname"], network=net)
            assert res.stdout.strip() == node.name, f"{node.address(net)} is not {node.name}"


def test_nic_mac_and_address_follow_the_plan(dcn_node: Node) -> None:
    links = {link["ifname"]: link for link in json.loads(dcn_node.run("ip -j addr show").stdout)}
    for nic in dcn_node.plan.nics:
        link = links[nic.guest_dev]
        assert link["address"] == nic.mac, f"{nic.guest_dev} has MAC {link['address']}, plan says {nic.mac}"
        addrs = [a["local"] for a in link["addr_info"] if a["family"] == "inet"]
        assert addrs == [str(nic.address)], f"{nic.guest_dev} has {addrs}, plan says {nic.address}"


def test_nodes_reach_each_other_on_every_network(fleet: Fleet) -> None:
    nodes = list(fleet.nodes.values())
    for a in nodes:
        for b in nodes:
            if a is b:
                continue
            for net in range(fleet.spec.networks):
                a.run(["ping", "-c1", "-W3", b.address(net)], timeout=20)


def test_machine_ids_are_unique(fleet: Fleet) -> None:
    ids = {n.name: n.run("cat /etc/machine-id").stdout.strip() for n in fleet.nodes.values()}
    assert all(ids.values()), ids
    assert len(set(ids.values())) == len(ids), f"machine-ids repeat: {ids}"


def test_testinfra_host_reaches_the_node(dcn_host: object, dcn_node: Node) -> None:
    assert dcn_host.check_output("hostname") == dcn_node.name  # type: ignore[attr-defined]
    assert dcn_host.file("/root/.ssh/authorized_keys").mode == 0o600  # type: ignore[attr-defined]


def test_fabric_connection_on_second_network(dcn_node: Node) -> None:
    res = dcn_node.connection(1).run("ip -4 -o addr show eth1", hide=True)
    assert dcn_node.address(1) in res.stdout


def test_failed_command_carries_its_result(dcn_node: Node) -> None:
    with pytest.raises(CommandError) as info:
        dcn_node.run("echo out; echo err >&2; exit 3")
    result = info.value.result
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")  # type: ignore[attr-defined]
    assert dcn_node.name in str(info.value)


def test_command_timeout_is_enforced(dcn_node: Node) -> None:
    with pytest.raises(CommandError, match="did not finish within 2s"):
        dcn_node.run("sleep 30", timeout=2)
    assert dcn_node.run("true").ok  # the node is still usable afterwards


def test_libvirt_objects_carry_the_run_label(fleet: Fleet) -> None:
    for node in fleet.nodes.values():
        assert fleet.machines.owner(node.domain) == fleet.owner
    assert fleet.console_log("dcn1").stat().st_size > 0


def test_grow_then_shrink(fleet: Fleet) -> None:
    before = set(fleet.nodes)
    added = fleet.add_node()
    try:
        assert added.name not in before
        assert added.run("hostname").stdout.strip() == added.name
        first = fleet.nodes["dcn1"]
        for net in range(fleet.spec.networks):
            first.run(["ping", "-c1", "-W3", added.address(net)], timeout=20)
    finally:
        fleet.remove_node(added.name)
    assert set(fleet.nodes) == before
    assert fleet.machines.state(added.domain) == "absent"
    assert not (fleet.run_dir / "disks" / f"{added.name}.qcow2").exists()
