"""The colocation suite's cases, generated from a spec
(dcnlab/certify/constraints.py), and the verdicts it reaches on placements."""

from __future__ import annotations

from pathlib import Path

from dcnlab.certify.constraints import (
    AntiColocationCase,
    ColocationCase,
    PreferenceCase,
    add_scores,
    apart_before,
    apart_failure,
    banned_nodes,
    constraint_cases,
    covering_run,
    home,
    kept_apart,
    moved_off,
    moved_together,
    not_moved_failure,
    parse_score,
    refuge,
    return_failure,
    stickiness,
    together_before,
    together_failure,
    together_finding,
)
from dcnlab.certify.workloads import FailoverRun, anchors, failover_runs, workloads
from dcnlab.cluster.spec import DEFAULT_SPEC, INFINITY, ClusterSpec, Colocation, Location, load_spec, parse_spec
from dcnlab.faults.power import PowerOff
from dcnlab.faults.process import KillProcess

EXAMPLES = Path(__file__).parents[2] / "suites" / "specs" / "examples"

# A site in the shape users write, named unlike the shipped demo: a group
# with a floating IP, a container tied to it that one failure bans, an OCF
# daemon kept apart from the group, a preference.
SITE = """
cluster:
  resource_defaults: {resource-stickiness: 10}
workloads:
  - id: gateway
    group: [gw-ip, gw-svc]
  - id: gw-ip
    type: ipaddr2
    address: 10.77.0.50
  - id: gw-svc
    type: systemd
    unit: dcn-http@9000
  - id: historian
    type: podman
    image: localhost/dcn-http:latest
    meta: {migration-threshold: 1}
  - id: poller
    type: ocf
    agent: ocf:heartbeat:anything
    params: {binfile: /usr/local/bin/poller}
    process: poller
constraints:
  - colocation: {rsc: historian, with: gateway}
  - colocation: {rsc: poller, with: gateway, score: -INFINITY}
  - location: {rsc: gateway, prefers: dcn2, score: 50}
"""


def site(workloads: str = "", constraints: str = "", defaults: str = "{resource-stickiness: 10}") -> ClusterSpec:
    text = SITE.replace("{resource-stickiness: 10}", defaults)
    text = text.replace("constraints:\n", workloads + "constraints:\n" + constraints)
    return parse_spec(text, "site.yaml")


def every(spec: ClusterSpec, nodes: int) -> list[ColocationCase | AntiColocationCase | PreferenceCase]:
    cases = constraint_cases(spec, nodes)
    return [*cases.together, *cases.apart, *cases.preferences]


def ids(spec: ClusterSpec, nodes: int = 3) -> list[str]:
    return [c.id for c in every(spec, nodes)]


def skips(spec: ClusterSpec, nodes: int = 3) -> dict[str, str]:
    return {c.id: c.skip for c in every(spec, nodes)}


def smoke(spec: ClusterSpec, nodes: int = 3) -> list[str]:
    cases = constraint_cases(spec, nodes)
    marked: list[ColocationCase | AntiColocationCase | PreferenceCase] = [
        *cases.together,
        *cases.apart,
        *cases.preferences,
    ]
    return [c.id for c in marked if c.smoke]


# ---------------------------------------------------------------- cases


def test_the_default_spec_gets_one_case_per_constraint_and_fault() -> None:
    spec = load_spec(DEFAULT_SPEC)
    assert ids(spec) == [
        "app-with-web-kill-workload",
        "app-with-web-power-off",
        "app-with-web-kill-corosync",
        "witness-apart-from-web",
        "web-prefers-dcn1",
    ]
    assert not any(skips(spec).values())
    assert smoke(spec) == ["witness-apart-from-web"]
    pref = constraint_cases(spec, 3).preferences[0]
    assert not pref.returns  # stickiness 100 per member of web outweighs 50


