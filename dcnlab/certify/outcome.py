"""Watching a failover case play out, and the outage when the faulted node
returns: what the failover suite waits for between the fault and the verdict
(:mod:`dcnlab.certify.verdict` judges what the timeline then shows)."""

from __future__ import annotations

from collections.abc import Sequence

from dcnlab.certify.verdict import Outcome, observe
from dcnlab.certify.workloads import HEAL_OUTAGE, FailoverCase, Workload, quiet_window, unmeasured
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.core.errors import WaitTimeout
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.observe.journal import journal_events
from dcnlab.observe.probe import ClientProbe, Outage, back_after_failure
from dcnlab.observe.timeline import Event, EventKind, Recorder, Timing, heal_of

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


def wait_for_outcome(
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
        # From the injection: the run's other workloads share the same window.
        quiet = Deadline(injected.t + seconds)

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
