"""Certification verdicts: what a fault should do to a workload, what the
timeline shows it did, and whether the timings stay within their limits.

Pure logic on recorded data (a timeline and its derived timings), so every
rule here is unit-tested on recorded events. The failover suite declares an
:class:`Expectation` per (fault, workload), runs the fault on a real cluster,
and asserts :func:`judge`'s :class:`Verdict`; its message names the
expectation, the observed value and the timeline excerpt that shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dcnlab.cluster.thresholds import TIMING_NAMES, Thresholds
from dcnlab.observe.timeline import Event, EventKind, Timing, Timings, heal_of, reprobed, select

if TYPE_CHECKING:
    from dcnlab.observe.probe import Outage


class Outcome(StrEnum):
    RELOCATED = "relocated"  # started on another node
    RESTARTED = "restarted in place"  # failed or stopped, then started on the same node
    UNAFFECTED = "unaffected"  # neither stopped, failed nor moved
    # Seen stopped, then found running where it was by a probe, with no
    # failure and no stop operation: the cluster lost track of it and
    # relearnt it (timeline.reprobed), the workload itself ran on.
    REPROBED = "found running in place"


def downtime_over(outages: Iterable[Outage], limit: float) -> list[Outage]:
    """The outages longer than ``limit`` seconds; with a limit of 0, every one
    (a single failed request is downtime then)."""
    return [o for o in outages if limit == 0 or o.duration > limit]


def describe_outage(o: Outage) -> str:
    errors = ", ".join(f"{err} x{n}" for err, n in o.errors)
    where = o.node_before if o.node_before == o.node_after else f"{o.node_before} -> {o.node_after}"
    requests = f"{o.failures} failed requests: {errors}"
    return f"{o.target}: {o.duration:.2f}s at t={o.start:.1f} ({requests}; served by {where})"


def window(events: Sequence[Event], start: float, end: float, margin: float = 5.0) -> str:
    """The timeline from ``margin`` before ``start`` to ``margin`` after ``end``,
    notes included (a grow/shrink step is a note), times from ``start``."""
    return _rows_text([e for e in sorted(events, key=lambda e: e.t) if start - margin <= e.t <= end + margin], start)


@dataclass(frozen=True)
class Alternative:
    """Another outcome a fault may have by design, when the stack races
    itself and either side winning is correct."""

    outcome: Outcome
    fenced: bool
    why: str = ""


@dataclass(frozen=True)
class Expectation:
    """What a fault on the node running ``resource`` should lead to."""

    fault: str  # one of FAULT_KINDS
    resource: str
    outcome: Outcome
    fenced: bool  # the target node is fenced (False: it must not be)
    why: str = ""  # the HA reasoning, for reports
    alternatives: tuple[Alternative, ...] = ()

    def options(self) -> list[Alternative]:
        """Every accepted (outcome, fenced), the declared one first."""
        return [Alternative(self.outcome, self.fenced, self.why), *self.alternatives]

    def describe(self) -> str:
        said = [f"{o.outcome.value}, {'its node fenced' if o.fenced else 'no node fenced'}" for o in self.options()]
        return f"{self.fault}: {self.resource} " + "; or ".join(said)

    def closest(self, outcome: Outcome, fenced: bool) -> Alternative:
        """The accepted option that matches what was seen (both outcome and
        fence, else the outcome), else the declared one: the one to judge by."""
        options = self.options()
        same = [o for o in options if o.outcome is outcome]
        return next((o for o in same if o.fenced == fenced), same[0] if same else options[0])


@dataclass(frozen=True)
class Observed:
    outcome: Outcome
    fenced: bool
    evidence: tuple[Event, ...]  # the events the outcome rests on
    # The resource's last start seen, if any: where it runs at the end, and
    # when; a client answer from there ends the fault only after it (a cut-off
    # node's own view shows its resources started until it is fenced, and it
    # answered clients till then).
    last_start: Event | None = None

    @property
    def where(self) -> str | None:
        return self.last_start.node if self.last_start is not None else None

    @property
    def started_at(self) -> float | None:
        return self.last_start.t if self.last_start is not None else None


def observe(events: Sequence[Event], resource: str, target: str, fault: Event, members: Sequence[str] = ()) -> Observed:
    """What happened to ``resource`` (running on ``target``) after ``fault``
    and before its heal: what the heal and the restore after it do (a node
    rejoining, resources moving back) is not the fault's outcome.

    For a group, pass its ``members``: a member's failure, stop or restart
    on ``target`` is the group's (the journal and failed actions name
    members; the sampler names the group)."""
    healed = heal_of(events, fault)
    after = [e for e in select(events, after=fault.lower) if healed is None or e.t <= healed.t]
    ids = {resource, *members}
    started = [e for e in after if e.kind is EventKind.RESOURCE_STARTED and e.resource in ids]
    trouble = [
        e
        for e in after
        if e.kind in (EventKind.RESOURCE_STOPPED, EventKind.RESOURCE_FAILED)
        and e.resource in ids
        and e.node in (target, None)
    ]
    fences = [e for e in after if e.kind is EventKind.FENCE_CONFIRMED and e.node == target]
    # Relocated: the resource itself (the whole group) came up elsewhere.
    elsewhere = [e for e in started if e.resource == resource and e.node not in (target, None)]
    again = next((e for e in started if e.node == target and e.t >= trouble[0].lower), None) if trouble else None
    if elsewhere:
        outcome, evidence = Outcome.RELOCATED, elsewhere[:1]
    elif again is not None:
        outcome, evidence = Outcome.RESTARTED, [trouble[0], again]
    else:
        outcome, evidence = Outcome.UNAFFECTED, trouble[:1]
    if outcome is Outcome.RESTARTED:
        mine = [e for e in after if e.resource in ids and e.node == target]
        if reprobed(mine, trouble[0]):
            outcome = Outcome.REPROBED
    whole = [e for e in started if e.resource == resource] or started
    return Observed(outcome, bool(fences), tuple([*evidence, *fences[:1]]), whole[-1] if whole else None)


@dataclass(frozen=True)
class Finding:
    what: str  # "outcome", "fenced", or a timing: "detection", "fencing", ...
    expected: str
    observed: str
    ok: bool

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.what}: expected {self.expected}; observed {self.observed}"


@dataclass(frozen=True)
class Verdict:
    expectation: Expectation
    target: str
    findings: tuple[Finding, ...]
    excerpt: str
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def passed(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def message(self) -> str:
        head = "PASS" if self.passed else "FAIL"
        lines = [f"{head}: {self.expectation.describe()} (fault on {self.target})"]
        lines += [f"  {f}" for f in self.findings]
        lines += ["timeline (seconds from the fault):", self.excerpt]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.expectation.fault,
            "resource": self.expectation.resource,
            "target": self.target,
            "expected": self.expectation.describe(),
            "accepted": [
                {"outcome": o.outcome.value, "fenced": o.fenced, "why": o.why} for o in self.expectation.options()
            ],
            "passed": self.passed,
            "findings": [
                {"what": f.what, "expected": f.expected, "observed": f.observed, "ok": f.ok} for f in self.findings
            ],
            "thresholds": self.thresholds.to_dict(),
        }


# Kinds worth showing in a verdict's excerpt (samples of unchanged state and
# probe successes are not events, so this is short already).
_EXCERPT_KINDS = frozenset(EventKind) - {EventKind.NOTE}
EXCERPT_LINES = 40


def excerpt(events: Sequence[Event], fault: Event, resource: str, members: Sequence[str] = ()) -> str:
    """The timeline from just before the fault, relevant events only."""
    rows = [
        e
        for e in sorted(events, key=lambda e: e.t)
        if e.t >= fault.t - 5.0
        and e.kind in _EXCERPT_KINDS
        and (
            e.resource is None
            or e.resource == resource
            or e.resource in members
            or e.kind is EventKind.INVARIANT_VIOLATED
        )
    ]
    return _rows_text(rows, fault.t)


def _rows_text(rows: Sequence[Event], origin: float) -> str:
    """At most EXCERPT_LINES events, times from ``origin``, and how many more there are."""
    text = [e.describe(origin) for e in rows[:EXCERPT_LINES]]
    if len(rows) > EXCERPT_LINES:
        text.append(f"... {len(rows) - EXCERPT_LINES} more events in timeline.json")
    return "\n".join(text) or "(no events)"


def judge(
    expectation: Expectation,
    events: Sequence[Event],
    timings: Timings,
    thresholds: Thresholds,
    target: str,
    members: Sequence[str] = (),
    *,
    clients: bool = True,
) -> Verdict:
    """Check ``events`` (the whole timeline of one fault) against ``expectation``
    and ``timings`` against ``thresholds``. ``clients`` False: the workload
    declares no client endpoint, so its downtime is reported as not measured
    (``timings.downtime.why`` says why) instead of being held to its limit."""
    fault = next((e for e in select(events, EventKind.FAULT_INJECTED) if e.node in (target, None)), None)
    if fault is None:
        finding = Finding("fault", f"a fault injected on {target}", "no fault_injected event", False)
        return Verdict(expectation, target, (finding,), "(no fault on the timeline)", thresholds)
    seen = observe(events, expectation.resource, target, fault, members)
    # With alternatives, judge by the accepted option closest to what happened.
    chosen = expectation.closest(seen.outcome, seen.fenced)
    wanted = chosen.outcome.value
    if expectation.alternatives:
        wanted += " (accepted: " + ", ".join(o.outcome.value for o in expectation.options()) + ")"
    findings = [
        Finding(
            "outcome",
            wanted,
            seen.outcome.value + (f" (now on {seen.where})" if seen.where else ""),
            seen.outcome is chosen.outcome,
        ),
        Finding(
            "fenced",
            f"{target} fenced" if chosen.fenced else f"{target} not fenced",
            f"{target} fenced" if seen.fenced else f"{target} not fenced",
            seen.fenced == chosen.fenced,
        ),
    ]
    required = {
        "detection": chosen.fenced or chosen.outcome is Outcome.RELOCATED,
        "fencing": chosen.fenced,
        "recovery": chosen.outcome is Outcome.RELOCATED,
        "downtime": True,
    }
    for name, timing in zip(TIMING_NAMES, timings.standard(), strict=True):
        limit = getattr(thresholds, name)
        if name == "downtime" and not clients:
            findings.append(Finding(name, "not measured", f"not measured: {timing.why}", True))
            continue
        findings.extend(_check_timing(name, timing, limit, required=required[name]))
    text = excerpt(events, fault, expectation.resource, members)
    return Verdict(expectation, target, tuple(findings), text, thresholds)


def _check_timing(name: str, timing: Timing, limit: float | None, *, required: bool) -> list[Finding]:
    if limit is None:
        return []
    expected = f"at most {limit:g}s"
    if timing.seconds is None:
        # Not observed: fine when the expectation does not need this step
        # (no fence expected, say); a failure when it does.
        return [Finding(name, expected, f"not observed ({timing.why})", not required)]
    observed = f"{timing.seconds:.1f}s"
    if timing.why:
        observed += f" ({timing.why})"
    return [Finding(name, expected, observed, timing.seconds <= limit)]