def test_every_constraint_gets_its_cases_not_only_the_first() -> None:
    spec = site(
        workloads="  - {id: sidecar, type: podman, image: 'localhost/x:1', meta: {migration-threshold: 1}}\n"
        "  - {id: beacon, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n",
        constraints="  - colocation: {rsc: sidecar, with: historian}\n"
        "  - colocation: {rsc: beacon, with: historian, score: -INFINITY}\n"
        "  - location: {rsc: poller, prefers: dcn3, score: 20}\n",
    )
    assert ids(spec) == [
        "sidecar-with-historian-kill-workload",
        "sidecar-with-historian-power-off",
        "sidecar-with-historian-kill-corosync",
        "historian-with-gateway-kill-workload",
        "historian-with-gateway-power-off",
        "historian-with-gateway-kill-corosync",
        "beacon-apart-from-historian",
        "poller-apart-from-gateway",
        "poller-prefers-dcn3",
        "gateway-prefers-dcn2",
    ]
    assert smoke(spec) == ["beacon-apart-from-historian"]
    assert smoke(spec, nodes=2) == ["sidecar-with-historian-kill-workload"]  # no anti-colocation on 2


def test_faults_are_made_for_the_node_and_know_node_loss() -> None:
    cases = {c.fault: c for c in constraint_cases(site(), 3).together}
    kill, power, corosync = cases["kill-workload"], cases["power-off"], cases["kill-corosync"]
    assert kill.make is not None
    assert power.make is not None
    assert corosync.make is not None
    made = kill.make("dcn2")
    assert isinstance(made, KillProcess)
    assert (made.node, made.what) == ("dcn2", "historian")
    assert isinstance(power.make("dcn1"), PowerOff)
    killed = corosync.make("dcn3")
    assert isinstance(killed, KillProcess)
    assert killed.what == "corosync"
    assert (kill.node_loss, power.node_loss, corosync.node_loss) == (False, True, True)
    assert kill.action("dcn2") == "kill-workload of podman container historian on dcn2"
    assert power.action("dcn1") == "power-off of dcn1"


def test_kill_workload_skips_when_a_kill_restarts_in_place() -> None:
    spec = parse_spec(SITE.replace("meta: {migration-threshold: 1}", "meta: {}"), "site.yaml")
    why = skips(spec)["historian-with-gateway-kill-workload"]
    assert "restarts it in place (migration-threshold INFINITY)" in why
    assert "set migration-threshold: 1 on historian" in why


def test_kill_workload_skips_what_has_no_process_or_no_monitor_or_is_not_critical() -> None:
    dummy = site(
        workloads="  - {id: marker, type: ocf, agent: 'ocf:pacemaker:Dummy', meta: {migration-threshold: 1}}\n",
        constraints="  - colocation: {rsc: marker, with: gateway}\n",
    )
    assert "names no process to kill" in skips(dummy)["marker-with-gateway-kill-workload"]
    unseen = parse_spec(
        SITE.replace("meta: {migration-threshold: 1}", "meta: {migration-threshold: 1}\n    ops: {monitor: null}"),
        "site.yaml",
    )
    assert "no monitor operation" in skips(unseen)["historian-with-gateway-kill-workload"]
    loose = parse_spec(SITE.replace("{migration-threshold: 1}", "{migration-threshold: 1, critical: false}"), "s.yaml")
    assert "not critical" in skips(loose)["historian-with-gateway-kill-workload"]
    # Node losses still relocate them.
    assert not skips(loose)["historian-with-gateway-power-off"]


def test_a_group_dependent_is_killed_through_its_first_process() -> None:
    spec = site(
        workloads="  - {id: pair, group: [pair-ip, pair-svc], meta: {migration-threshold: 1}}\n"
        "  - {id: pair-ip, type: ipaddr2, address: 10.77.0.51}\n"
        "  - {id: pair-svc, type: systemd, unit: pair}\n",
        constraints="  - colocation: {rsc: pair, with: historian}\n",
    )
    case = next(c for c in constraint_cases(spec, 3).together if c.id == "pair-with-historian-kill-workload")
    assert not case.skip
    assert case.kill is not None
    assert case.kill.unit == "pair"


