"""A fleet over several hosts: placement, addresses, the stretched networks'
commands, partitions by MAC, and the fence devices with their preflight."""

import ipaddress
from pathlib import Path

import pytest

from dcnlab.cluster.fencing import fence_listing_problems, fence_placement_problems
from dcnlab.cluster.pcs import bootstrap_plan, fence_devices, host_map, stonith_argv
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.hosts import (
    UNDERLAY_MTU,
    HostPlan,
    host_network,
    lab_hosts,
    nodes_on,
    place,
    underlay_network,
    vni,
)
from dcnlab.fleet.libvirt.lab import tls_listen_conf, tls_uri, vxlan_argvs
from dcnlab.fleet.libvirt.multihost import mac_partition_rules
from dcnlab.fleet.spec import FleetSpec

PLAN = FleetSpec(name="t1").plan(private_hypervisor=True)
NODES = [PLAN.node(i, networks=2) for i in (1, 2, 3)]
HOSTS = lab_hosts(2)
H1, H2 = HOSTS


def test_lab_hosts_are_numbered_on_the_underlay() -> None:
    assert [(h.name, h.index, str(h.underlay)) for h in HOSTS] == [("h1", 1, "172.30.0.1"), ("h2", 2, "172.30.0.2")]
    with pytest.raises(ConfigError, match="1 to 8 hosts"):
        lab_hosts(9)
    with pytest.raises(ConfigError, match="1 to 8 hosts"):
        lab_hosts(0)


def test_the_underlay_must_stay_apart_from_the_fleet_subnet() -> None:
    with pytest.raises(ConfigError, match=r"overlaps the fleet's subnet 10\.77\.0\.0/16"):
        lab_hosts(2, "10.77.200.0/24", "10.77.0.0/16")
    with pytest.raises(ConfigError, match="private IPv4"):
        underlay_network("8.8.8.0/24")
    with pytest.raises(ConfigError, match="not an IPv4 network"):
        underlay_network("nonsense")


