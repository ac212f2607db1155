from pathlib import Path

import pytest

from dcnlab.cluster.corosync import (
    conf_node_names,
    corosync_conf,
    parse_cfgtool,
    parse_conf,
    parse_members,
    parse_quorumtool,
    render_conf,
    with_node,
    without_node,
)
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec
from dcnlab.core.errors import ClusterError, ConfigError
from dcnlab.fleet.spec import FleetSpec

DATA = Path(__file__).parent / "data"
DEFAULT = DEFAULT_SPEC
PLAN = FleetSpec(name="t1").plan()


def read(name: str) -> str:
    return (DATA / name).read_text()


# ------------------------------------------------------------ corosync-cfgtool


def test_cfgtool_with_tabs_as_printed() -> None:
    status = parse_cfgtool(read("corosync_cfgtool_pve_tabs.txt"))
    assert (status.local_nodeid, status.transport) == (1, "knet")
    (link,) = status.links
    assert (link.link, link.transport, link.address) == (0, "udp", "10.255.0.10")
    assert link.peers == ((1, "localhost"), (2, "connected"))
    assert link.connected(1)
    assert link.connected(2)
    assert status.all_connected()


def test_cfgtool_two_links_connected() -> None:
    status = parse_cfgtool(read("corosync_cfgtool_2links_2nodes.txt"))
    assert [(x.link, x.address) for x in status.links] == [(0, "10.2.10.1"), (1, "10.2.10.2")]
    assert status.link(1).connected(2)
    assert status.all_connected()


def test_cfgtool_links_down() -> None:
    status = parse_cfgtool(read("corosync_cfgtool_2links_3nodes_down.txt"))
    assert not status.all_connected()
    for link in status.links:
        assert link.down_peers() == [2, 3]
        assert link.status(3) == "disconnected"
        assert not link.connected(2)
    assert status.link(1).address == "10.10.10.51"
    with pytest.raises(ClusterError, match="no knet link 2"):
        status.link(2)


def test_cfgtool_one_link_down_on_one_peer() -> None:
    text = (
        "Local node ID 2, transport knet\n"
        "LINK ID 0 udp\n\taddr\t= 10.77.0.12\n\tstatus:\n"
        "\t\tnodeid:          1:\tconnected\n\t\tnodeid:          2:\tlocalhost\n\t\tnodeid:          3:\tconnected\n"
        "LINK ID 1 udp\n\taddr\t= 10.77.1.12\n\tstatus:\n"
        "\t\tnodeid:          1:\tdisconnected\n"
        "\t\tnodeid:          2:\tlocalhost\n\t\tnodeid:          3:\tconnected\n"
    )
    status = parse_cfgtool(text)
    assert status.local_nodeid == 2
    assert status.link(0).down_peers() == []
    assert status.link(1).down_peers() == [1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Printing ring status.\nLocal node ID 1\nRING ID 0\n\tid\t= 10.0.1.1\n", "does not use knet"),
        ("Could not initialize corosync configuration API error 2\n", "no 'Local node ID' line"),
    ],
)
def test_cfgtool_errors(text: str, needle: str) -> None:
    with pytest.raises(ClusterError, match=needle):
        parse_cfgtool(text)


# --------------------------------------------------------- corosync-quorumtool


def test_quorumtool_hex_ids_and_addresses() -> None:
    status = parse_quorumtool(read("corosync_quorumtool_pve_hex.txt"))
    assert status.quorate
    assert (status.nodes, status.node_id, status.ring_id) == (2, 1, "1.13")
    assert (status.expected_votes, status.highest_expected, status.total_votes, status.quorum) == (2, 2, 2, 2)
    assert status.flags == frozenset({"Quorate"})
    assert [(m.nodeid, m.name, m.votes, m.local) for m in status.members] == [
        (1, "192.168.10.201", 1, True),
        (2, "192.168.10.202", 1, False),
    ]