def test_advisory_colocations_are_listed_and_skipped() -> None:
    spec = site(constraints="  - colocation: {rsc: poller, with: historian, score: 100}\n")
    advisory = {k: v for k, v in skips(spec).items() if k.startswith("poller-with-historian")}
    assert len(advisory) == 3
    assert all("advisory colocation" in why and "line" in why for why in advisory.values())
    apart = parse_spec(SITE.replace("score: -INFINITY", "score: -100"), "site.yaml")
    assert "advisory anti-colocation" in skips(apart)["poller-apart-from-gateway"]


def test_anti_colocation_needs_three_nodes() -> None:
    assert "needs 3 nodes or more: with 2" in skips(site(), nodes=2)["poller-apart-from-gateway"]
    assert not skips(site(), nodes=4)["poller-apart-from-gateway"]


def test_smoke_is_the_quickest_runnable_case_of_any_spec() -> None:
    restarts = parse_spec(SITE.replace("meta: {migration-threshold: 1}", "meta: {}"), "site.yaml")
    assert smoke(restarts) == ["poller-apart-from-gateway"]  # an anti-colocation first
    assert smoke(restarts, nodes=2) == ["historian-with-gateway-power-off"]  # no kill relocates: a node loss
    only_apart = load_spec(EXAMPLES / "plant-4node.yaml")
    assert smoke(only_apart, nodes=4) == ["historian-stack-apart-from-scada"]
    edge = load_spec(EXAMPLES / "edge-gateway.yaml")  # migration-threshold 2, no anti-colocation
    assert smoke(edge) == ["historian-with-gateway-power-off"]
    prefs_only = parse_spec("workloads:\n  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
                            "constraints:\n  - location: {rsc: d, prefers: dcn1, score: 10}\n")  # fmt: skip
    assert smoke(prefs_only) == ["d-prefers-dcn1"]


def test_no_constraints_no_cases() -> None:
    spec = parse_spec("workloads:\n  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n", "bare.yaml")
    cases = constraint_cases(spec, 3)
    assert (cases.together, cases.apart, cases.preferences) == ([], [], [])


# ----------------------------------------------------------- stickiness


def test_scores_saturate_and_minus_infinity_wins() -> None:
    assert parse_score("INFINITY") == INFINITY
    assert parse_score("-INFINITY") == -INFINITY
    assert parse_score(" 50 ") == 50
    assert add_scores(INFINITY, 5) == INFINITY
    assert add_scores(INFINITY, -INFINITY) == -INFINITY
    assert add_scores(900_000, 900_000) == INFINITY
    assert add_scores(-3, 5) == 2


def test_stickiness_is_pacemakers_default_zero_when_nobody_sets_it() -> None:
    spec = site(defaults="{}")
    assert stickiness(spec, "historian") == 0
    assert stickiness(spec, "gateway") == 0


def test_a_groups_stickiness_is_the_sum_of_its_members() -> None:
    spec = site()
    assert stickiness(spec, "gateway") == 20  # two members at resource_defaults' 10
    assert stickiness(spec, "gw-ip") == 20  # a member moves with its group
    own = parse_spec(
        SITE.replace("group: [gw-ip, gw-svc]", "group: [gw-ip, gw-svc]\n    meta: {resource-stickiness: 7}")
    )
    assert stickiness(own, "gateway") == 14  # the group's meta, inherited by each member
    member = parse_spec(SITE.replace("unit: dcn-http@9000", "unit: dcn-http@9000\n    meta: {resource-stickiness: 3}"))
    assert stickiness(member, "gateway") == 13  # gw-ip 10 (default) + gw-svc 3 (its own)
    infinite = site(defaults="{resource-stickiness: INFINITY}")
    assert stickiness(infinite, "gateway") == INFINITY