def test_spread_places_each_node_on_the_least_loaded_host() -> None:
    assert place(["dcn1", "dcn2", "dcn3"], HOSTS) == {"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}
    # A node added later goes where fewest run.
    assert place(["dcn4"], HOSTS, already={"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}) == {"dcn4": "h2"}
    assert nodes_on({"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}, "h1") == ["dcn1", "dcn3"]


def test_pinned_nodes_go_where_they_are_pinned_and_spread_counts_them() -> None:
    got = place(["dcn1", "dcn2", "dcn3"], HOSTS, pinned={"dcn1": "h2", "dcn2": "h2"})
    assert got == {"dcn1": "h2", "dcn2": "h2", "dcn3": "h1"}
    with pytest.raises(ConfigError, match="pinned to host 'h9'"):
        place(["dcn1"], HOSTS, pinned={"dcn1": "h9"})


def test_capacity_is_honoured_and_a_full_lab_named() -> None:
    small = [HostPlan("a", 1, ipaddress.IPv4Address("172.30.0.1"), capacity=1), HostPlan("b", 2, H2.underlay, 1)]
    assert place(["dcn1", "dcn2"], small) == {"dcn1": "a", "dcn2": "b"}
    with pytest.raises(ConfigError, match="take 2 node"):
        place(["dcn1", "dcn2", "dcn3"], small)
    with pytest.raises(ConfigError, match="host a takes at most 1"):
        place(["dcn1", "dcn2"], small, pinned={"dcn1": "a", "dcn2": "a"})


def test_each_host_has_its_own_address_and_bridge_mac_on_a_network() -> None:
    net = PLAN.network(1)
    on1, on2 = host_network(net, H1), host_network(net, H2)
    assert (str(on1.gateway), on1.mac) == ("10.77.1.1", net.mac)  # host 1 is the single-host gateway
    assert (str(on2.gateway), on2.mac) == ("10.77.1.2", "52:54:00:dd:01:02")
    assert on2.bridge == net.bridge
    assert on2.name == net.name
    # No host address is a node's.
    assert all(str(n.nics[1].address) not in ("10.77.1.1", "10.77.1.2") for n in NODES)


def test_vnis_differ_per_network_and_per_fleet() -> None:
    assert vni("t1", 0) != vni("t1", 1)
    assert vni("t1", 0) != vni("t2", 0)
    assert all(0 < vni(name, i) < 2**24 for name in ("a", "t1", "pt12345") for i in range(8))


def test_a_stretched_network_floods_to_every_peer_over_the_underlay() -> None:
    net = PLAN.network(0)
    peers = [ipaddress.IPv4Address("172.30.0.2"), ipaddress.IPv4Address("172.30.0.3")]
    argvs = vxlan_argvs(net, "t1", ipaddress.IPv4Address("172.30.0.1"), peers)
    add = argvs[0]
    assert add[:6] == ["ip", "link", "add", "vx0", "type", "vxlan"]
    assert add[add.index("id") + 1] == str(vni("t1", 0))
    assert add[add.index("dstport") + 1] == "4789"
    assert add[add.index("local") + 1] == "172.30.0.1"
    floods = [a for a in argvs if a[:3] == ["bridge", "fdb", "append"]]
    assert [a[-1] for a in floods] == ["172.30.0.2", "172.30.0.3"]
    assert all(a[3] == "00:00:00:00:00:00" for a in floods)
    assert ["ip", "link", "set", "vx0", "master", net.bridge] in argvs
    assert UNDERLAY_MTU - 50 == 1500


def test_tls_lane_names_the_host_certificate_and_the_client_pki() -> None:
    conf = tls_listen_conf(H2.underlay, Path("/run/x/pki"), "h2")
    assert 'listen_addr = "172.30.0.2"' in conf
    assert "listen_tls = 1" in conf
    assert "listen_tcp = 0" in conf
    assert 'cert_file = "/run/x/pki/h2-servercert.pem"' in conf
    assert tls_uri(H2.underlay, Path("/run/x/pki/client")) == "qemu+tls://172.30.0.2/system?pkipath=/run/x/pki/client"


def test_a_partition_drops_by_mac_at_each_side_s_local_taps() -> None:
    a, b = "52:54:00:dc:00:01", "52:54:00:dc:00:02"
    # dcn1 (side a) on this host, dcn2 (side b) on another.
    rules = mac_partition_rules({a: "tap1"}, [a], [b])
    assert rules == [["-i", "tap1", "-d", b, "-j", "DROP"], ["-o", "tap1", "-s", b, "-j", "DROP"]]
    # The other host holds dcn2's tap: its rules cut the other direction there too.
    assert mac_partition_rules({b: "tap2"}, [a], [b]) == [
        ["-i", "tap2", "-d", a, "-j", "DROP"],
        ["-o", "tap2", "-s", a, "-j", "DROP"],
    ]
    # A host with neither side's NICs gets nothing.
    assert mac_partition_rules({}, [a], [b]) == []


PLACEMENT = {"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}


def test_one_fence_device_per_host_maps_only_that_host_s_nodes() -> None:
    spec = load_spec(DEFAULT_SPEC)
    devices = fence_devices(spec, NODES, PLAN, HOSTS, PLACEMENT)
    assert [(d.id, d.address, [n.name for n in d.nodes]) for d in devices] == [
        ("fence_dcn-h1", "10.77.0.1", ["dcn1", "dcn3"]),
        ("fence_dcn-h2", "10.77.0.2", ["dcn2"]),
    ]
    argv = stonith_argv(spec, devices[1].nodes, devices[1].address, devices[1].id)
    assert argv[2] == "fence_dcn-h2"
    assert "ipaddr=10.77.0.2" in argv
    assert "pcmk_host_map=dcn2:dcnlab-dcn2" in argv
    assert "pcmk_host_check=static-list" in argv
    steps = [s.argv for s in bootstrap_plan(spec, NODES, PLAN, devices=devices).configure]
    assert sum(1 for argv in steps if "stonith" in argv) == 2
    # One host: the one device, as ever.
    assert [d.id for d in fence_devices(spec, NODES, PLAN)] == ["fence_dcn"]
    unfenced = parse_spec("fencing: {method: none}\ncluster: {properties: {stonith-enabled: false}}\n", "t.yaml")
    assert fence_devices(unfenced, NODES, PLAN, HOSTS, PLACEMENT) == []


def test_a_node_placed_nowhere_is_refused() -> None:
    with pytest.raises(ConfigError, match="dcn3 are placed on none"):
        fence_devices(load_spec(DEFAULT_SPEC), NODES, PLAN, HOSTS, {"dcn1": "h1", "dcn2": "h2"})


def test_the_placement_preflight_refuses_a_device_mapping_another_host_s_node() -> None:
    devices = fence_devices(load_spec(DEFAULT_SPEC), NODES, PLAN, HOSTS, PLACEMENT)
    right = {d.id: host_map(d.nodes) for d in devices}
    assert fence_placement_problems(devices, right) == []
    wrong = {**right, "fence_dcn-h2": "dcn2:dcnlab-dcn2;dcn3:dcnlab-dcn3"}
    (problem,) = fence_placement_problems(devices, wrong)
    assert "fence_dcn-h2" in problem
    assert "dcn3 not on host h2" in problem
    short = {**right, "fence_dcn-h1": "dcn1:dcnlab-dcn1"}
    (problem,) = fence_placement_problems(devices, short)
    assert "not dcn3, which host h1 runs" in problem
    (problem,) = fence_placement_problems(devices, {**right, "fence_dcn-h2": None})
    assert "device fence_dcn-h2 for host h2 (dcn2) is missing" in problem


def test_each_listener_must_list_exactly_its_host_s_domains() -> None:
    expected = {"h1": {"dcnlab-dcn1", "dcnlab-dcn3"}, "h2": {"dcnlab-dcn2"}}
    assert fence_listing_problems(expected, expected, exact=True) == []
    listed = {"h1": {"dcnlab-dcn1"}, "h2": {"dcnlab-dcn2", "dcnlab-dcn3"}}
    assert fence_listing_problems(expected, listed, exact=True) == [
        "host h1's listener does not list dcnlab-dcn3",
        "host h2's listener lists dcnlab-dcn3, which the placement puts on no node of that host",
    ]
    # One host: others' domains (a shared libvirt) are no problem, missing ones are.
    assert fence_listing_problems({"": {"a"}}, {"": {"a", "b"}}, exact=False) == []
    assert fence_listing_problems({"": {"a", "c"}}, {"": {"a"}}, exact=False) == ["the listener does not list c"]