def test_quorumtool_three_dcn_nodes() -> None:
    status = parse_quorumtool(read("corosync_quorumtool_dcn_quorate.txt"))
    assert status.quorate
    assert status.member_names() == ["dcn1", "dcn2", "dcn3"]
    assert [m.local for m in status.members] == [True, False, False]
    assert (status.total_votes, status.quorum) == (3, 2)


def test_quorumtool_minority_partition() -> None:
    status = parse_quorumtool(read("corosync_quorumtool_dcn_minority.txt"))
    assert not status.quorate
    assert (status.expected_votes, status.total_votes, status.quorum) == (3, 1, 2)
    assert status.flags == frozenset()
    assert status.member_names() == ["dcn3"]


def test_quorumtool_list() -> None:
    members = parse_members(read("corosync_quorumtool_l_dcn.txt"))
    assert [(m.nodeid, m.name, m.local) for m in members] == [(1, "dcn1", False), (2, "dcn2", True), (3, "dcn3", False)]


def test_quorumtool_with_a_quorum_device() -> None:
    # Column layout of display_nodes_data (print_string_padded, width 10) when a
    # qdevice is registered: a Qdevice column, and the device's own nodeid 0 row.
    text = (
        "\nMembership information\n----------------------\n"
        "    Nodeid      Votes    Qdevice Name\n"
        "         1          1    A,V,NMW node1 (local)\n"
        "         2          1    A,V,NMW node2\n"
        "         0          1            Qdevice\n"
    )
    assert [(m.nodeid, m.name, m.votes) for m in parse_members(text)] == [(1, "node1", 1), (2, "node2", 1)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Cannot initialize QUORUM service\n", "no 'Quorate:' line"),
        ("Quorate:          Yes\n", "no 'Membership information'"),
    ],
)
def test_quorumtool_errors(text: str, needle: str) -> None:
    with pytest.raises(ClusterError, match=needle):
        parse_quorumtool(text)


# ---------------------------------------------------------------- corosync.conf


def test_corosync_conf_is_laid_out_like_pcs() -> None:
    reference = "".join(
        line for line in read("corosync_conf_pcs_debian.conf").splitlines(True) if not line.startswith("#")
    )
    spec = parse_spec("cluster: {name: hw-cluster}", "t.yaml")
    nodes = [PLAN.node(i, networks=1) for i in (1, 2)]
    rendered = corosync_conf(spec, nodes)
    # The published file used host names as addresses and named nodes after them.
    for node, name in zip(nodes, ("deb10", "deb10-1"), strict=True):
        rendered = rendered.replace(f"ring0_addr: {node.address(0)}", f"ring0_addr: {name}")
        rendered = rendered.replace(f"name: {node.name}\n", f"name: {name}\n")
    assert rendered == reference


def test_corosync_conf_for_the_default_spec() -> None:
    nodes = [PLAN.node(i, networks=2) for i in (1, 2, 3)]
    text = corosync_conf(load_spec(DEFAULT), nodes, cluster_uuid="0123abcd")
    assert text.startswith(
        "totem {\n"
        "    version: 2\n"
        "    cluster_name: dcn\n"
        "    transport: knet\n"
        "    token: 3000\n"
        "    crypto_cipher: aes256\n"
        "    crypto_hash: sha256\n"
        "    cluster_uuid: 0123abcd\n"
        "}\n\n"
        "nodelist {\n"
        "    node {\n"
        "        ring0_addr: 10.77.0.11\n"
        "        ring1_addr: 10.77.1.11\n"
        "        name: dcn1\n"
        "        nodeid: 1\n"
        "    }\n\n"
    )
    assert "quorum {\n    provider: corosync_votequorum\n}\n" in text  # no two_node with three nodes
    assert text.count("node {") == 3
    assert text.endswith("    timestamp: on\n}\n")


