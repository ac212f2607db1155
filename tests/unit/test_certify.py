"""What the suites certify, derived from a spec: workloads, client endpoints,
kill targets, the nic-cut link, and the expected-outcome table
(docs/expectations.md), row by row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dcnlab.certify.constraints import together_finding
from dcnlab.certify.failover import _together, plan_return, target_of
from dcnlab.certify.verdict import Outcome
from dcnlab.certify.workloads import (
    HEAL_OUTAGE,
    FailoverCase,
    FailoverRun,
    Workload,
    anchors,
    bound_together,
    check_requirements,
    derive,
    endpoint_of,
    endpoints,
    failover_cases,
    failover_runs,
    kill_target,
    meta_of,
    migration_threshold,
    nic_cut_network,
    quiet_window,
    requirement_findings,
    workload_kill,
    workload_marker,
    workloads,
)
from dcnlab.cluster.crm import ClusterState, parse_crm_mon
from dcnlab.cluster.spec import DEFAULT_SPEC, ClusterSpec, load_spec, parse_spec
from dcnlab.core.errors import ConfigError
from dcnlab.faults.network import NicDown
from dcnlab.faults.process import KillProcess
from dcnlab.fleet.spec import FleetSpec
from dcnlab.observe.probe import Endpoint
from dcnlab.observe.timeline import Event, EventKind, Recorder

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[2] / "suites" / "specs" / "examples"
PLAN = FleetSpec(name="t").plan()

# A small spec in the shape users write: a group with a floating IP on
# network 1, a container, an OCF daemon, constraints of each kind.
SITE = """
cluster:
  links: [0, 1]
  resource_defaults: {resource-stickiness: 100}
workloads:
  - id: gateway
    group: [gw-ip, gw-svc]
    client: {protocol: tcp, address: gw-ip, port: 9000}
  - id: gw-ip
    type: ipaddr2
    network: 1
    address: 10.77.1.50
  - id: gw-svc
    type: systemd
    unit: dcn-http@9000
  - id: historian
    type: podman
    image: localhost/dcn-http:latest
    client: {protocol: http, address: gw-ip, port: 9100, path: /health, status: 200, contains: ok}
    meta: {migration-threshold: 1}
  - id: poller
    type: ocf
    agent: ocf:heartbeat:anything
    params: {binfile: /usr/local/bin/poller}
    process: poller
  - id: sidecar
    type: ocf
    agent: ocf:pacemaker:Dummy
constraints:
  - colocation: {rsc: historian, with: gateway}
  - colocation: {rsc: sidecar, with: gateway, score: -INFINITY}
