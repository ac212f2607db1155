import ipaddress

import pytest

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import FleetSpec, fleet_tag


def test_defaults_are_three_nodes_on_two_networks() -> None:
    spec = FleetSpec(name="t1")
    assert (spec.nodes, spec.networks) == (3, 2)
    assert spec.memory_mib >= 768


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "Bad_Name"}, "fleet name"),
        ({"name": "x" * 21}, "fleet name"),
        ({"name": "t", "nodes": 0}, "--nodes 0"),
        ({"name": "t", "nodes": 33}, "--nodes 33"),
        ({"name": "t", "networks": 0}, "--networks 0"),
        ({"name": "t", "memory_mib": 512}, "too small"),
        ({"name": "t", "subnet": "nonsense"}, "not an IPv4 network"),
        ({"name": "t", "subnet": "10.0.0.0/24"}, "at most /21"),
        ({"name": "t", "subnet": "8.8.0.0/16"}, "private range"),
        ({"name": "t", "boot_timeout": 0.5}, "--boot-timeout 0.5: use 1 to 10800 seconds"),
        ({"name": "t", "boot_timeout": 99999}, "--boot-timeout 99999"),
    ],
)
def test_invalid_specs_name_the_problem(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        FleetSpec(**kwargs)  # type: ignore[arg-type]


def test_address_plan_is_deterministic_and_per_network() -> None:
    plan = FleetSpec(name="t1").plan()
    node = plan.node(2, networks=2)
    assert node.name == "dcn2"
    assert node.domain == "dcnlab-t1-dcn2"
    assert [str(n.address) for n in node.nics] == ["10.77.0.12", "10.77.1.12"]
    assert [n.guest_dev for n in node.nics] == ["eth0", "eth1"]
    assert node.nics[0].mac.startswith("52:54:00:")
    assert node.nics[1].mac.endswith(":01:02")
    assert plan.node(2, networks=2) == node  # same input, same plan
    net1 = plan.network(1)
    assert net1.cidr == ipaddress.ip_network("10.77.1.0/24")
    assert str(net1.gateway) == "10.77.1.1"
    assert net1.gateway not in [n.address for n in node.nics]


def test_interface_names_fit_the_kernel_limit() -> None:
    plan = FleetSpec(name="a-very-long-name-xx", nodes=32, networks=8).plan()
    for i in range(8):
        assert len(plan.network(i).bridge) <= 15
    for n in plan.node(32, networks=8).nics:
        assert len(n.tap) <= 15


def test_macs_and_taps_are_unique_within_a_fleet() -> None:
    plan = FleetSpec(name="t1").plan()
    nics = [nic for k in range(1, 33) for nic in plan.node(k, networks=8).nics]
    assert len({n.mac for n in nics}) == len(nics)
    assert len({n.tap for n in nics}) == len(nics)


def test_fleet_tag_differs_between_fleets() -> None:
    assert fleet_tag("t1") != fleet_tag("t2")
