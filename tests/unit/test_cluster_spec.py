from pathlib import Path

import pytest

from dcnlab.cluster.spec import (
    DEFAULT_SPEC,
    INFINITY,
    Ban,
    ClusterSpec,
    Colocation,
    Duration,
    IPaddr2,
    Location,
    OcfResource,
    Order,
    Podman,
    Systemd,
    load_spec,
    parse_spec,
    score_text,
)
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import FleetSpec

SPECS = Path(__file__).resolve().parents[2] / "suites" / "specs"
PLAN = FleetSpec(name="t1").plan()


def parse(text: str) -> ClusterSpec:
    return parse_spec(text, "t.yaml")


def rejects(text: str, needle: str, line: int | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert needle in message
    if line is not None:
        assert message.startswith(f"t.yaml:{line}: "), message
    return message


# ------------------------------------------------------------- shipped specs


def test_default_spec_is_valid_for_the_default_fleet() -> None:
    spec = load_spec(DEFAULT_SPEC)
    spec.check_against(networks=2, nodes=3, plan=PLAN)
    assert spec.cluster.links == (0, 1)
    assert spec.cluster.corosync.token == 3000
    assert dict(spec.cluster.properties)["stonith-enabled"] == "true"
    assert spec.fencing.method == "fence_virt"
    assert spec.fencing.action == "off"
    # Group members are created with their group, in group order.
    assert [(r.id, g.id if g else None) for r, g in spec.creation_order()] == [
        ("vip", "web"),
        ("http", "web"),
        ("app", None),
        ("witness", None),
    ]
    vip = spec.resource("vip")
    assert isinstance(vip, IPaddr2)
    assert spec.vip_address(vip, PLAN) == "10.77.0.100"
    kinds = {type(c) for c in spec.constraints}
    assert {Colocation, Order, Location} <= kinds


def test_default_spec_needs_two_networks() -> None:
    spec = load_spec(DEFAULT_SPEC)
    with pytest.raises(ConfigError, match=r"default\.yaml:\d+: knet link on network 1, but the fleet has 1 network"):
        spec.check_against(networks=1, nodes=3)


@pytest.mark.parametrize(
    ("name", "line", "needle"),
    [
        ("unknown_resource_type", 6, "unknown resource type 'nginx'; known types: ipaddr2, systemd, podman, ocf"),
        ("constraint_missing_resource", 10, "no resource or group 'db'"),
    ],
)
def test_invalid_examples_are_rejected_when_read(name: str, line: int, needle: str) -> None:
    path = SPECS / "invalid" / f"{name}.yaml"
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert needle in str(info.value)


def test_link_on_a_missing_network_is_rejected_against_the_fleet() -> None:
    path = SPECS / "invalid" / "link_on_missing_network.yaml"
    spec = load_spec(path)  # fine on its own: the fleet decides
    spec.check_against(networks=3, nodes=3)
    with pytest.raises(ConfigError) as info:
        spec.check_against(networks=2, nodes=3)
    assert str(info.value).startswith(f"{path}:8: knet link on network 2, but the fleet has 2 networks")
    assert "--networks 3" in str(info.value)


def test_missing_file_says_so() -> None:
    with pytest.raises(ConfigError, match="cannot read cluster spec"):
        load_spec(SPECS / "no-such-spec.yaml")


# ------------------------------------------------------------------- shapes


def test_empty_spec_is_a_cluster_with_defaults() -> None:
    spec = parse("")
    assert spec.cluster.name == "dcn"
    assert spec.link_networks(3) == (0, 1, 2)
    assert spec.fencing.method == "fence_virt"
    assert spec.resources == ()


def test_every_resource_type_is_read() -> None:
    spec = parse(
        """
workloads:
  - id: vip
    type: ipaddr2
    network: 1
    address: 10.77.1.200
    cidr_netmask: 24
  - id: http
    type: systemd
    unit: dcn-http.service
  - id: app
    type: podman
    image: localhost/dcn-http:latest
    run_opts: "--network host"
    meta: {migration-threshold: 1, failure-timeout: 1min, resource-stickiness: 0}
  - id: dummy
    type: ocf
    agent: ocf:pacemaker:Dummy
    params: {fake: 3, state: /run/x, fail: false}
    ops: {monitor: null, start: {timeout: 20}}
"""
    )
    vip, http, app, dummy = spec.resources
    assert isinstance(vip, IPaddr2)
    assert (vip.network, vip.address, vip.nic, vip.agent) == (1, "10.77.1.200", "eth1", "ocf:heartbeat:IPaddr2")
    assert isinstance(http, Systemd)
    assert http.agent == "systemd:dcn-http"  # the .service suffix is dropped
    assert isinstance(app, Podman)
    assert app.params() == (
        ("image", "localhost/dcn-http:latest"),
        ("run_opts", "--network host"),
        ("allow_pull", "false"),
    )
    assert app.meta == (("migration-threshold", "1"), ("failure-timeout", "60s"), ("resource-stickiness", "0"))
    assert isinstance(dummy, OcfResource)
    assert dummy.params() == (("fake", "3"), ("state", "/run/x"), ("fail", "false"))
    assert dummy.no_monitor
    assert [(op.name, str(op.timeout)) for op in dummy.ops] == [("start", "20s")]


def test_constraints_are_read() -> None:
    spec = parse(
        """
workloads:
  - {id: a, type: ipaddr2}
  - {id: b, type: systemd, unit: x}
constraints:
  - colocation: {rsc: b, with: a}
  - colocation: {rsc: b, with: a, score: -INFINITY}
  - order: {first: a, then: b, kind: Optional}
  - location: {rsc: a, prefers: dcn2, score: -20}
  - ban: {rsc: b, node: dcn3}
"""
    )
    assert spec.constraints == (
        Colocation("b", "a", INFINITY),
        Colocation("b", "a", -INFINITY),
        Order("a", "b", "Optional"),
        Location("a", "dcn2", -20),
        Ban("b", "dcn3"),
    )
    assert [c.line for c in spec.constraints] == [6, 7, 8, 9, 10]


def test_bare_off_is_read_as_off() -> None:
    # YAML 1.1 reads `off` as false; the only sensible reading is the action.
    assert parse("fencing: {action: off}").fencing.action == "off"
    assert parse("fencing: {action: reboot}").fencing.action == "reboot"


def test_properties_pass_through_as_pacemaker_text() -> None:
    spec = parse("cluster: {properties: {stonith-enabled: false, cluster-recheck-interval: 2min, priority: 3}}")
    assert spec.cluster.properties == (
        ("stonith-enabled", "false"),
        ("cluster-recheck-interval", "2min"),
        ("priority", "3"),
    )


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("10", 10_000),
        ("10s", 10_000),
        ("500ms", 500),
        ("1min", 60_000),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("7 sec", 7000),
    ],
)
def test_durations(value: str, ms: int) -> None:
    spec = parse(f"workloads: [{{id: a, type: ipaddr2, ops: {{monitor: {{interval: '{value}'}}}}}}]")
    assert spec.resources[0].ops[0].interval == Duration(ms)