"""


def site(extra: str = "") -> ClusterSpec:
    return parse_spec(SITE + extra, "site.yaml")


def by_id(spec: ClusterSpec) -> dict[str, Workload]:
    return {w.id: w for w in workloads(spec)}


# ------------------------------------------------------------ workloads


def test_workloads_are_groups_and_lone_resources_in_spec_order() -> None:
    spec = site()
    assert [w.id for w in workloads(spec)] == ["gateway", "historian", "poller", "sidecar"]
    gateway = by_id(spec)["gateway"]
    assert gateway.members == ("gw-ip", "gw-svc")
    assert [r.id for r in gateway.resources] == ["gw-ip", "gw-svc"]
    assert by_id(spec)["poller"].members == ()


def test_certification_workloads_limits_and_orders_them() -> None:
    spec = site("certification: {workloads: [historian, gateway]}\n")
    assert [w.id for w in workloads(spec)] == ["historian", "gateway"]
    with pytest.raises(ConfigError, match=r"site.yaml:\d+: certification.workloads: 'gw-ip' is not a workload"):
        site("certification: {workloads: [gw-ip]}\n")


def test_default_spec_certifies_web_and_app() -> None:
    assert [w.id for w in workloads(load_spec(DEFAULT_SPEC))] == ["web", "app"]


# -------------------------------------------------------------- clients


def test_endpoints_come_from_the_spec() -> None:
    spec = site()
    assert endpoints(spec, PLAN) == [
        Endpoint("gateway", "tcp://10.77.1.50:9000"),
        Endpoint("historian", "http://10.77.1.50:9100/health", status=200, contains="ok"),
    ]
    assert endpoint_of(spec, by_id(spec)["poller"], PLAN) is None


def test_default_spec_endpoints() -> None:
    assert endpoints(load_spec(DEFAULT_SPEC), PLAN) == [
        Endpoint("web", "http://10.77.0.100:8080/"),
        Endpoint("app", "http://10.77.0.100:8081/"),
    ]


def test_a_client_at_a_fixed_address() -> None:
    spec = parse_spec(
        "workloads:\n  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy', "
        "client: {protocol: tcp, address: 10.77.0.11, port: 22}}\n"
    )
    assert endpoints(spec, PLAN) == [Endpoint("d", "tcp://10.77.0.11:22")]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ("{protocol: http, address: nosuch, port: 80}", "'nosuch' is not an ipaddr2 resource"),
        ("{protocol: http, address: d, port: 80}", "'d' is not an ipaddr2 resource"),
        ("{protocol: udp, address: 10.0.0.1, port: 80}", "protocol is 'udp'; use one of: http, tcp"),
        ("{protocol: tcp, address: 10.0.0.1, port: 80, path: /x}", "path applies to protocol http only"),
        ("{protocol: http, address: 10.0.0.1, port: 0}", "port is 0"),
        ("{protocol: http, address: 10.0.0.1, port: 80, path: x}", "must start with '/'"),
        ("{protocol: http, address: 10.0.0.1}", "needs 'port'"),
        ("{protocol: http, address: 10.0.0.1, port: 80, ok: 1}", "unknown key 'ok'"),
    ],
)
def test_bad_clients_are_refused_with_their_line(client: str, message: str) -> None:
    text = f"workloads:\n  - id: d\n    type: ocf\n    agent: ocf:pacemaker:Dummy\n    client: {client}\n"
    with pytest.raises(ConfigError, match=r"s.yaml:\d+: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(text, "s.yaml")


# -------------------------------------------------------------- killing


def test_kill_targets_come_from_the_agent() -> None:
    w = by_id(site())
    gw = workload_kill(w["gateway"])
    assert not isinstance(gw, str)
    assert (gw.resource, gw.unit) == ("gw-svc", "dcn-http@9000")  # the floating IP runs no process
    hist = workload_kill(w["historian"])
    assert not isinstance(hist, str)
    assert hist.container == "historian"  # the podman agent names it after the resource
    poller = workload_kill(w["poller"])
    assert not isinstance(poller, str)
    assert isinstance(poller.fault("dcn2"), KillProcess)
    assert poller.fault("dcn2").argv[-1] == "poller"
    why = workload_kill(w["sidecar"])
    assert isinstance(why, str)
    assert "names no process to kill: add `process: NAME`" in why
    assert isinstance(kill_target(w["gateway"].resources[0]), str)


def test_a_process_name_must_fit_the_kernels_comm() -> None:
    with pytest.raises(ConfigError, match="at most 15 characters"):
        parse_spec("workloads:\n  - {id: p, type: ocf, agent: 'ocf:a:b', process: a-very-long-daemon-name}\n")


def test_migration_threshold_resolution() -> None:
    spec = site("  - location: {rsc: gateway, prefers: dcn1, score: 10}\n")
    assert migration_threshold(spec, "historian") == 1
    assert migration_threshold(spec, "gw-svc") == 1_000_000  # Pacemaker's default
    grouped = parse_spec(
        SITE.replace("group: [gw-ip, gw-svc]", "group: [gw-ip, gw-svc]\n    meta: {migration-threshold: 3}")
    )
    assert migration_threshold(grouped, "gw-svc") == 3  # from its group
    assert meta_of(grouped, "gateway", "migration-threshold") == "3"  # the group's own
    assert meta_of(grouped, "gateway", "resource-stickiness") == "100"  # resource_defaults


# ------------------------------------------------------------- the table


def outcome(spec: ClusterSpec, workload: str, fault: str, networks: int = 2, nodes: int = 3) -> tuple[Outcome, bool]:
    e = derive(spec, by_id(spec)[workload], fault, networks, nodes)
    assert not isinstance(e, str), e
    return e.outcome, e.fenced


@pytest.mark.parametrize("fault", ["power-off", "hard-reset", "freeze", "isolate", "kill-corosync", "kill-controld"])
def test_node_loss_relocates_and_fences(fault: str) -> None:
    assert outcome(site(), "gateway", fault) == (Outcome.RELOCATED, True)


def test_node_loss_expects_a_fence_even_when_the_spec_disables_fencing() -> None:
    spec = parse_spec(
        SITE.replace("cluster:\n", "cluster:\n  properties: {stonith-enabled: false}\n") + "fencing: {method: none}\n"
    )
    e = derive(spec, by_id(spec)["gateway"], "power-off", 2, 3)
    assert not isinstance(e, str)
    assert (e.outcome, e.fenced) == (Outcome.RELOCATED, True)
    assert "disables fencing" in e.why
    assert "expected to fail" in e.why


def test_kill_controld_accepts_the_reprobe_end() -> None:
    e = derive(site(), by_id(site())["gateway"], "kill-controld", 2, 3)
    assert not isinstance(e, str)
    assert [(o.outcome, o.fenced) for o in e.options()] == [(Outcome.RELOCATED, True), (Outcome.REPROBED, False)]


def test_two_nodes_isolate_may_keep_the_workload() -> None:
    e = derive(site(), by_id(site())["gateway"], "isolate", 2, 2)
    assert not isinstance(e, str)
    assert (Outcome.UNAFFECTED, False) in [(o.outcome, o.fenced) for o in e.options()]


def test_nic_cut_with_two_links_is_unaffected_and_avoids_the_floating_ip() -> None:
    # gw-ip on network 1, fencing on network 0: the fence path, not the
    # clients' (the other nodes fence over their own NICs).
    spec = site()
    assert nic_cut_network(spec, by_id(spec)["gateway"], 2) == 0
    assert outcome(spec, "gateway", "nic-cut") == (Outcome.UNAFFECTED, False)
    default = load_spec(DEFAULT_SPEC)  # vip and fencing on 0
    assert nic_cut_network(default, by_id(default)["web"], 2) == 1
    three = parse_spec(SITE.replace("links: [0, 1]", "links: [0, 1, 2]"))
    assert nic_cut_network(three, by_id(three)["gateway"], 3) == 2  # neither fencing's nor the floating IP's


def test_nic_cut_with_one_link_still_expects_unaffected_and_says_why() -> None:
    spec = parse_spec(SITE.replace("links: [0, 1]", "links: [1]"))
    e = derive(spec, by_id(spec)["gateway"], "nic-cut", 2, 3)
    assert not isinstance(e, str)
    assert (e.outcome, e.fenced) == (Outcome.UNAFFECTED, False)
    assert "one knet link" in e.why


def test_kill_workload_restarts_in_place_below_the_threshold() -> None:
    assert outcome(site(), "gateway", "kill-workload") == (Outcome.RESTARTED, False)
    assert outcome(site(), "poller", "kill-workload") == (Outcome.RESTARTED, False)


def test_kill_workload_relocates_at_threshold_one() -> None:
    e = derive(site(), by_id(site())["historian"], "kill-workload", 2, 3)
    assert not isinstance(e, str)
    assert (e.outcome, e.fenced) == (Outcome.RELOCATED, False)
    assert "colocation with gateway" in e.why


def test_kill_workload_of_a_non_critical_dependent_cannot_be_derived() -> None:
    spec = parse_spec(SITE.replace("meta: {migration-threshold: 1}", "meta: {migration-threshold: 1, critical: false}"))
    why = derive(spec, by_id(spec)["historian"], "kill-workload", 2, 3)
    assert isinstance(why, str)
    assert "certification.expect" in why


def test_kill_workload_without_a_monitor_says_it_will_fail() -> None:
    spec = parse_spec(SITE.replace("unit: dcn-http@9000", "unit: dcn-http@9000\n    ops: {monitor: null}"))
    e = derive(spec, by_id(spec)["gateway"], "kill-workload", 2, 3)
    assert not isinstance(e, str)
    assert "no monitor operation" in e.why


def test_nothing_to_kill_is_a_reason() -> None:
    assert isinstance(derive(site(), by_id(site())["sidecar"], "kill-workload", 2, 3), str)


def test_declared_expectations_replace_derived_ones() -> None:
    spec = site(
        "certification:\n  expect:\n    gateway:\n      power-off: {outcome: restarted, fenced: false, why: test}\n"
    )
    e = derive(spec, by_id(spec)["gateway"], "power-off", 2, 3)
    assert not isinstance(e, str)
    assert (e.outcome, e.fenced, e.why) == (Outcome.RESTARTED, False, "test")
    for bad, message in [
        ("nosuch: {power-off: {outcome: relocated, fenced: true}}", "unknown key 'nosuch'"),
        ("gateway: {melt: {outcome: relocated, fenced: true}}", "unknown key 'melt'"),
        ("gateway: {power-off: {outcome: moved, fenced: true}}", "outcome is 'moved'"),
        ("gateway: {power-off: {outcome: relocated}}", "needs 'fenced'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            site(f"certification:\n  expect:\n    {bad}\n")


# ------------------------------------------------------------ quiet window


def test_the_quiet_window_covers_the_token_and_two_intervals_of_the_slowest_monitor_nearby() -> None:
    # The default: token 3000 ms + consensus 3600 ms; web's members and app
    # (colocated) monitor every 10 s or faster; witness (kept apart, 30 s) is
    # not next to web and does not count.
    spec = load_spec(DEFAULT_SPEC)
    window, why = quiet_window(spec, by_id(spec)["web"])
    assert window == pytest.approx(6.6 + 20.0)
    assert "token 3000 ms + consensus 3600 ms" in why
    assert "2 x 10 s" in why


def test_the_quiet_window_assumes_pcs_default_for_a_monitor_the_spec_leaves_out() -> None:
    # SITE sets no monitor: pcs gives the agent's default, up to 60 s; the
    # historian is colocated with the gateway, so its monitor counts too.
    spec = site()
    window, why = quiet_window(spec, by_id(spec)["gateway"])
    assert window == pytest.approx(3.0 + 3.6 + 2 * 60)
    assert "corosync's default token" in why
    fast = parse_spec(
        SITE.replace("unit: dcn-http@9000", "unit: dcn-http@9000\n    ops: {monitor: {interval: 5s}}")
        .replace("    address: 10.77.1.50", "    address: 10.77.1.50\n    ops: {monitor: {interval: 7s}}")
        .replace("meta: {migration-threshold: 1}", "meta: {migration-threshold: 1}\n    ops: {monitor: null}"),
        "fast.yaml",
    )
    window, why = quiet_window(fast, by_id(fast)["gateway"])
    assert window == pytest.approx(6.6 + 14.0)
    assert "gw-ip's monitor interval" in why


# ---------------------------------------------------------------- cases


def test_default_spec_cases_match_the_demo_table() -> None:
    """The derived table gives the default spec exactly the outcomes its
    hand-written table declared before cases were generated."""
    cases = {c.id: c for c in failover_cases(load_spec(DEFAULT_SPEC), 2, 3)}
    assert len(cases) == 16
    for w in ("web", "app"):
        for f in ("power-off", "hard-reset", "freeze", "isolate", "kill-corosync", "kill-controld"):
            e = cases[f"{f}-{w}"].expectation
            assert e is not None
            assert (e.outcome, e.fenced) == (Outcome.RELOCATED, True)
        nic = cases[f"nic-cut-{w}"]
        assert nic.expectation is not None
        assert (nic.expectation.outcome, nic.expectation.fenced) == (Outcome.UNAFFECTED, False)
        assert nic.make is not None
        cut = nic.make("dcn1")
        assert isinstance(cut, NicDown)
        assert cut.network == 1
    web, app = cases["kill-workload-web"].expectation, cases["kill-workload-app"].expectation
    assert web is not None
    assert app is not None
    assert (web.outcome, app.outcome) == (Outcome.RESTARTED, Outcome.RELOCATED)
    assert [c.id for c in cases.values() if c.smoke] == ["kill-workload-web"]


def test_one_smoke_case_for_any_spec() -> None:
    cases = failover_cases(site(), 2, 3)
    assert [c.id for c in cases if c.smoke] == ["kill-workload-gateway"]
    skipped = {c.id: c.skip for c in cases if c.skip}
    assert list(skipped) == ["kill-workload-sidecar"]
    only_dummy = parse_spec("workloads:\n  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n")
    assert [c.id for c in failover_cases(only_dummy, 2, 3) if c.smoke] == ["nic-cut-d"]
    assert failover_cases(parse_spec(""), 2, 3) == []


def test_the_default_spec_runs_each_node_fault_once_for_web_and_app() -> None:
    """app must run with web (INFINITY): a fault on their node is injected
    once and judged for both; each kill-workload kills its own process."""
    runs = failover_runs(load_spec(DEFAULT_SPEC), 2, 3)
    assert [r.id for r in runs] == [
        "power-off-web+app", "hard-reset-web+app", "freeze-web+app", "nic-cut-web+app",
        "isolate-web+app", "kill-workload-web", "kill-controld-web+app", "kill-corosync-web+app",
        "kill-workload-app",
    ]  # fmt: skip
    power_off = runs[0]
    assert isinstance(power_off, FailoverRun)
    assert [c.id for c in power_off.cases] == ["power-off-web", "power-off-app"]
    assert power_off.node_loss
    assert [r.id for r in runs if isinstance(r, FailoverRun) and r.smoke] == ["kill-workload-web"]


def test_every_runnable_case_is_judged_once_and_skipped_ones_stay() -> None:
    spec = site()
    runs = failover_runs(spec, 2, 3)
    judged = [c.id for r in runs if isinstance(r, FailoverRun) for c in r.cases]
    assert sorted(judged) == sorted(c.id for c in failover_cases(spec, 2, 3) if not c.skip)
    assert [r.id for r in runs if isinstance(r, FailoverCase)] == ["kill-workload-sidecar"]
    ids = [r.id for r in runs]
    # historian must run with gateway; sidecar must not (-INFINITY); poller is free.
    assert "power-off-gateway+historian" in ids
    assert "nic-cut-gateway+historian" in ids
    assert {"kill-workload-gateway", "kill-workload-historian", "power-off-poller", "power-off-sidecar"} <= set(ids)


def test_workloads_bound_through_a_member_or_another_resource_share_runs() -> None:
    via_member = site("  - colocation: {rsc: poller, with: gw-svc}\n")
    assert bound_together(via_member, workloads(via_member))["poller"] == "gateway"
    spec = parse_spec(
        "workloads:\n"
        "  - {id: a, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "  - {id: b, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "  - {id: c, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "constraints:\n"
        "  - colocation: {rsc: b, with: c}\n"
        "  - colocation: {rsc: a, with: c}\n"
        "certification: {workloads: [b, a]}\n"
    )
    assert bound_together(spec, workloads(spec)) == {"b": "b", "a": "b"}
    assert "isolate-b+a" in [r.id for r in failover_runs(spec, 2, 3)]
    scored = parse_spec(
        "workloads:\n"
        "  - {id: a, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "  - {id: b, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "constraints:\n"
        "  - colocation: {rsc: b, with: a, score: 500}\n"
    )
    assert bound_together(scored, workloads(scored)) == {"a": "a", "b": "b"}  # a preference, not a bond


def test_a_run_starts_only_where_all_its_workloads_run_on_one_node() -> None:
    runs = {r.id: r for r in failover_runs(load_spec(DEFAULT_SPEC), 2, 3)}
    after_fence = (Path(__file__).parent / "data" / "crm_mon_dcn_after_fence.xml").read_text()
    power_off = runs["power-off-web+app"]
    assert isinstance(power_off, FailoverRun)
    with pytest.raises(ValueError, match=r"power-off-web\+app: .*web on dcn2; app on no node.*not healthy"):
        target_of(power_off, after_fence)
    alone = FailoverRun("power-off", power_off.cases[:1], power_off.make)
    assert target_of(alone, after_fence) == "dcn2"


def test_reserved_ids_get_no_marker() -> None:
    assert workload_marker("historian")
    assert not workload_marker("smoke")
    assert not workload_marker("power_off")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_specs_make_cases(path: Path) -> None:
    spec = load_spec(path)
    nodes = 4 if "4-node" in path.read_text() else 3
    spec.check_against(2, nodes, FleetSpec(name="t", nodes=nodes).plan())
    cases = failover_cases(spec, 2, nodes)
    assert sum(c.smoke for c in cases) == 1
    assert {c.workload.id for c in cases} <= set(spec.top_level())
    assert not {"web", "app"} & {w.id for w in workloads(spec)}  # named their own way


# ------------------------------------------------------------ requirements


def with_requirements(*lines: str, spec: str = SITE) -> ClusterSpec:
    return parse_spec(spec + "certification:\n  requirements:\n" + "".join(f"    - {x}\n" for x in lines), "r.yaml")


def refused(*lines: str, spec: str = SITE) -> str:
    with pytest.raises(ConfigError) as err:
        check_requirements(with_requirements(*lines, spec=spec))
    return str(err.value)


def test_requirements_the_configuration_guarantees_pass() -> None:
    check_requirements(
        with_requirements(
            "together: [historian, gateway]",
            "together: [gw-svc, gw-ip]",  # one group
            "together: [historian, gw-svc]",  # a member of the anchor's group
            "apart: [sidecar, gateway]",
            "max-downtime: {fault: power-off, limit: 60s}",
            "max-downtime: {fault: kill-workload, workload: historian, limit: 30s}",
            "no-outage-on-return: gateway",
            "no-outage-on-return: {workload: historian, allow: 30s}",
        )
    )


def test_together_contradicted_names_both_lines() -> None:
    message = refused("together: [sidecar, gateway]")
    line = SITE.splitlines().index("  - colocation: {rsc: sidecar, with: gateway, score: -INFINITY}") + 1
    assert message.startswith("r.yaml:")
    assert "requirement line" in message
    assert f"line {line}: colocation of sidecar with gateway keeps them apart" in message


def test_together_without_a_constraint_says_what_to_add() -> None:
    message = refused("together: [poller, gateway]")
    assert "nothing in the configuration keeps them together (poller on line" in message
    assert "colocation: {rsc: poller, with: gateway, score: INFINITY}" in message


def test_a_finite_score_is_no_guarantee() -> None:
    spec = SITE.replace(
        "colocation: {rsc: historian, with: gateway}", "colocation: {rsc: historian, with: gateway, score: 500}"
    )
    assert "has score 500, a preference" in refused("together: [historian, gateway]", spec=spec)


def test_apart_within_one_group_is_refused() -> None:
    assert "are in one group" in refused("apart: [gw-ip, gw-svc]")


def test_max_downtime_below_detection_names_the_token() -> None:
    spec = SITE.replace("  links: [0, 1]\n", "  links: [0, 1]\n  corosync: {token: 5000}\n")
    message = refused("max-downtime: {fault: power-off, limit: 5s}", spec=spec)
    assert "cannot act before 11s (token 5000 ms + consensus 6000 ms (line 4))" in message
    assert "corosync's default token" in refused("max-downtime: {limit: 2s}")


def test_max_downtime_of_an_unmeasured_workload_is_refused() -> None:
    assert "poller (line" in refused("max-downtime: {workload: poller, limit: 60s}")
    assert "declares no client" in refused("max-downtime: {workload: poller, limit: 60s}")


def test_max_downtime_of_a_kill_needs_a_monitor_that_notices() -> None:
    spec = SITE.replace("unit: dcn-http@9000", "unit: dcn-http@9000\n    ops: {monitor: {interval: 30s}}")
    message = refused("max-downtime: {fault: kill-workload, workload: gateway, limit: 10s}", spec=spec)
    assert "gw-svc is monitored every 30s" in message
    nomon = SITE.replace("unit: dcn-http@9000", "unit: dcn-http@9000\n    ops: {monitor: null}")
    assert "no monitor operation" in refused("max-downtime: {fault: kill-workload, limit: 60s}", spec=nomon)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("together: [historian]", "name two workloads"),
        ("together: [historian, nosuch]", "no resource or group 'nosuch'"),
        ("max-downtime: {limit: 10s, fault: melt}", "fault is 'melt'"),
        ("max-downtime: {fault: power-off}", "needs 'limit'"),
        ("no-outage-on-return: gw-ip", "'gw-ip' is not a workload"),
        ("sometimes: [a, b]", "unknown requirement 'sometimes'"),
    ],
)
def test_bad_requirements_are_refused_with_their_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"r.yaml:\d+: .*" + message):
        with_requirements(line)


def test_a_broken_together_requirement_is_seen_at_every_sample() -> None:
    from dcnlab.cluster.invariants import Placement, ViolationKind, check

    running = {"historian": frozenset({"dcn2"}), "gateway": frozenset({"dcn1"}), "gw-ip": frozenset({"dcn1"})}
    placement = Placement(1.0, running, {}, {}, (), ("dcn1",), frozenset())
    # Backed by a colocation (as check_requirements insists): one violation naming both.
    (both,) = check(placement, with_requirements("together: [historian, gateway]"))
    assert both.kind is ViolationKind.COLOCATION
    assert both.detail.endswith("(requirement line 34: together: [historian, gateway])")
    # Unbacked (a spec read without the pre-boot check): the requirement alone.
    unbacked = SITE.replace("  - colocation: {rsc: historian, with: gateway}\n", "")
    (alone,) = check(placement, with_requirements("together: [historian, gateway]", spec=unbacked))
    assert alone.kind is ViolationKind.REQUIREMENT
    assert "historian on dcn2, gateway on dcn1" in alone.detail


def _timeline(*rows: tuple[float, EventKind, str | None, str | None]) -> list[Event]:
    return [Event(t, kind, "test", node=node, resource=rsc) for t, kind, node, rsc in rows]


def test_no_outage_on_return_fails_on_a_fail_back_and_on_a_long_outage() -> None:
    from dcnlab.observe.timeline import Timing, Timings

    spec = with_requirements("no-outage-on-return: gateway")
    gateway = by_id(spec)["gateway"]
    fault = Event(10.0, EventKind.FAULT_INJECTED, "fault:power-off", node="dcn2")
    healed = Event(100.0, EventKind.FAULT_HEALED, "fault:power-off", node="dcn2")
    none = Timing("x", None)

    def timings(outage: float | None) -> Timings:
        return Timings(none, none, none, Timing("client downtime", 20.0), (Timing(HEAL_OUTAGE, outage),))

    quiet = [fault, *_timeline((30.0, EventKind.RESOURCE_STARTED, "dcn1", "gateway")), healed]
    (ok,) = requirement_findings(spec, gateway, "power-off", timings(0.0), quiet, fault)
    assert ok.ok, ok
    back = [*quiet, *_timeline((140.0, EventKind.RESOURCE_STOPPED, "dcn1", "gw-svc"))]
    (moved,) = requirement_findings(spec, gateway, "power-off", timings(0.0), back, fault)
    assert not moved.ok
    assert "gw-svc stopped on dcn1 40.0s after the heal" in moved.observed
    (slow,) = requirement_findings(spec, gateway, "power-off", timings(3.2), quiet, fault)
    assert not slow.ok
    assert "heal-phase outage 3.2s" in slow.observed
    # A kill brings no node back: its cleanup's restart is not a return.
    assert requirement_findings(spec, gateway, "kill-workload", timings(0.0), back, fault) == []
    # After controld is killed the node's resources are re-probed: seen
    # stopped during the fault and started again where they ran, after the
    # heal. Nothing returned; a start on another node is a return.
    reprobe = [
        fault,
        *_timeline((14.0, EventKind.RESOURCE_STOPPED, "dcn2", "gw-svc")),
        healed,
        *_timeline((103.0, EventKind.RESOURCE_STARTED, "dcn2", "gw-svc")),
    ]
    (in_place,) = requirement_findings(spec, gateway, "kill-controld", timings(0.0), reprobe, fault)
    assert in_place.ok, in_place
    elsewhere = [*reprobe[:-1], *_timeline((103.0, EventKind.RESOURCE_STARTED, "dcn1", "gw-svc"))]
    (returned,) = requirement_findings(spec, gateway, "kill-controld", timings(0.0), elsewhere, fault)
    assert not returned.ok
    assert "gw-svc started on dcn1 3.0s after the heal" in returned.observed
    allowed = with_requirements("no-outage-on-return: {workload: gateway, allow: 30s}")
    (fine,) = requirement_findings(allowed, by_id(allowed)["gateway"], "power-off", timings(3.2), quiet, fault)
    assert fine.ok
    # A later node loss that did not wait for the same return names the case that certified it.
    (elsewhere_certified,) = requirement_findings(
        spec, gateway, "hard-reset", timings(None), [fault], fault, return_certified_by="power-off-gateway"
    )
    assert elsewhere_certified.ok
    assert elsewhere_certified.observed == "not waited for here: certified by power-off-gateway"


def test_max_downtime_at_run_time() -> None:
    from dcnlab.observe.timeline import Timing, Timings

    spec = with_requirements("max-downtime: {fault: power-off, limit: 60s}")
    gateway = by_id(spec)["gateway"]
    fault = Event(10.0, EventKind.FAULT_INJECTED, "fault:power-off", node="dcn2")
    none = Timing("x", None)
    over = Timings(none, none, none, Timing("client downtime", 75.5))
    (finding,) = requirement_findings(spec, gateway, "power-off", over, [fault], fault)
    assert not finding.ok
    assert (finding.expected, finding.observed) == ("client downtime at most 60s", "75.5s")
    assert requirement_findings(spec, gateway, "nic-cut", over, [fault], fault) == []


def test_pytest_refuses_a_spec_whose_requirement_cannot_hold(tmp_path: Path) -> None:
    """As a user meets it: the run stops before any VM boots (at
    configure), with one line naming the requirement's line and the
    constraint's."""
    import subprocess
    import sys

    spec = tmp_path / "site.yaml"
    spec.write_text(SITE + "certification:\n  requirements:\n    - together: [sidecar, gateway]\n")
    root = Path(__file__).parents[2]
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/failover", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--dcn-cluster-spec", str(spec)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 4, res.stdout + res.stderr
    constraint = SITE.splitlines().index("  - colocation: {rsc: sidecar, with: gateway, score: -INFINITY}") + 1
    assert f"site.yaml:{constraint + 3}: requirement line {constraint + 3}: together: [sidecar, gateway]" in res.stderr
    assert f"line {constraint}: colocation of sidecar with gateway keeps them apart" in res.stderr


