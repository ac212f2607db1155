"""The outage clients see when a faulted node returns (dcnlab.certify.outcome.heal_outage)."""

from __future__ import annotations

from pathlib import Path

from dcnlab.certify.outcome import heal_outage
from dcnlab.certify.workloads import workloads
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.observe.probe import Outage
from dcnlab.observe.timeline import Event, EventKind

WORKLOAD = next(w for w in workloads(load_spec(Path(DEFAULT_SPEC))) if w.client is not None)
FAULT = Event(100.0, EventKind.FAULT_INJECTED, "fault:power-off dcn1", node="dcn1")
HEAL = Event(160.0, EventKind.FAULT_HEALED, "fault:power-off dcn1", node="dcn1")


def outage(start: float, end: float | None, last_failed: float) -> Outage:
    return Outage(WORKLOAD.id, start, end, start - 0.1, last_failed, 3, (("refused", 3),), "dcn1", "dcn2")


def test_the_longest_outage_after_the_heal_is_the_return() -> None:
    during = outage(100.5, 130.0, 129.9)  # the failover itself: not the return
    small, big = outage(170.0, 171.0, 170.9), outage(180.0, 184.5, 184.4)
    timing = heal_outage([FAULT, HEAL], [during, small, big], FAULT, True, WORKLOAD)
    assert timing.seconds == 4.5
    assert timing.start == HEAL


def test_no_failure_after_the_heal_is_zero_and_says_so() -> None:
    timing = heal_outage([FAULT, HEAL], [outage(100.5, 130.0, 129.9)], FAULT, True, WORKLOAD)
    assert timing.seconds == 0.0
    assert timing.why == "no failed probe attempt after the heal"


def test_a_probe_stopped_while_failing_gives_a_lower_bound() -> None:
    timing = heal_outage([FAULT, HEAL], [outage(170.0, None, 175.0)], FAULT, True, WORKLOAD)
    assert timing.seconds == 5.0
    assert "lower bound" in timing.why


def test_not_measured_cases_say_why() -> None:
    assert heal_outage([FAULT, HEAL], [], FAULT, False, WORKLOAD).seconds is None
    skipped = heal_outage([FAULT, HEAL], [], FAULT, True, WORKLOAD, skipped_return="dcn1's return")
    assert skipped.seconds is None
    assert skipped.why == "not waited for: dcn1's return"
    unhealed = heal_outage([FAULT], [], FAULT, True, WORKLOAD)
    assert unhealed.seconds is None
    assert unhealed.why == "the fault was not healed"