def test_corosync_conf_link_options_and_chosen_networks() -> None:
    spec = parse_spec(
        "cluster:\n  links: [1, 0]\n"
        "  corosync: {token: 1000, consensus: 1200, knet_ping_interval: 200, knet_ping_timeout: 400}\n",
        "t.yaml",
    )
    nodes = [PLAN.node(i, networks=2) for i in (1, 2, 3)]
    text = corosync_conf(spec, nodes)
    assert (
        "    transport: knet\n"
        "    consensus: 1200\n"
        "    token: 1000\n"
        "    crypto_cipher: aes256\n"
        "    crypto_hash: sha256\n"
        "\n"
        "    interface {\n"
        "        knet_ping_interval: 200\n"
        "        knet_ping_timeout: 400\n"
        "        linknumber: 0\n"
        "    }\n"
        "\n"
        "    interface {\n"
        "        knet_ping_interval: 200\n"
        "        knet_ping_timeout: 400\n"
        "        linknumber: 1\n"
        "    }\n"
        "}\n"
    ) in text
    # Link 0 runs on network 1, link 1 on network 0.
    assert "        ring0_addr: 10.77.1.12\n        ring1_addr: 10.77.0.12\n" in text


def test_corosync_conf_needs_the_networks() -> None:
    nodes = [PLAN.node(i, networks=1) for i in (1, 2, 3)]
    with pytest.raises(ConfigError, match=r"dcn1 has no address on network\(s\) \[1\]"):
        corosync_conf(load_spec(DEFAULT), nodes)
    with pytest.raises(ConfigError, match="at least one node"):
        corosync_conf(load_spec(DEFAULT), [])


# ------------------------------------------------ editing a live corosync.conf


def _three_nodes() -> str:
    return corosync_conf(load_spec(DEFAULT), [PLAN.node(i, networks=2) for i in (1, 2, 3)], cluster_uuid="0123abcd")


def test_a_pcs_made_file_reads_back_unchanged() -> None:
    reference = "".join(
        line for line in read("corosync_conf_pcs_debian.conf").splitlines(True) if not line.startswith("#")
    )
    assert render_conf(parse_conf(reference)) == reference
    assert render_conf(parse_conf(_three_nodes())) == _three_nodes()


def test_adding_a_node_takes_the_next_nodeid_and_one_address_per_link() -> None:
    text = with_node(_three_nodes(), "dcn4", ["10.77.0.14", "10.77.1.14"])
    assert conf_node_names(text) == ["dcn1", "dcn2", "dcn3", "dcn4"]
    assert (
        "    node {\n"
        "        ring0_addr: 10.77.0.14\n"
        "        ring1_addr: 10.77.1.14\n"
        "        name: dcn4\n"
        "        nodeid: 4\n"
        "    }\n"
        "}\n"
    ) in text
    # Nothing else changed: taking the node out again gives the file back.
    assert without_node(text, "dcn4") == _three_nodes()


def test_a_new_node_takes_the_lowest_free_nodeid_as_with_pcs() -> None:
    text = without_node(_three_nodes(), "dcn2")
    text = with_node(text, "dcn4", ["10.77.0.14", "10.77.1.14"])
    text = with_node(text, "dcn5", ["10.77.0.15", "10.77.1.15"])
    ids = {n.get("name"): n.get("nodeid") for n in parse_conf(text).child("nodelist").children}
    assert ids == {"dcn1": "1", "dcn3": "3", "dcn4": "2", "dcn5": "4"}


def test_two_node_mode_follows_the_node_count() -> None:
    two = without_node(_three_nodes(), "dcn3")
    assert conf_node_names(two) == ["dcn1", "dcn2"]
    assert "quorum {\n    provider: corosync_votequorum\n    two_node: 1\n}\n" in two
    three = with_node(two, "dcn4", ["10.77.0.14", "10.77.1.14"])
    assert "quorum {\n    provider: corosync_votequorum\n}\n" in three
    one = without_node(two, "dcn2")
    assert "two_node" not in one


def test_a_quorum_device_keeps_two_node_off_and_the_config_version_is_bumped() -> None:
    text = _three_nodes().replace("    version: 2\n", "    version: 2\n    config_version: 7\n")
    text = text.replace(
        "    provider: corosync_votequorum\n",
        "    provider: corosync_votequorum\n\n    device {\n        model: net\n    }\n",
    )
    two = without_node(text, "dcn3")
    assert "two_node" not in two
    assert "    config_version: 8\n" in two
    assert "    device {\n        model: net\n    }\n" in two