# run_failover's decision about the faulted node's return (plan_return):
# (returning, required, fenced, certified_by, renewable) -> (certify, skip, certified_by named)
@pytest.mark.parametrize(
    ("returning", "required", "fenced", "earlier", "renewable", "certify", "skip", "named"),
    [
        # Not a node loss: nothing comes back.
        (False, False, True, "", True, False, False, ""),
        # Required and not certified yet: this case certifies it, restorable or not.
        (True, True, True, "", True, True, False, ""),
        (True, True, True, "", False, True, False, ""),
        # Certified earlier by a fenced case: skipped and named, when the next test can be restored...
        (True, True, True, "power-off-web", True, False, True, "power-off-web"),
        # ...and certified again when it cannot.
        (True, True, True, "power-off-web", False, True, False, ""),
        # A controller kill (not every outcome fenced) certifies its own, whatever came before.
        (True, True, False, "power-off-web", True, True, False, ""),
        # No requirement: skipped when the next test can be restored, else nothing special.
        (True, False, True, "", True, False, True, ""),
        (True, False, True, "", False, False, False, ""),
    ],
)
def test_plan_return(
    returning: bool,
    required: bool,
    fenced: bool,
    earlier: str,
    renewable: bool,
    certify: bool,
    skip: bool,
    named: str,
) -> None:
    plan = plan_return(
        "web", returning=returning, required=required, fenced=fenced, certified_by=earlier, renewable=renewable
    )
    assert (plan.certify, plan.skip, plan.certified_by) == (certify, skip, named)
    if plan.skip:
        assert plan.why == (
            f"certified earlier in this run by {named}"
            if named
            else "a no-outage-on-return requirement on web would certify the return"
        )