def test_duration_text_for_pcs() -> None:
    assert [str(Duration(x)) for x in (10_000, 500, 60_000, 1500)] == ["10s", "500ms", "60s", "1500ms"]


@pytest.mark.parametrize("value", ["'10 minutes'", "-1", "1.5s", "true", "'P1M'", "0"])
def test_bad_durations_name_the_line(value: str) -> None:
    text = f"workloads:\n  - id: a\n    type: ipaddr2\n    ops:\n      monitor:\n        interval: {value}\n"
    rejects(text, "a.ops.monitor.interval", line=6)


@pytest.mark.parametrize(
    ("value", "score"),
    [("INFINITY", INFINITY), ("-INFINITY", -INFINITY), ("+INFINITY", INFINITY), ("50", 50), ("'-7'", -7), ("0", 0)],
)
def test_scores(value: str, score: int) -> None:
    spec = parse(
        f"workloads: [{{id: a, type: ipaddr2}}, {{id: b, type: ipaddr2, network: 1}}]\n"
        f"constraints: [{{colocation: {{rsc: a, with: b, score: {value}}}}}]"
    )
    con = spec.constraints[0]
    assert isinstance(con, Colocation)
    assert con.score == score


@pytest.mark.parametrize("value", ["inf", "2000000", "true", "1.5", "high"])
def test_bad_scores(value: str) -> None:
    rejects(
        "workloads: [{id: a, type: ipaddr2}, {id: b, type: ipaddr2, network: 1}]\n"
        f"constraints: [{{colocation: {{rsc: a, with: b, score: {value}}}}}]",
        "colocation.score",
        line=2,
    )