def test_bad_edits_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"dcn2 is already in corosync\.conf's nodelist"):
        with_node(_three_nodes(), "dcn2", ["10.77.0.12", "10.77.1.12"])
    with pytest.raises(ConfigError, match=r"dcn4 has 1 address\(es\) for a cluster on 2 knet link\(s\)"):
        with_node(_three_nodes(), "dcn4", ["10.77.0.14"])
    with pytest.raises(ConfigError, match=r"dcn9 is not in corosync.conf's nodelist \(dcn1, dcn2, dcn3\)"):
        without_node(_three_nodes(), "dcn9")
    with pytest.raises(ConfigError, match="it is the last node"):
        without_node(without_node(without_node(_three_nodes(), "dcn3"), "dcn2"), "dcn1")
    with pytest.raises(ConfigError, match="line 2: expected 'key: value'"):
        parse_conf("totem {\n    version 2\n}\n")
    with pytest.raises(ConfigError, match="section 'totem' is not closed"):
        parse_conf("totem {\n    version: 2\n")
    with pytest.raises(ConfigError, match=r"corosync\.conf has no nodelist section"):
        with_node("totem {\n}\n", "dcn1", ["10.77.0.11"])


def test_links_that_never_connect_are_a_finding_naming_link_network_and_corosync() -> None:
    """An image whose firewall drops corosync on network 1: every node's link
    1 is down to both others. The finding names the link, its network and
    interface, the nodes, and corosync's own words."""
    from dcnlab.cluster.bootstrap import links_finding
    from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec

    def status(me: int) -> str:
        others = "".join(f"\t\tnodeid:          {i}:\t{'localhost' if i == me else 'connected'}\n" for i in (1, 2, 3))
        down = "".join(f"\t\tnodeid:          {i}:\t{'localhost' if i == me else 'disconnected'}\n" for i in (1, 2, 3))
        return (
            f"Local node ID {me}, transport knet\n"
            f"LINK ID 0 udp\n\taddr\t= 10.77.0.1{me}\n\tstatus:\n{others}"
            f"LINK ID 1 udp\n\taddr\t= 10.77.1.1{me}\n\tstatus:\n{down}"
        )

    statuses = {f"dcn{i}": parse_cfgtool(status(i)) for i in (1, 2, 3)}
    words = {"dcn1": "[KNET  ] host: host: 2 (passive) best link: 0 (pri: 1)\n[KNET  ] link: host: 2 link: 1 is down"}
    text = links_finding(load_spec(DEFAULT_SPEC), 2, statuses, words)
    assert text.startswith("FAIL: cluster dcn cannot form on this image and spec: knet link(s) 1 (network 1, eth1)")
    assert "dcn1: knet link 1 (fleet network 1, 10.77.1.11) cannot reach dcn2, dcn3" in text
    assert "corosync on dcn1: [KNET  ] host: host: 2" in text
    assert "link 0" not in text.split("corosync on")[0]  # link 0 is fine
    assert "fix: let corosync's knet traffic" in text


def test_resources_that_fail_to_start_are_a_finding_with_the_agents_words() -> None:
    from dcnlab.cluster.bootstrap import resources_finding
    from dcnlab.cluster.crm import ClusterState, FailedAction
    from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec

    spec = load_spec(DEFAULT_SPEC)
    failure = FailedAction(
        "app_start_0", "app", "start", 0, "dcn1", "not installed", "podman image localhost/x not found", 5, 12,
        "complete", None, None, None,
    )  # fmt: skip
    state = ClusterState(None, "dcn2", None, True, None, None, True, False, (), (), (), (failure,), (), None, ())
    text = resources_finding(spec, state)
    assert text.startswith("FAIL: cluster dcn cannot run its resources on this image and spec:")
    assert "app [ocf:heartbeat:podman]" in text
    assert "start failed on dcn1: podman image localhost/x not found" in text