def test_a_preference_is_expected_to_pull_back_only_above_the_stickiness() -> None:
    def pref(spec: ClusterSpec) -> PreferenceCase:
        return next(p for p in constraint_cases(spec, 3).preferences if p.id == "gateway-prefers-dcn2")

    # No stickiness anywhere: the preference wins, the group goes back.
    back = pref(site(defaults="{}"))
    assert back.returns
    assert not back.skip
    assert "goes back to dcn2" in back.why
    # 2 x 100 per member outweighs 50 (and so does the historian's 100 with it).
    stays = pref(site(defaults="{resource-stickiness: 100}"))
    assert not stays.returns
    assert not stays.skip
    assert "group gateway: its members' stickiness adds up" in stays.why
    assert "stays where it moved" in stays.why
    # 2 x 25 equals 50, the historian adding nothing: either way.
    tie = parse_spec(
        SITE.replace("{resource-stickiness: 10}", "{resource-stickiness: 25}").replace(
            "{migration-threshold: 1}", "{migration-threshold: 1, resource-stickiness: 0}"
        )
    )
    assert "equals" in pref(tie).skip
    # 2 x 20 = 40 below 50, but 60 with the historian colocated with it: not
    # what Pacemaker documents, so no case.
    assert "historian" in pref(site(defaults="{resource-stickiness: 20}")).skip


def test_returning_node_case_on_the_default_and_example_specs() -> None:
    (web,) = constraint_cases(load_spec(DEFAULT_SPEC), 3).preferences
    assert (web.id, web.returns, web.skip) == ("web-prefers-dcn1", False, "")
    plant = constraint_cases(load_spec(EXAMPLES / "plant-4node.yaml"), 4).preferences
    assert [(p.id, p.returns, p.skip) for p in plant] == [
        ("scada-prefers-dcn1", False, ""),
        ("poller-prefers-dcn4", False, ""),
    ]


# --------------------------------------------------------------- verdicts


C = Colocation("historian", "gateway", INFINITY, line=21)
A = Colocation("poller", "gateway", -INFINITY, line=22)


def test_together_means_one_node_other_than_the_lost_one() -> None:
    assert home({"historian": ["dcn1"], "gateway": ["dcn1"]}, "historian", "gateway") == "dcn1"
    assert home({"historian": [], "gateway": []}, "historian", "gateway") is None
    assert home({"historian": ["dcn1", "dcn2"], "gateway": ["dcn1", "dcn2"]}, "historian", "gateway") is None
    assert moved_together(C, "dcn1", {"historian": ["dcn2"], "gateway": ["dcn2"]})
    assert not moved_together(C, "dcn1", {"historian": ["dcn1"], "gateway": ["dcn1"]})
    assert not moved_together(C, "dcn1", {"historian": ["dcn3"], "gateway": ["dcn2"]})
    assert not moved_together(C, "dcn1", {"historian": [], "gateway": ["dcn2"]})


def test_together_failure_names_the_constraint_its_line_and_what_was_seen() -> None:
    case = ColocationCase(C, "power-off", PowerOff)
    message = together_failure(C, case, "dcn1", {"historian": ["dcn2"], "gateway": ["dcn3"]}, 180.4)
    assert message == (
        "FAIL: historian must run with gateway (colocation line 21): after power-off of dcn1, "
        "historian on dcn2, gateway on dcn3 (180s after the fault); expected both on one node other than dcn1"
    )
    before = together_before(C, {"historian": [], "gateway": ["dcn1"]})
    assert before.startswith("FAIL: historian must run with gateway (colocation line 21): before any fault")
    assert "historian stopped" in before


def test_apart_means_running_again_away_from_the_lost_node_and_the_rival() -> None:
    assert kept_apart(A, "dcn3", {"poller": ["dcn2"], "gateway": ["dcn1"]})
    assert not kept_apart(A, "dcn3", {"poller": ["dcn1"], "gateway": ["dcn1"]})
    assert not kept_apart(A, "dcn3", {"poller": [], "gateway": ["dcn1"]})
    assert not kept_apart(A, "dcn3", {"poller": ["dcn2"], "gateway": []})  # the rival must run too
    message = apart_failure(A, "dcn3", {"poller": ["dcn1"], "gateway": ["dcn1"]}, 12.0)
    assert message.startswith("FAIL: poller must never run with gateway (colocation line 22, -INFINITY): ")
    assert "after power-off of dcn3, poller on dcn1, gateway on dcn1" in message
    assert apart_before(A, {"poller": ["dcn1"], "gateway": ["dcn1"]}).startswith("FAIL: ")


