"""Failover certification: every fault on the node running each workload
of the spec (dcnlab/certify/workloads.py generates the cases from it), judged against
the expected outcome and the spec's thresholds (dcnlab/certify/verdict.py).

Select with markers: ``-m smoke`` (a few minutes), ``-m "not node_loss"``,
``-m power_off``, or a workload's id (``-m web``)... A workload with no
``client:`` in the spec is certified on cluster state, and its client
downtime is reported as not measured. A case fails with a message naming the
expectation, each observed value, and the timeline excerpt that shows it;
``verdict.json`` and ``timeline.json`` are kept in the case's tmp dir and in
the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from dcnlab.certify.verdict import Outcome, judge, observe
from dcnlab.certify.workloads import (
    HEAL_OUTAGE,
    NODE_LOSS,
    FailoverCase,
    Workload,
    failover_cases,
    quiet_window,
    requirement_findings,
    unmeasured,
    workload_marker,
)
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.crm import parse_crm_mon
from dcnlab.cluster.thresholds import Thresholds, thresholds_for
from dcnlab.core.errors import WaitTimeout
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.faults.injector import FaultInjector
from dcnlab.observe.journal import journal_events, record_journals
from dcnlab.observe.probe import ClientProbe, Outage, back_after_failure
from dcnlab.observe.sampler import ClusterSampler
from dcnlab.observe.timeline import Event, EventKind, Recorder, Timing, derive, heal_of
from dcnlab.pytest_plugin import allure_glue
from dcnlab.pytest_plugin.plugin import fleet_nodes, session_spec
from dcnlab.report.chart import chart_of, client_spans
from dcnlab.report.environment import environment_of
from dcnlab.report.timing import CaseRecord, RunReport

# ------------------------------------------------------------------ the cases
#
# Generated from the session's spec at collection (dcnlab/certify/workloads.py): every
# certified workload x every fault, each with the outcome the configuration
# implies (docs/expectations.md) or the one the spec declares under
# certification.expect, and the reason. A cluster that behaves differently is
# what this suite exists to catch.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    spec = session_spec(config)
    cases = failover_cases(spec, config.option.dcn_networks, fleet_nodes(config))
    metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in cases])


# Seconds (before the accelerator's scale) a case waits for its outcome.
SETTLE = 180.0
# "Nothing happens" is watched for the spec's quiet window (the token and
# consensus, then two intervals of the slowest monitor next to the workload:
# dcnlab.certify.workloads.quiet_window), plus this, scaled for slow guests: a monitor
# run, the controller acting on it, and a sample of crm_mon that sees it.
QUIET_SLACK = 10.0
# How long a restart seen by the client may take to show in the journal.
JOURNAL = 60.0
# How often the target's journal is read for a restart of a workload that no
# client probes (each read is an SSH call into a guest that may be busy).
JOURNAL_EVERY = 15.0


def _marks(case: FailoverCase) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, case.fault.replace("-", "_"))]
    if workload_marker(case.workload.id):
        marks.append(getattr(pytest.mark, case.workload.id))
    if case.smoke:
        marks.append(pytest.mark.smoke)
    if case.node_loss:
        marks.append(pytest.mark.node_loss)
    if case.skip:
        marks.append(pytest.mark.skip(reason=case.skip))
    return marks


def test_failover(
    case: FailoverCase,
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
    workload = case.workload
    rsc = workload.id
    # Skipped cases (nothing to kill, say) have neither.
    assert case.expectation is not None
    assert case.make is not None
    spec_path = Path(str(cluster.spec.path))
    allure_glue.parameter("image", f"{cluster.fleet.image.recipe} {cluster.fleet.image.digest}")
    allure_glue.parameter("spec", spec_path.name)
    allure_glue.attach_file(spec_path, "cluster spec")
    if workload.client is None:
        allure_glue.parameter("client downtime", f"not measured: {unmeasured(workload)}")
    if timing_report.environment is None:
        # Before the fault: afterwards a node may be off or still booting.
        timing_report.environment = environment_of(cluster.fleet, cluster.spec)
    before = cluster.crm_mon_xml()
    (target,) = parse_crm_mon(before).where(rsc)
    returning = case.fault in NODE_LOSS
    skipped_return = ""
    if returning and any(r.kind == "no-outage-on-return" and r.workload == rsc for r in cluster.spec.requirements):
        # The return is what the requirement is about: heal until the
        # cluster has converged with the node back, whatever comes next.
        fault.wait_healthy = True
    elif returning and fault.skip_the_return(f"{target} not waited for after {case.fault}"):
        # Nothing certifies this node's return: the next test gets a
        # cluster restored from the ready state rather than waiting for it.
        skipped_return = (
            f"{target}'s return (the next test gets a cluster restored from the ready state; "
            f"a no-outage-on-return requirement on {rsc} would certify the return)"
        )
    with allure_glue.step(f"inject {case.fault} on {target}, where {rsc} runs"):
        injected = fault(case.make(target)).injected_at
    assert injected is not None
    with allure_glue.step(f"observe until {rsc} settles ({case.expectation.outcome.value} expected)"):
        _wait_for_outcome(case, cluster, timeline, probes, injected, target)
        record_journals(cluster.fleet, timeline, since=injected.lower - 5.0, save_dir=tmp_path / "journal")
    # Heal with the probes still running: the return of the node (a
    # fail-back, a restart on rejoin) is a second outage clients see, and the
    # report carries how long the return to a healthy cluster took.
    wait = "and wait for a healthy cluster" if fault.wait_healthy else "(the next test gets a fresh cluster)"
    with allure_glue.step(f"heal {case.fault} {wait}"):
        fault.heal()
    availability = probes.record(timeline)
    events = timeline.events()
    measured = rsc in availability
    outages = availability[rsc].outages if measured else ()
    timings = derive(events, rsc, outages, workload.members)
    if not measured:
        timings = replace(timings, downtime=Timing("client downtime", None, why=unmeasured(workload)))
    healed = heal_outage(events, outages, injected, measured, workload, skipped_return)
    timings = replace(timings, extra=(*timings.extra, healed))
    limits = thresholds_for(case.fault, thresholds)
    verdict = judge(case.expectation, events, timings, limits, target, workload.members, clients=measured)
    required = requirement_findings(cluster.spec, workload, case.fault, timings, events, injected)
    verdict = replace(verdict, findings=(*verdict.findings, *required))
    text = json.dumps({**verdict.to_dict(), "why": case.expectation.why, "timings": timings.to_dict()}, indent=1)
    (tmp_path / "verdict.json").write_text(text)
    chart = chart_of(
        f"{case.fault} on {target}: {rsc}",
        events,
        injected,
        {name: client_spans(av, injected.t) for name, av in availability.items()},
        sorted(cluster.fleet.nodes),
        timings=timings,
    )
    (tmp_path / "timeline.svg").write_text(chart.svg())
    request.node.add_report_section("call", "verdict", verdict.message())
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
        unmeasured={} if measured else {"downtime": unmeasured(workload)},
    )
    timing_report.add(record)
    (tmp_path / "timing.json").write_text(json.dumps(asdict(record), indent=1))
    allure_glue.attach_file(tmp_path / "timeline.svg", "timeline chart")
    allure_glue.attach_file(tmp_path / "timing.json", "timing")
    allure_glue.attach_file(tmp_path / "verdict.json", "verdict")
    allure_glue.attach_text(before, "crm_mon before the fault", "xml")
    # From a node that stayed up: the target may still be booting.
    survivor = next((n for n in cluster.members() if n.name != target), None)
    allure_glue.attach_text(cluster.crm_mon_xml(via=survivor), "crm_mon after the heal", "xml")
    # The affected node's side of the story: its cluster journal since the
    # fault (when it could be read) and its serial console (boot after a fence).
    for path in sorted((tmp_path / "journal").glob("*.txt")):
        allure_glue.attach_file(path, f"journal of {path.name.split('.')[0]} since the fault")
    allure_glue.attach_tail(cluster.fleet.console_log(target), f"console of {target} (last lines)")
    with allure_glue.step(f"verdict: {'PASS' if verdict.passed else 'FAIL'}"):
        assert verdict.passed, verdict.message()
        broken = [str(v) for v in cluster_sampler.violations]
        assert not broken, (
            "FAIL: violated while the fault played out:\n  "
            + "\n  ".join(broken)
            + (f"\ntimeline (seconds from the fault):\n{verdict.excerpt}")
        )


def heal_outage(
    events: Sequence[Event],
    outages: Sequence[Outage],
    fault: Event,
    measured: bool,
    workload: Workload,
    skipped_return: str = "",
) -> Timing:
    """The longest client outage that began once the fault was healed: the
    node's return (a fail-back, a restart on rejoin) as clients saw it; not
    measured when the case did not wait for the return (``skipped_return``
    says why)."""
    name = HEAL_OUTAGE
    if not measured:
        return Timing(name, None, why=unmeasured(workload))
    if skipped_return:
        return Timing(name, None, why=f"not waited for: {skipped_return}")
    healed = heal_of(events, fault)
    if healed is None:
        return Timing(name, None, why="the fault was not healed")
    after = [o for o in outages if o.start >= healed.t]
    worst = max(after, key=lambda o: o.duration, default=None)
    if worst is None:
        return Timing(name, 0.0, low=0.0, high=0.0, start=healed, why="no failed probe attempt after the heal")
    why = "probe stopped while still failing: a lower bound" if worst.end is None else ""
    return Timing(name, round(worst.duration, 3), start=healed, why=why)


def _wait_for_outcome(
    case: FailoverCase, cluster: Cluster, timeline: Recorder, probes: ClientProbe, injected: Event, target: str
) -> None:
    """Until the fault has played out: the workload settled somewhere and the
    client answered by it again; or, when nothing should happen, for the
    spec's quiet window (and, if something happens after all, until that settles).
    Never fails by itself: a case that does not settle is judged on what the
    timeline shows, and the verdict says what was missing."""
    assert case.expectation is not None
    rsc = case.workload.id
    members = case.workload.members
    measured = rsc in {e.name for e in probes.endpoints}
    quiet: Deadline | None = None  # no answer settles the case before it
    if case.expectation.outcome is Outcome.UNAFFECTED:
        # Watch for the quiet window. A timeout is the expected case: nothing
        # happened. If something does happen, its first sign is not the
        # outcome: single_link's nic-cut first showed web "restarted" on the
        # cut-off dcn1 (that node's own view, and its answers to clients,
        # until the fence a second later), then web came up on dcn3. So the
        # whole window is watched, then until the workload settles, and the
        # verdict names where it ended.
        window, why = quiet_window(cluster.spec, case.workload)
        seconds = window + QUIET_SLACK * cluster.scale
        timeline.record(EventKind.NOTE, "suite", detail=f"watching {rsc} for {seconds:.0f} s: {why}")
        quiet = Deadline.after(seconds)

        def disturbed() -> bool:
            seen = observe(timeline.events(), rsc, target, injected, members)
            return seen.outcome is not Outcome.UNAFFECTED or seen.fenced

        try:
            wait_until(disturbed, timeout=quiet, what=f"anything to happen to {rsc}", interval=1.0)
        except WaitTimeout:
            return

    ids = {rsc, *members}
    node = cluster.fleet.node(target)

    def start_logged() -> bool:
        events, _text = journal_events(node, timeline, injected.lower - 5.0, timeout=60 * cluster.scale)
        return any(e.kind is EventKind.RESOURCE_STARTED and e.resource in ids for e in events)

    journal_due = Deadline.after(0.0)

    def settled() -> bool:
        nonlocal journal_due
        if quiet is not None and not quiet.expired():
            return False
        seen = observe(timeline.events(), rsc, target, injected, members)
        start = seen.last_start
        if seen.outcome is not Outcome.UNAFFECTED and start is not None:
            if not measured:
                return True  # seen starting where it runs now; no client to hear from
            # Answered from where it runs now, after it was seen starting there.
            last = probes.last_ok(rsc)
            return last is not None and last.t > max(injected.t, start.t) and last.node == start.node
        if not measured:
            # No client to see a restart that fell between two samples of
            # crm_mon: the target's journal does, read every JOURNAL_EVERY s.
            if not journal_due.expired():
                return False
            journal_due = Deadline.after(JOURNAL_EVERY)
            return start_logged()
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
        try:
            wait_until(
                start_logged,
                timeout=JOURNAL * cluster.scale,
                what=f"{target}'s journal to log {rsc}'s restart",
                interval=5.0,
            )
        except WaitTimeout as err:
            timeline.record(EventKind.NOTE, "suite", detail=str(err).splitlines()[0])