def test_score_text() -> None:
    assert [score_text(s) for s in (INFINITY, -INFINITY, 0, -5, 50)] == ["INFINITY", "-INFINITY", "0", "-5", "50"]


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("clusters: {}", 1, "unknown key 'clusters' in the spec; known keys: cluster, fencing, workloads, constraints"),
        ("cluster:\n  name: dcn\n  tokenn: 3", 3, "unknown key 'tokenn' in cluster; known keys: name, nodes, links,"),
        ("cluster: {name: 'bad name'}", 1, "cluster.name 'bad name'"),
        ("cluster:\n  links: [0, 0]", 2, "network 0 is listed twice"),
        ("cluster: {links: [0,1,2,3,4,5,6,7,8]}", 1, "knet has at most 8"),
        ("cluster: {links: []}", 1, "non-empty list"),
        ("cluster: {links: [-1]}", 1, "at least 0"),
        ("cluster:\n  corosync:\n    token: 3000\n    consensus: 1000", 4, "below the token timeout"),
        ("cluster:\n  corosync:\n    knet_ping_interval: 500", 3, "are a pair"),
        ("cluster:\n  corosync: {knet_ping_interval: 900, knet_ping_timeout: 800}", 2, "longer than"),
        ("cluster:\n  properties:\n    stonith_enabled: false", 3, "lowercase words joined by '-'"),
        ("cluster:\n  resource_defaults:\n    resource_stickiness: 1", 3, "unknown key 'resource_stickiness'"),
        ("cluster:\n  op_defaults: {timeout: soon}", 2, "cluster.op_defaults.timeout"),
        ("fencing: {method: fence_xvm}", 1, "use one of: fence_virt, fence_virsh, none"),
        ("fencing:\n  method: none", 2, "needs cluster.properties: {stonith-enabled: false}"),
        ("fencing: {action: on}", 1, "fencing.action"),
        ("fencing: {key_file: fence.key}", 1, "absolute path"),
        ("fencing: {port: 70000}", 1, "1..65535"),
        ("workloads: {id: a}", 1, "must be a list"),
        ("workloads:\n  - id: a", 2, "needs 'type'"),
        ("workloads:\n  - id: 1a\n    type: ipaddr2", 2, "is not a valid id"),
        ("workloads:\n  - id: fence_dcn\n    type: ipaddr2", 2, "the fence device's id"),
        ("workloads:\n  - {id: a, type: ipaddr2}\n  - {id: a, type: systemd, unit: x}", 3, "already used on line 2"),
        ("workloads:\n  - id: a\n    type: systemd", 2, "needs 'unit'"),
        (
            "workloads:\n  - id: a\n    type: systemd\n    unit: x\n    image: y",
            5,
            "unknown key 'image' in systemd resource a",
        ),
        ("workloads:\n  - id: a\n    type: ocf\n    agent: Dummy", 4, "write ocf:<provider>:<type>"),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    address: 10.77.0.300", 4, "write an IPv4 address or 'auto'"),
        (
            "workloads:\n  - id: a\n    type: ipaddr2\n    meta:\n      migration_threshold: 1",
            5,
            "known keys: allow-migrate",
        ),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    meta: {target-role: Running}", 4, "use one of: Started"),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    ops:\n      monitor: {timeout: 5s}", 5, "needs an interval"),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    ops:\n      start: null", 5, "only monitor can be null"),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    ops:\n      monitr: {interval: 5}", 5, "unknown key 'monitr'"),
        ("workloads:\n  - id: a\n    type: ipaddr2\n    ops: {monitor: {interval: 5, on-fail: panic}}", 4, "on-fail"),
        ("workloads:\n  - {id: a, type: ipaddr2}\n  - {id: b, type: ipaddr2}", 3, "address auto (.100) on network 0"),
        ("workloads:\n  - {id: g, group: [a]}", 2, "no resource 'a' in workloads"),
        ("workloads:\n  - {id: g, group: []}", 2, "non-empty list"),
        ("workloads:\n  - {id: a, type: ipaddr2}\n  - {id: g, group: [a, a]}", 3, "twice in this group"),
        (
            "workloads:\n  - {id: a, type: ipaddr2}\n  - {id: g, group: [a]}\n  - {id: h, group: [a]}",
            4,
            "already in group g",
        ),
        (
            "workloads:\n  - {id: a, type: ipaddr2}\n  - {id: g, group: [a]}\n  - {id: h, group: [g]}",
            4,
            "cannot contain",
        ),
        ("workloads: [{id: a, type: ipaddr2}]\nconstraints:\n  - order: {first: a, then: a}", 3, "after itself"),
        ("workloads: [{id: a, type: ipaddr2}]\nconstraints:\n  - location: {rsc: a, prefers: node1}", 3, "dcn1, dcn2"),
        (
            "workloads: [{id: a, type: ipaddr2}]\nconstraints:\n  - ban: {rsc: b, node: dcn1}",
            3,
            "no resource or group 'b'",
        ),
        ("workloads: [{id: a, type: ipaddr2}]\nconstraints:\n  - pin: {rsc: a}", 3, "unknown constraint 'pin'"),
        (
            "workloads: [{id: a, type: ipaddr2}, {id: b, type: systemd, unit: x}]\n"
            "constraints:\n  - order: {first: a, then: b, kind: Must}",
            3,
            "use one of: Mandatory, Optional, Serialize",
        ),
        ("constraints:\n  - {ban: {rsc: a}, order: {}}", 2, "one per list entry"),
        ("cluster:\n  name: a\n  name: b", 3, "'name' is given twice (first on line 2)"),
        ("cluster: [unclosed", 1, "not valid YAML"),
        ("workloads:\n  - id: a\n   type: ipaddr2", 3, "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_line(text: str, line: int, needle: str) -> None:
    rejects(text, needle, line=line)


def test_unknown_resource_type_lists_the_known_ones() -> None:
    message = rejects("workloads:\n  - id: a\n    type: docker", "unknown resource type 'docker'", line=3)
    for known in ("ipaddr2", "systemd", "podman", "ocf"):
        assert known in message


def test_fencing_none_with_fencing_disabled_is_fine() -> None:
    spec = parse("cluster: {properties: {stonith-enabled: false}}\nfencing: {method: none}")
    assert spec.fencing.method == "none"


# ------------------------------------------------------- against the fleet


def test_check_against_networks_and_nodes() -> None:
    spec = parse(
        "workloads:\n"
        "  - {id: a, type: ipaddr2, network: 1}\n"
        "constraints:\n"
        "  - location: {rsc: a, prefers: dcn4}\n"
        "  - ban: {rsc: a, node: dcn2}\n"
    )
    spec.check_against(networks=2, nodes=4)
    with pytest.raises(ConfigError, match=r"^t\.yaml:2: a: ipaddr2 on network 1, but the fleet has 1 network"):
        spec.check_against(networks=1, nodes=4)
    with pytest.raises(ConfigError, match=r"^t\.yaml:4: dcn4 is not in the fleet, which has dcn1\.\.dcn3"):
        spec.check_against(networks=2, nodes=3)


def test_check_against_fencing_network() -> None:
    spec = parse("fencing:\n  method: fence_virt\n  network: 1")
    with pytest.raises(ConfigError, match=r"^t\.yaml:3: fencing.network is 1"):
        spec.check_against(networks=1, nodes=3)


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("10.77.0.12", "dcn2's own address"),
        ("10.77.0.1", "the gateway"),
        ("10.77.1.5", "not a host address of network 0"),
        ("10.77.0.255", "not a host address"),
    ],
)
def test_check_against_vip_addresses(address: str, needle: str) -> None:
    spec = parse(f"workloads:\n  - id: vip\n    type: ipaddr2\n    address: {address}\n")
    with pytest.raises(ConfigError, match=needle):
        spec.check_against(networks=2, nodes=3, plan=PLAN)


def test_explicit_vip_may_not_take_an_auto_one() -> None:
    spec = parse("workloads:\n  - {id: a, type: ipaddr2}\n  - {id: b, type: ipaddr2, address: 10.77.0.100}\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:3: b: address 10\.77\.0\.100 is already a's"):
        spec.check_against(networks=2, nodes=3, plan=PLAN)
