"""Failover certification: every fault of suites/failover/cases.py on the
node running each workload, judged against its declared expectation and the
spec's thresholds (harness/verdict.py).

Select with markers: ``-m smoke`` (a few minutes), ``-m "not node_loss"``,
``-m power_off``, ``-m web``... A case fails with a message naming the
expectation, each observed value, and the timeline excerpt that shows it;
``verdict.json`` and ``timeline.json`` are kept in the case's tmp dir and in
the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from fixtures import allure_glue
from fixtures.faults import FaultInjector
from fixtures.plugin import environment_of
from harness.chart import chart_of, client_spans
from harness.cluster.bootstrap import Cluster
from harness.cluster.crm import parse_crm_mon
from harness.errors import WaitTimeout
from harness.faults import Fault, Freeze, HardReset, Isolate, KillProcess, NicDown, PowerOff
from harness.journal import journal_events, record_journals
from harness.probe import ClientProbe, back_after_failure
from harness.report import CaseRecord, RunReport
from harness.sampler import ClusterSampler
from harness.timeline import Event, EventKind, Recorder, derive
from harness.verdict import Alternative, Expectation, Outcome, Thresholds, judge, observe, thresholds_for
from harness.wait import Deadline, wait_until

# ------------------------------------------------------------------ the cases
#
# Each fault on the node running each workload, with the outcome the default
# spec should give and why. The reasoning is the spec's
# (harness/cluster/default.yaml): fencing on with action off, no-quorum-policy
# stop, two knet links, stickiness 100, web = IPaddr2 + systemd group, app =
# podman container colocated with web with migration-threshold 1 (the
# colocation's influence makes app's ban move web too). A spec that behaves
# differently is what this suite exists to catch.

# Workloads by resource id, with the fault that kills the workload itself.
WORKLOADS: dict[str, Callable[[str], Fault]] = {
    "web": lambda node: KillProcess(node, unit="dcn-http"),
    "app": lambda node: KillProcess(node, container="app"),
}

# Faults that take the node out of the cluster: it must be fenced and the
# workload must come up elsewhere.
NODE_LOSS: dict[str, tuple[Callable[[str], Fault], str]] = {
    "power-off": (PowerOff, "the node is gone; the survivors have quorum, fence it and start web elsewhere"),
    "hard-reset": (HardReset, "the node reboots without its cluster stack (not enabled at boot): lost, fenced"),
    "freeze": (Freeze, "a paused node misses the token: lost, fenced (off), so it cannot resume as a rogue"),
    "isolate": (Isolate, "every link down: the node is lost to the quorate side, which fences it"),
    "kill-corosync": (
        lambda node: KillProcess(node, "corosync"),
        "membership lost with corosync; the survivors fence the node",
    ),
    "kill-controld": (
        lambda node: KillProcess(node, "pacemaker-controld"),
        "a node whose controller dies holds resources in an unknown state: the DC fences it",
    ),
}

# Node losses that may also end otherwise, by design. kill-controld is a race
# in Pacemaker 2.1: pacemakerd respawns the controller within a second, and
# when the new one rejoins before the DC has acted, the DC logs "Stonith/
# shutdown of node X was not expected", re-probes the node and finds every
# resource running there: nothing fenced, nothing moved, no client failure
# (seen on this lab's default cluster in one full run of two; the other
# fenced both times). Either end is correct; the downtime limit holds in both.
ALTERNATIVES: dict[str, tuple[Alternative, ...]] = {
    "kill-controld": (
        Alternative(
            Outcome.REPROBED,
            fenced=False,
            why="the respawned controller rejoined before the DC acted: re-probed, found running, kept",
        ),
    ),
}


@dataclass(frozen=True)
class Case:
    fault: str  # harness.verdict.FAULT_KINDS
    workload: str
    make: Callable[[str], Fault]  # the fault, given the target node
    expectation: Expectation
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.workload}"

    @property
    def node_loss(self) -> bool:
        return self.expectation.fenced


def _cases() -> list[Case]:
    cases = []
    for workload in WORKLOADS:
        for fault, (make, why) in NODE_LOSS.items():
            also = ALTERNATIVES.get(fault, ())
            expect = Expectation(fault, workload, Outcome.RELOCATED, fenced=True, why=why, alternatives=also)
            cases.append(Case(fault, workload, make, expect))
        cases.append(
            Case(
                "nic-cut",
                workload,
                lambda node: NicDown(node, 1),
                Expectation(
                    "nic-cut",
                    workload,
                    Outcome.UNAFFECTED,
                    fenced=False,
                    why="knet keeps the membership on link 0; the floating IP lives on network 0",
                ),
            )
        )
    cases.append(
        Case(
            "kill-workload",
            "web",
            WORKLOADS["web"],
            Expectation(
                "kill-workload",
                "web",
                Outcome.RESTARTED,
                fenced=False,
                why="the 5 s monitor sees dcn-http down; below migration-threshold it restarts in place",
            ),
            smoke=True,
        )
    )
    cases.append(
        Case(
            "kill-workload",
            "app",
            WORKLOADS["app"],
            Expectation(
                "kill-workload",
                "app",
                Outcome.RELOCATED,
                fenced=False,
                why="migration-threshold 1 bans app from its node; its colocation with web moves both",
            ),
        )
    )
    return cases


CASES = _cases()


# Seconds (before the accelerator's scale) a case waits for its outcome.
SETTLE = 180.0
# How long "nothing happens" is watched: past corosync's token and consensus
# and two monitor intervals of every resource (the longest is 30 s).
QUIET = 45.0
# How long a restart seen by the client may take to show in the journal.
JOURNAL = 60.0


def _marks(case: Case) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, case.fault.replace("-", "_")), getattr(pytest.mark, case.workload)]
    if case.smoke:
        marks.append(pytest.mark.smoke)
    if case.node_loss:
        marks.append(pytest.mark.node_loss)
    return marks


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_failover(
    case: Case,
    fault_cluster: Cluster,
    timeline: Recorder,
    cluster_sampler: ClusterSampler,
    probes: ClientProbe,
    fault: FaultInjector,
    thresholds: dict[str, Thresholds],
    timing_report: RunReport,
    dcn_repeat: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    cluster = fault_cluster
    rsc = case.workload
    spec_path = Path(str(cluster.spec.path))
    allure_glue.parameter("image", f"{cluster.fleet.image.recipe} {cluster.fleet.image.digest}")
    allure_glue.parameter("spec", spec_path.name)
    allure_glue.attach_file(spec_path, "cluster spec")
    before = cluster.crm_mon_xml()
    (target,) = parse_crm_mon(before).where(rsc)
    with allure_glue.step(f"inject {case.fault} on {target}, where {rsc} runs"):
        injected = fault(case.make(target)).injected_at
    assert injected is not None
    with allure_glue.step(f"observe until {rsc} settles ({case.expectation.outcome.value} expected)"):
        _wait_for_outcome(case, cluster, timeline, probes, injected, target)
        availability = probes.record(timeline)
        record_journals(cluster.fleet, timeline, since=injected.lower - 5.0, save_dir=tmp_path / "journal")
    events = timeline.events()
    timings = derive(events, rsc, availability[rsc].outages, _members(cluster, rsc))
    limits = thresholds_for(case.fault, thresholds)
    verdict = judge(case.expectation, events, timings, limits, target, _members(cluster, rsc))
    text = json.dumps({**verdict.to_dict(), "why": case.expectation.why, "timings": timings.to_dict()}, indent=1)
    (tmp_path / "verdict.json").write_text(text)
    chart = chart_of(
        f"{case.fault} on {target}: {rsc}",
        events,
        injected,
        {name: client_spans(av, injected.t) for name, av in availability.items()},
        sorted(cluster.fleet.nodes),
    )
    (tmp_path / "timeline.svg").write_text(chart.svg())
    request.node.add_report_section("call", "verdict", verdict.message())
    # Heal now rather than in teardown, so the report carries how long the
    # return to a healthy cluster took (the next case starts from there).
    with allure_glue.step(f"heal {case.fault} and wait for a healthy cluster"):
        fault.heal()
    if timing_report.environment is None:
        timing_report.environment = environment_of(cluster.fleet, cluster.spec)
    record = CaseRecord.from_verdict(
        test=request.node.nodeid,
        suite="failover",
        verdict=verdict,
        timings=timings,
        events=events,
        fault_t=injected.t,
        workload=rsc,
        repeat=dcn_repeat,
        restore_seconds=fault.restore_seconds,
    )
    timing_report.add(record)
    (tmp_path / "timing.json").write_text(json.dumps(asdict(record), indent=1))
    allure_glue.attach_file(tmp_path / "timeline.svg", "timeline chart")
    allure_glue.attach_file(tmp_path / "timing.json", "timing")
    allure_glue.attach_file(tmp_path / "verdict.json", "verdict")
    allure_glue.attach_text(before, "crm_mon before the fault", "xml")
    allure_glue.attach_text(cluster.crm_mon_xml(), "crm_mon after the heal", "xml")
    # The affected node's side of the story: its cluster journal since the
    # fault (when it could be read) and its serial console (boot after a fence).
    for path in sorted((tmp_path / "journal").glob("*.txt")):
        allure_glue.attach_file(path, f"journal of {path.name.split('.')[0]} since the fault")
    allure_glue.attach_tail(cluster.fleet.console_log(target), f"console of {target} (last lines)")
    with allure_glue.step(f"verdict: {'PASS' if verdict.passed else 'FAIL'}"):
        assert verdict.passed, verdict.message()
        assert not cluster_sampler.violations, [str(v) for v in cluster_sampler.violations]


def _members(cluster: Cluster, rsc: str) -> tuple[str, ...]:
    group = cluster.spec.group(rsc)
    return group.members if group is not None else ()


def _wait_for_outcome(
    case: Case, cluster: Cluster, timeline: Recorder, probes: ClientProbe, injected: Event, target: str
) -> None:
    """Until the fault has played out: the workload settled somewhere and the
    client answered by it again; or, when nothing should happen, for QUIET
    seconds (and, if something happens after all, until that settles).
    Never fails by itself: a case that does not settle is judged on what the
    timeline shows, and the verdict says what was missing."""
    rsc = case.workload
    members = _members(cluster, rsc)
    quiet: Deadline | None = None  # no answer settles the case before it
    if case.expectation.outcome is Outcome.UNAFFECTED:
        # Watch for QUIET seconds. A timeout is the expected case: nothing
        # happened. If something does happen, its first sign is not the
        # outcome: single_link's nic-cut first showed web "restarted" on the
        # cut-off dcn1 (that node's own view, and its answers to clients,
        # until the fence a second later), then web came up on dcn3. So the
        # whole window is watched, then until the workload settles, and the
        # verdict names where it ended.
        quiet = Deadline.after(QUIET * cluster.scale)

        def disturbed() -> bool:
            seen = observe(timeline.events(), rsc, target, injected, members)
            return seen.outcome is not Outcome.UNAFFECTED or seen.fenced

        try:
            wait_until(disturbed, timeout=quiet, what=f"anything to happen to {rsc}", interval=1.0)
        except WaitTimeout:
            return

    def settled() -> bool:
        if quiet is not None and not quiet.expired():
            return False
        seen = observe(timeline.events(), rsc, target, injected, members)
        start = seen.last_start
        if seen.outcome is not Outcome.UNAFFECTED and start is not None:
            # Answered from where it runs now, after it was seen starting there.
            last = probes.last_ok(rsc)
            return last is not None and last.t > max(injected.t, start.t) and last.node == start.node
        # A restart in place can fall between two samples of crm_mon, which
        # then never shows the workload stopped. The client sees it: failures
        # after the fault, then answers from the same node again. (The
        # journals, read after this wait, give the verdict the stop and start.)
        return back_after_failure(probes.snapshot().of(rsc), injected.t) == target

    try:
        wait_until(settled, timeout=SETTLE * cluster.scale, what=f"{rsc} to settle after {case.fault}", interval=1.0)
    except WaitTimeout as err:  # judged below, on the whole timeline
        timeline.record(EventKind.NOTE, "suite", detail=str(err).splitlines()[0])
        return
    if observe(timeline.events(), rsc, target, injected, members).outcome is Outcome.UNAFFECTED:
        # Back on the same node, and no sample caught the restart: the
        # target's journal will, once the controller has logged the start's
        # result (the service answers a moment before it does).
        ids = {rsc, *members}
        node = cluster.fleet.node(target)

        def start_logged() -> bool:
            events, _text = journal_events(node, timeline, injected.lower - 5.0, timeout=60 * cluster.scale)
            return any(e.kind is EventKind.RESOURCE_STARTED and e.resource in ids for e in events)

        try:
            wait_until(
                start_logged,
                timeout=JOURNAL * cluster.scale,
                what=f"{target}'s journal to log {rsc}'s restart",
                interval=5.0,
            )
        except WaitTimeout as err:
            timeline.record(EventKind.NOTE, "suite", detail=str(err).splitlines()[0])
