"""One failover run from fault to verdict: find the node its workloads run on,
inject the fault there once, observe until each workload settles, heal, and
judge what was seen against each case's expectation, the spec's thresholds and
its requirements. The observers (timeline, sampler, client probes) are armed by the
caller before this starts; what the case leaves for a reviewer (verdict, chart,
timing record, Allure attachments) is written by the caller from the result
(the plugin's ``case_report`` fixture)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from dcnlab.certify.constraints import Placement, home, placement_of, together_finding
from dcnlab.certify.hostfaults import device_finding
from dcnlab.certify.outcome import heal_outage, wait_for_outcome
from dcnlab.certify.verdict import Verdict, judge, observe
from dcnlab.certify.workloads import NODE_LOSS, FailoverCase, FailoverRun, anchors, requirement_findings, unmeasured
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.crm import parse_crm_mon
from dcnlab.cluster.pcs import fence_device_id
from dcnlab.cluster.spec import Colocation
from dcnlab.cluster.thresholds import Thresholds, thresholds_for
from dcnlab.core.errors import ClusterError, WaitTimeout
from dcnlab.core.wait import wait_until
from dcnlab.faults.injector import FaultInjector
from dcnlab.observe.journal import record_journals
from dcnlab.observe.probe import Availability, ClientProbe
from dcnlab.observe.timeline import Event, EventKind, Recorder, Timing, Timings, derive

Step = Callable[[str], AbstractContextManager[object]]
# Seconds (before the accelerator's scale) the workloads' colocated
# resources may take, once the workloads settled, to be started together.
TOGETHER = 60.0


def no_step(_title: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class FailoverResult:
    """What one case saw and concluded."""

    case: FailoverCase
    target: str  # the node the fault hit: where the workload ran
    injected: Event
    crm_before: str  # crm_mon XML before the fault
    events: tuple[Event, ...]
    availability: dict[str, Availability]  # per probed workload
    timings: Timings
    verdict: Verdict

    @property
    def measured(self) -> bool:
        """Whether clients measured the workload's downtime (it declares a ``client:``)."""
        return self.case.workload.id in self.availability


@dataclass(frozen=True)
class ReturnPlan:
    """What a failover case does about the faulted node's return."""

    certify: bool  # wait until the cluster converged with the node back, and judge it
    skip: bool  # skip the wait: the next test gets a cluster restored from the ready state
    fenced: bool  # every accepted outcome fences the node (the return it certifies is the fenced one)
    certified_by: str  # the earlier case this one's finding names as certifying the return ("" when none)
    why: str  # why the return is skipped, for the finding on the heal's outage


def plan_return(
    workload: str, *, returning: bool, required: bool, fenced: bool, certified_by: str, renewable: bool
) -> ReturnPlan:
    """The return of a node-loss case's node (``returning``): certified when a
    ``no-outage-on-return`` requirement is on ``workload`` (``required``),
    else skipped when the session can hand the next test a restored cluster
    (``renewable``).

    Every case whose node was fenced (``fenced``: every accepted outcome
    fences it, or this run's did) ends the same way: the node off, powered on
    by the heal, booted, rejoined. One such case per run certifies that
    return; a later one (``certified_by`` names the first) skips it when it
    can, and certifies it again when it cannot. (A killed controller may
    instead be re-probed, unfenced: that return is another path, certified
    by each such case.)"""
    certified_by = certified_by if required and fenced else ""
    if not returning:
        return ReturnPlan(False, False, fenced, "", "")
    if required and not certified_by:
        return ReturnPlan(True, False, fenced, "", "")
    if renewable:
        why = (
            f"certified earlier in this run by {certified_by}"
            if certified_by
            else f"a no-outage-on-return requirement on {workload} would certify the return"
        )
        return ReturnPlan(False, True, fenced, certified_by, why)
    # No restored cluster to hand on: a required return is certified here again.
    return ReturnPlan(required, False, fenced, "", "")


class CaseReport(Protocol):
    """Writes what a run leaves for a reviewer (the plugin's ``case_report`` fixture)."""

    def step(self, title: str) -> AbstractContextManager[object]:
        """A named phase of the run (an Allure step)."""
        ...

    def __call__(self, results: Sequence[FailoverResult]) -> None: ...

    def record(self, name: str, data: dict[str, Any]) -> None:
        """Keeps ``data`` as the case's ``NAME.json``, attached to its report."""
        ...


def target_of(run: FailoverRun, crm_before: str) -> str:
    """The one node running every workload of ``run`` before its fault."""
    state = parse_crm_mon(crm_before)
    where = {w.id: state.where(w.id) for w in run.workloads}
    nodes = {n for found in where.values() for n in found}
    if len(nodes) != 1 or any(len(found) != 1 for found in where.values()):
        seen = "; ".join(f"{w} on {', '.join(found) or 'no node'}" for w, found in where.items())
        raise ValueError(
            f"{run.id}: before the fault each of its workloads must run on one node, the same one "
            f"(the spec binds them together), and they do not: {seen}. "
            "The cluster was not healthy when the case began."
        )
    return nodes.pop()