def test_refuge_leaves_out_the_lost_node_the_rivals_and_bans() -> None:
    spec = site(
        constraints="  - ban: {rsc: poller, node: dcn4}\n  - location: {rsc: gw-svc, prefers: dcn3, score: -INFINITY}\n"
    )
    assert banned_nodes(spec, "poller") == {"dcn4"}
    assert banned_nodes(spec, "gateway") == {"dcn3"}  # a member's ban keeps the group off
    members = ["dcn1", "dcn2", "dcn3", "dcn4"]
    assert refuge(spec, A, members, "dcn3", ["dcn1"]) == ["dcn2"]
    assert refuge(spec, A, ["dcn1", "dcn3", "dcn4"], "dcn3", ["dcn1"]) == []


def test_returning_node_verdicts() -> None:
    loc = Location("gateway", "dcn2", 50, line=23)
    stays = PreferenceCase(loc, returns=False, why="its stickiness 200 outweighs 50")
    back = PreferenceCase(loc, returns=True, why="50 outweighs its stickiness 0")
    assert moved_off("gateway", "dcn2", {"gateway": ["dcn1"]})
    assert not moved_off("gateway", "dcn2", {"gateway": []})
    assert return_failure(stays, "dcn1", ["dcn1"]) is None
    assert return_failure(back, "dcn1", ["dcn2"]) is None
    assert return_failure(stays, "dcn1", ["dcn2"]) == (
        "FAIL: gateway must stay on dcn1 once dcn2 is back (its stickiness 200 outweighs 50); "
        "after dcn2 returned, gateway on dcn2"
    )
    failed = return_failure(back, "dcn1", [])
    assert failed is not None
    assert failed.startswith("FAIL: gateway must go back to dcn2")
    assert failed.endswith("after dcn2 returned, gateway stopped")
    lost = not_moved_failure(stays, {"gateway": []}, 181.0)
    assert lost.startswith("FAIL: gateway must run elsewhere while its preferred node dcn2 is lost (location line 23)")


# ------------------------------------------- what a failover run certifies


def test_a_failover_run_covers_the_same_fault_on_the_pair_it_judges() -> None:
    spec = parse_spec(SITE)
    runs = [r for r in failover_runs(spec, 2, 3) if isinstance(r, FailoverRun)]
    together = {c.id: c for c in constraint_cases(spec, 3).together}
    covered = {cid: run.id for cid, c in together.items() if (run := covering_run(c, runs)) is not None}
    assert covered == {
        "historian-with-gateway-kill-workload": "kill-workload-historian",  # the banned container's own kill
        "historian-with-gateway-power-off": "power-off-gateway+historian",
        "historian-with-gateway-kill-corosync": "kill-corosync-gateway+historian",
    }
    # A selection without the shared runs covers nothing: the suite runs its own.
    kills = [r for r in runs if r.fault == "kill-workload" and r.id != "kill-workload-historian"]
    assert all(covering_run(c, kills) is None for c in together.values())


def test_the_together_finding_holds_only_on_one_node() -> None:
    c = Colocation("historian", "gateway", INFINITY, line=30)
    ok = together_finding(c, {"historian": ["dcn3"], "gateway": ["dcn3"]})
    assert ok.ok
    assert (
        str(ok) == "ok   colocation line 30: expected historian with gateway, both on one node; observed both on dcn3"
    )
    apart = together_finding(c, {"historian": [], "gateway": ["dcn2"]})
    assert not apart.ok
    assert apart.observed == "historian stopped, gateway on dcn2"
    spec = parse_spec(SITE)
    (historian,) = [w for w in workloads(spec) if w.id == "historian"]
    assert anchors(spec, historian) == [Colocation("historian", "gateway", INFINITY)]
    (gateway,) = [w for w in workloads(spec) if w.id == "gateway"]
    assert anchors(spec, gateway) == []  # the anchor depends on nothing