def test_the_colocation_finding_waits_for_the_start_the_client_answered_before() -> None:
    """The podman container serves while its agent's start still runs:
    crm_mon shows app Starting, then Started. The finding is read once the
    pair is started on one node, not at the first answer."""
    spec = load_spec(DEFAULT_SPEC)
    (app,) = [w for w in workloads(spec) if w.id == "app"]
    ties = {"app": anchors(spec, app)}
    answers = iter(["crm_mon_dcn_app_starting.xml", "crm_mon_dcn_app_starting.xml", "crm_mon_dcn_app_started.xml"])
    asked: list[str] = []

    class Cluster:
        scale = 1.0

        def members(self) -> list[SimpleNamespace]:
            return [SimpleNamespace(name=n) for n in ("dcn1", "dcn2", "dcn3")]

        def state(self, via: None = None, *, last_resort: str | None = None) -> ClusterState:
            assert via is None
            asked.append(last_resort or "")
            return parse_crm_mon((DATA / next(answers)).read_text())

    timeline = Recorder()
    placement = _together(Cluster(), timeline, "dcn3", ties["app"])  # type: ignore[arg-type]
    assert placement == {"app": ["dcn1"], "web": ["dcn1"]}
    assert asked == ["dcn3", "dcn3", "dcn3"]  # the node the fault hit asked last, every time
    (finding,) = [together_finding(c, placement) for c in ties["app"]]
    assert finding.ok
    assert finding.observed == "both on dcn1"


def test_on_several_hosts_the_smoke_run_is_a_power_off() -> None:
    """What several hosts change is the fence through the node's own host and
    a relocation across hosts: the smoke run loses a node."""
    runs = failover_runs(load_spec(DEFAULT_SPEC), 2, 3, hosts=2)
    assert [r.id for r in runs if r.smoke] == ["power-off-web+app"]
    assert [c.id for c in failover_cases(site(), 2, 3, hosts=2) if c.smoke] == ["power-off-gateway"]