def run_failover(
    run: FailoverRun,
    cluster: Cluster,
    fault: FaultInjector,
    timeline: Recorder,
    probes: ClientProbe,
    thresholds: dict[str, Thresholds],
    journal_dir: Path,
    step: Step = no_step,
) -> list[FailoverResult]:
    """Inject ``run``'s fault once, on the node running its workloads, with
    armed observers; observe until every one of them settles, heal, and judge
    each on the same timeline (one result per case, in the run's order).
    ``step`` names the phases (Allure steps in the plugin)."""
    before = cluster.crm_mon_xml()
    target = target_of(run, before)
    names = ", ".join(w.id for w in run.workloads)
    with step(f"inject {run.fault} on {target}, where {names} run{'s' if len(run.cases) == 1 else ''}"):
        injected = fault(run.make(target)).injected_at
    if injected is None:
        raise ValueError(f"the {run.fault} fault on {target} recorded no injection")
    for case in run.cases:
        assert case.expectation is not None  # a run holds runnable cases
        with step(f"observe until {case.workload.id} settles ({case.expectation.outcome.value} expected)"):
            wait_for_outcome(case, cluster, timeline, probes, injected, target)
    # Where every mandatory colocation of the judged workloads ended, once
    # they settled (the sampler checked each at every sample before).
    ties = {case.workload.id: anchors(cluster.spec, case.workload) for case in run.cases}
    pairs = [c for cs in ties.values() for c in cs]
    settled = _together(cluster, timeline, target, pairs) if pairs else {}
    record_journals(cluster.fleet, timeline, since=injected.lower - 5.0, save_dir=journal_dir)
    # The return is decided from what the fault played out to: a node that
    # was fenced comes back the fenced way (powered on, booted, rejoined),
    # whichever fault took it. One case that must certify it makes the run wait.
    returning = run.fault in NODE_LOSS
    plans = [_plan(case, cluster, fault, timeline, injected, target, returning) for case in run.cases]
    skipped_return = ""
    if any(p.certify for p in plans):
        # The return is what the requirement is about: heal until the
        # cluster has converged with the node back, whatever comes next.
        fault.wait_healthy = True
    else:
        why = next((p.why for p in plans if p.skip), None)
        if why is not None and fault.skip_the_return(f"{target} not waited for after {run.fault}"):
            skipped_return = f"{target}'s return (the next test gets a cluster restored from the ready state; {why})"
    # Heal with the probes still running: the return of the node (a
    # fail-back, a restart on rejoin) is a second outage clients see, and the
    # report carries how long the return to a healthy cluster took.
    wait = "and wait for a healthy cluster" if fault.wait_healthy else "(the next test gets a fresh cluster)"
    with step(f"heal {run.fault} {wait}"):
        fault.heal()
    availability = probes.record(timeline)
    events = timeline.events()
    limits = thresholds_for(run.fault, thresholds)
    # On several hosts a fence must go through the device of the target's own host.
    fenced = any(e.kind is EventKind.FENCE_CONFIRMED and e.node == target and e.t >= injected.lower for e in events)
    host = cluster.fleet.host_of(target)
    device = (
        [device_finding(events, target, host, fence_device_id(host), injected.lower - 5.0)] if fenced and host else []
    )
    results = []
    for case, plan in zip(run.cases, plans, strict=True):
        assert case.expectation is not None
        workload = case.workload
        rsc = workload.id
        measured = rsc in availability
        outages = availability[rsc].outages if measured else ()
        timings = derive(events, rsc, outages, workload.members)
        if not measured:
            timings = replace(timings, downtime=Timing("client downtime", None, why=unmeasured(workload)))
        healed = heal_outage(events, outages, injected, measured, workload, skipped_return)
        timings = replace(timings, extra=(*timings.extra, healed))
        verdict = judge(case.expectation, events, timings, limits, target, workload.members, clients=measured)
        required = requirement_findings(
            cluster.spec, workload, case.fault, timings, events, injected, return_certified_by=plan.certified_by
        )
        together = [together_finding(c, settled) for c in ties[rsc]]
        verdict = replace(verdict, findings=(*verdict.findings, *together, *device, *required))
        if plan.certify and plan.fenced and verdict.passed:
            fault.returns_certified.record(rsc, run.id)
        results.append(FailoverResult(case, target, injected, before, tuple(events), availability, timings, verdict))
    return results


def _together(cluster: Cluster, timeline: Recorder, target: str, pairs: Sequence[Colocation]) -> Placement:
    """Where the tied resources are once every pair is started on one node,
    or at the deadline (:data:`TOGETHER` x the accelerator's scale). A
    workload's client can answer before Pacemaker has recorded its start
    (podman's container serves while the agent's start is still running),
    so the outcome's wait ending is not yet the cluster's settled state."""
    tied = sorted({r for c in pairs for r in (c.rsc, c.with_rsc)})
    last: Placement = {}

    def settled() -> bool:
        nonlocal last
        last = placement_of(cluster.state(last_resort=target), tied)
        return all(home(last, c.rsc, c.with_rsc) is not None for c in pairs)

    try:
        wait_until(
            settled, timeout=TOGETHER * cluster.scale, what="the colocated resources to run together", interval=2.0
        )
    except WaitTimeout as err:  # the findings say where they were
        if not last:
            raise ClusterError(f"no node reported where the colocated resources ran: {err}") from err
        timeline.record(EventKind.NOTE, "suite", detail=str(err).splitlines()[0])
    return last


def _plan(
    case: FailoverCase,
    cluster: Cluster,
    fault: FaultInjector,
    timeline: Recorder,
    injected: Event,
    target: str,
    returning: bool,
) -> ReturnPlan:
    assert case.expectation is not None
    workload = case.workload
    return plan_return(
        workload.id,
        returning=returning,
        required=returning
        and any(r.kind == "no-outage-on-return" and r.workload == workload.id for r in cluster.spec.requirements),
        fenced=all(option.fenced for option in case.expectation.options())
        or observe(timeline.events(), workload.id, target, injected, workload.members).fenced,
        certified_by=fault.returns_certified.get(workload.id),
        renewable=fault.renewable,
    )
