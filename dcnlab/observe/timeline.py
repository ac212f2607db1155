"""One ordered list of events from every observer, and the timings derived from it.

Every event carries a time on the host's ``time.monotonic()`` axis
(CLOCK_MONOTONIC: system-wide on Linux, shared by every process and every
network namespace, and never stepped by NTP), so a fault injected by the
harness, a crm_mon sample taken over SSH and a probe attempt made by a child
process inside the fleet's namespace are on one axis.

Not every source knows exactly when something happened. A sampled change
happened between the sample that did not show it and the sample that did; a
Pacemaker wall-clock time has one-second precision and comes from a guest
clock that is only known to within an SSH round trip. So an :class:`Event`
has ``t``, the time by which it had certainly happened (the upper bound), and
``earliest``, the lower bound when that differs. Timings are reported with
those bounds, and :func:`chain` checks an order of events the honest way: it
passes when there are times inside every event's bounds that follow the
order, and says separately whether the upper bounds alone already do.

Nothing here does I/O besides :meth:`Recorder.dump`: the maths is unit tested
on recorded events.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class EventKind(StrEnum):
    FAULT_INJECTED = "fault_injected"
    FAULT_HEALED = "fault_healed"
    MEMBERSHIP_CHANGED = "membership_changed"  # a corosync membership seen by some observer changed
    NODE_LOST = "node_lost"  # a node left the membership seen by a partition
    NODE_JOINED = "node_joined"  # a lost node is a member again
    QUORUM_LOST = "quorum_lost"
    QUORUM_REGAINED = "quorum_regained"
    FENCE_STARTED = "fence_started"
    FENCE_CONFIRMED = "fence_confirmed"
    FENCE_FAILED = "fence_failed"
    RESOURCE_STOPPED = "resource_stopped"
    RESOURCE_STARTED = "resource_started"
    RESOURCE_FAILED = "resource_failed"  # a failed action appeared
    # A probe found the resource already running: the cluster relearnt a
    # state it had lost (a respawned controller's), no operation ran.
    RESOURCE_FOUND = "resource_found"
    CLIENT_FAILURE_FIRST = "client_failure_first"  # first failed probe attempt of an outage
    CLIENT_RECOVERED = "client_recovered"  # first successful attempt after an outage
    CLIENT_NODE_CHANGED = "client_node_changed"  # another node answers the endpoint
    INVARIANT_VIOLATED = "invariant_violated"
    INVARIANT_RESTORED = "invariant_restored"
    NODE_UNREACHABLE = "node_unreachable"  # the harness cannot sample a node (off, cut, hung)
    NODE_REACHABLE = "node_reachable"
    CLUSTER_HEALTHY = "cluster_healthy"  # converged again after a heal
    NOTE = "note"


@dataclass(frozen=True)
class Event:
    """Something that happened, on the monotonic axis.

    ``t`` is when it had certainly happened (a sample that showed it, the end
    of the call that injected a fault); ``earliest`` is the earliest it can
    have happened when that is not ``t`` (the previous sample, the start of
    the call). ``source`` says who saw it: ``fault``, ``sampler:dcn2``,
    ``fence-history:dcn2``, ``probe:web``, ``watch:dcn1``.
    """

    t: float
    kind: EventKind
    source: str
    node: str | None = None
    resource: str | None = None
    detail: str = ""
    earliest: float | None = None

    @property
    def lower(self) -> float:
        return self.t if self.earliest is None else min(self.earliest, self.t)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(**{**data, "kind": EventKind(data["kind"])})

    def describe(self, origin: float = 0.0) -> str:
        when = f"{self.t - origin:+9.2f}s"
        if self.earliest is not None and self.t - self.earliest > 0.005:
            when += f" (after {self.earliest - origin:+.2f}s)"
        subject = " ".join(
            x for x in (self.node and f"node={self.node}", self.resource and f"rsc={self.resource}") if x
        )
        return f"{when}  {self.kind.value:<20} {subject:<24} [{self.source}] {self.detail}".rstrip()


# ---------------------------------------------------------------- clocks


@dataclass(frozen=True)
class ClockAnchor:
    """A (wall, monotonic) pair read together on the host, to put wall-clock
    times (Pacemaker's, a guest's) on the monotonic axis. ``error`` is half
    the time the two reads took."""

    wall: float
    monotonic: float
    error: float = 0.0

    @classmethod
    def take(cls) -> ClockAnchor:
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        return cls(wall, (before + after) / 2, (after - before) / 2)

    def to_monotonic(self, wall: float | datetime, guest: GuestClock | None = None) -> float:
        """The monotonic time of a wall-clock time read on the host, or on a
        guest whose clock is ``guest``."""
        stamp = wall.timestamp() if isinstance(wall, datetime) else wall
        if guest is not None:
            stamp -= guest.offset
        return self.monotonic + (stamp - self.wall)

    def bounds(
        self, wall: float | datetime, *, precision: float = 0.0, guest: GuestClock | None = None
    ) -> tuple[float, float]:
        """(earliest, latest) monotonic times of a wall-clock reading that was
        truncated to ``precision`` seconds (1.0 for Pacemaker's ``completed``),
        widened by the anchor's and the guest clock's uncertainty."""
        t = self.to_monotonic(wall, guest)
        err = self.error + (guest.error if guest is not None else 0.0)
        return t - err, t + precision + err


@dataclass(frozen=True)
class GuestClock:
    """How far a guest's wall clock is ahead of the host's (``offset``
    seconds, negative when behind), known to within ``error`` seconds.

    Measured by reading the guest's clock over SSH between two host
    monotonic reads: the guest read happened somewhere inside that round
    trip, so the error is half of it. The smallest round trip seen wins.
    """

    node: str
    offset: float
    error: float

    @classmethod
    def measure(cls, node: str, anchor: ClockAnchor, before: float, guest_wall: float, after: float) -> GuestClock:
        """From one reading: host monotonic ``before`` and ``after`` the
        command, and the guest's ``date +%s.%N`` in between."""
        host_wall = anchor.wall + ((before + after) / 2 - anchor.monotonic)
        return cls(node, guest_wall - host_wall, (after - before) / 2 + anchor.error)

    def better(self, other: GuestClock | None) -> GuestClock:
        return self if other is None or self.error <= other.error else other


# -------------------------------------------------------------- recorder


class Recorder:
    """The one place events go. Thread-safe: faults, the sampler thread and
    the probe reader record concurrently. :meth:`events` returns them sorted
    by ``t`` (ties keep recording order)."""

    def __init__(self, anchor: ClockAnchor | None = None) -> None:
        self.anchor = anchor or ClockAnchor.take()
        self.guest_clocks: dict[str, GuestClock] = {}
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def record(
        self,
        kind: EventKind,
        source: str,
        *,
        node: str | None = None,
        resource: str | None = None,
        detail: str = "",
        t: float | None = None,
        earliest: float | None = None,
    ) -> Event:
        event = Event(time.monotonic() if t is None else t, kind, source, node, resource, detail, earliest)
        self.add(event)
        return event

    def add(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def extend(self, events: Iterable[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def note_guest_clock(self, clock: GuestClock) -> GuestClock:
        """Keep the most precise clock reading of each guest; return it."""
        with self._lock:
            best = clock.better(self.guest_clocks.get(clock.node))
            self.guest_clocks[clock.node] = best
            return best

    def events(
        self,
        kind: EventKind | None = None,
        *,
        node: str | None = None,
        resource: str | None = None,
        after: float | None = None,
    ) -> list[Event]:
        with self._lock:
            snapshot = list(self._events)
        return select(snapshot, kind, node=node, resource=resource, after=after)

    def first(self, kind: EventKind, **filters: Any) -> Event | None:
        found = self.events(kind, **filters)
        return found[0] if found else None

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            clocks = {name: asdict(c) for name, c in self.guest_clocks.items()}
        return {
            "anchor": asdict(self.anchor),
            "guest_clocks": clocks,
            "events": [e.to_dict() for e in self.events()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recorder:
        rec = cls(ClockAnchor(**data["anchor"]))
        rec.guest_clocks = {name: GuestClock(**c) for name, c in data.get("guest_clocks", {}).items()}
        rec.extend(Event.from_dict(e) for e in data["events"])
        return rec

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def table(self, origin: float | None = None) -> str:
        """The events as text, times relative to ``origin`` (default: the
        first fault, else the first event)."""
        events = self.events()
        if origin is None:
            fault = next((e for e in events if e.kind is EventKind.FAULT_INJECTED), None)
            origin = fault.t if fault else (events[0].t if events else 0.0)
        return "\n".join(e.describe(origin) for e in events)


def select(
    events: Iterable[Event],
    kind: EventKind | None = None,
    *,
    node: str | None = None,
    resource: str | None = None,
    after: float | None = None,
) -> list[Event]:
    """Events matching every given filter, sorted by ``t``; ``after`` keeps
    those known to have happened after that time (``t`` later than it)."""
    out = [
        e
        for e in events
        if (kind is None or e.kind is kind)
        and (node is None or e.node == node)
        and (resource is None or e.resource == resource)
        and (after is None or e.t > after)
    ]
    return sorted(out, key=lambda e: e.t)


# ---------------------------------------------------------------- order


@dataclass(frozen=True)
class Match:
    """One step of an expected order: an event of ``kind`` (and, when given,
    of ``node``, of ``resource``, or on any node but ``not_node``)."""

    kind: EventKind
    node: str | None = None
    resource: str | None = None
    not_node: str | None = None

    def matches(self, e: Event) -> bool:
        return (
            e.kind is self.kind
            and (self.node is None or e.node == self.node)
            and (self.resource is None or e.resource == self.resource)
            and (self.not_node is None or (e.node is not None and e.node != self.not_node))
        )

    def __str__(self) -> str:
        parts = [self.kind.value]
        if self.node:
            parts.append(f"node={self.node}")
        if self.not_node:
            parts.append(f"node!={self.not_node}")
        if self.resource:
            parts.append(f"rsc={self.resource}")
        return " ".join(parts)


@dataclass(frozen=True)
class Chain:
    """The result of :func:`chain`: the events found for each step (None
    from the first step that has none)."""

    steps: tuple[Match, ...]
    events: tuple[Event | None, ...]
    consistent: bool  # every step found, at times within bounds that follow the order
    strict: bool  # and even the upper bounds (t) alone follow it

    @property
    def missing(self) -> Match | None:
        for step, event in zip(self.steps, self.events, strict=True):
            if event is None:
                return step
        return None

    def describe(self, origin: float | None = None) -> str:
        base = origin if origin is not None else next((e.t for e in self.events if e is not None), 0.0)
        lines = []
        for step, event in zip(self.steps, self.events, strict=True):
            lines.append(f"{step}: " + (event.describe(base) if event else "NOT OBSERVED"))
        return "\n".join(lines)


def chain(events: Iterable[Event], steps: Sequence[Match]) -> Chain:
    """Find the first event of each step that can have happened after the
    previous one, and check the whole order.

    An event can follow the previous step if its upper bound is not before
    the point the order has reached: that point moves to the later of itself
    and the event's lower bound. So a node seen lost at the same sample that
    shows its fence completed (the fence's second-precision time being the
    earlier upper bound) still counts as in order, while a fence that
    certainly completed before the node was lost does not.
    """
    ordered = sorted(events, key=lambda e: e.t)
    found: list[Event | None] = []
    reached = float("-inf")
    consistent = True
    for step in steps:
        event = next((e for e in ordered if step.matches(e) and e.t >= reached), None)
        found.append(event)
        if event is None:
            consistent = False
            found.extend([None] * (len(steps) - len(found)))
            break
        reached = max(reached, event.lower)
    present = [e for e in found if e is not None]
    strict = consistent and all(a.t <= b.t for a, b in itertools.pairwise(present))
    return Chain(tuple(steps), tuple(found), consistent, strict)


# --------------------------------------------------------------- timings


class Span(Protocol):
    """An outage as the probe analysis reports it (see dcnlab.observe.probe.Outage)."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float | None: ...  # None: still failing when the probe stopped
    @property
    def last_ok_before(self) -> float | None: ...
    @property
    def last_failed(self) -> float: ...


@dataclass(frozen=True)
class Timing:
    """A derived duration, with the bounds the evidence allows, or the
    reason it was not observed (``seconds`` None)."""

    name: str
    seconds: float | None
    low: float | None = None
    high: float | None = None
    start: Event | None = None
    end: Event | None = None
    why: str = ""  # what was missing, when not observed; a caveat otherwise

    @property
    def observed(self) -> bool:
        return self.seconds is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "observed": self.observed,
            "seconds": _round(self.seconds),
            "low": _round(self.low),
            "high": _round(self.high),
            "start": self.start.to_dict() if self.start else None,
            "end": self.end.to_dict() if self.end else None,
            "why": self.why,
        }

    def __str__(self) -> str:
        if self.seconds is None:
            return f"{self.name}: not observed ({self.why})"
        text = f"{self.name}: {self.seconds:.2f}s"
        if self.low is not None and self.high is not None:
            text += f" [{self.low:.2f}, {self.high:.2f}]"
        return text + (f" ({self.why})" if self.why else "")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _between(name: str, start: Event, end: Event, why: str = "") -> Timing:
    # Bounds that overlap can put the best estimates out of order by a
    # fraction of a second: the duration is then zero, within [low, high].
    return Timing(
        name,
        max(0.0, end.t - start.t),
        low=max(0.0, end.lower - start.t),
        high=end.t - start.lower,
        start=start,
        end=end,
        why=why,
    )


def _fault(events: Sequence[Event], fault: Event | None) -> Event | None:
    if fault is not None:
        return fault
    return next(iter(select(events, EventKind.FAULT_INJECTED)), None)


def detection(events: Sequence[Event], fault: Event | None = None) -> Timing:
    """Fault -> the cluster noticed: the faulted node seen lost by a
    partition, a membership change, or (a workload's fault, no node lost) a
    failed action on the faulted node, whichever came first."""
    f = _fault(events, fault)
    if f is None:
        return Timing("detection", None, why="no fault_injected event")
    after = select(events, after=f.t)
    lost = next((e for e in after if e.kind is EventKind.NODE_LOST and (f.node is None or e.node == f.node)), None)
    changed = next((e for e in after if e.kind is EventKind.MEMBERSHIP_CHANGED), None)
    failed = next(
        (e for e in after if e.kind is EventKind.RESOURCE_FAILED and (f.node is None or e.node == f.node)), None
    )
    candidates = [e for e in (lost, changed, failed) if e is not None]
    if not candidates:
        return Timing(
            "detection", None, start=f, why="no node_lost, membership_changed or resource_failed after the fault"
        )
    return _between("detection", f, min(candidates, key=lambda e: e.t))


def fencing(events: Sequence[Event], fault: Event | None = None) -> Timing:
    """Node lost -> its fence confirmed."""
    f = _fault(events, fault)
    if f is None:
        return Timing("fencing", None, why="no fault_injected event")
    lost = next((e for e in select(events, EventKind.NODE_LOST, after=f.t) if f.node is None or e.node == f.node), None)
    if lost is None:
        return Timing("fencing", None, start=f, why="the faulted node was not seen lost")
    fenced = next(
        (e for e in select(events, EventKind.FENCE_CONFIRMED) if e.node == lost.node and e.t >= lost.lower), None
    )
    if fenced is None:
        return Timing("fencing", None, start=lost, why=f"no fence of {lost.node} confirmed after it was lost")
    return _between("fencing", lost, fenced)


def recovery(events: Sequence[Event], resource: str, fault: Event | None = None, members: Sequence[str] = ()) -> Timing:
    """Fault -> ``resource`` started on another node than the faulted one
    (any node when the fault names none); failing that, started again on the
    faulted node after it failed or stopped there (a restart in place; for a
    group, pass its ``members``: the journal names the member restarted)."""
    f = _fault(events, fault)
    if f is None:
        return Timing(f"recovery of {resource}", None, why="no fault_injected event")
    started = next(
        (
            e
            for e in select(events, EventKind.RESOURCE_STARTED, resource=resource, after=f.t)
            if f.node is None or e.node != f.node
        ),
        None,
    )
    if started is not None:
        return _between(f"recovery of {resource}", f, started)
    ids = {resource, *members}
    after = [e for e in select(events, after=f.t) if e.resource in ids and e.node == f.node]
    trouble = next((e for e in after if e.kind in (EventKind.RESOURCE_FAILED, EventKind.RESOURCE_STOPPED)), None)
    again = (
        next((e for e in after if e.kind is EventKind.RESOURCE_STARTED and e.t >= trouble.lower), None)
        if trouble is not None
        else None
    )
    if f.node is not None and again is not None:
        how = "found running in place by a re-probe" if reprobed(after, trouble) else "restarted in place"
        return _between(f"recovery of {resource}", f, again, why=f"{how} on {f.node}")
    where = f" elsewhere than {f.node}, nor again on it after a failure" if f.node else ""
    return Timing(f"recovery of {resource}", None, start=f, why=f"{resource} was not seen started{where}")


def reprobed(events: Sequence[Event], trouble: Event | None) -> bool:
    """Whether ``trouble`` (the resource seen stopped) was the cluster losing
    track of it rather than stopping it: ``events`` (one resource on one node,
    from the fault on) show a probe finding it running after the trouble, and
    no failure nor stop operation. A node whose controller is respawned has
    its resource history wiped and re-probed; crm_mon shows the resources
    stopped meanwhile, though they never stopped."""
    if trouble is None:
        return False
    found = any(e.kind is EventKind.RESOURCE_FOUND and e.t >= trouble.lower for e in events)
    # A stop operation is the journal's; the sampler's "stopped" is the view.
    operated = any(e.kind is EventKind.RESOURCE_STOPPED and e.source.startswith("journal:") for e in events)
    stopped = operated or any(e.kind is EventKind.RESOURCE_FAILED for e in events)
    return found and not stopped


def client_downtime(
    outages: Iterable[Span], fault: Event | None, healed: Event | None = None, *, name: str = "client downtime"
) -> Timing:
    """The longest outage overlapping the fault (from its injection to its
    heal, or to the end of the probe data). An outage still open when the
    probe stopped counts up to its last failed attempt, as a lower bound."""
    if fault is None:
        return Timing(name, None, why="no fault_injected event")
    until = healed.t if healed is not None else float("inf")
    best: Timing | None = None
    for o in outages:
        end = o.end if o.end is not None else o.last_failed
        if end <= fault.lower or o.start >= until:
            continue
        seconds = end - o.start
        low = max(0.0, o.last_failed - o.start)
        high = None if o.end is None or o.last_ok_before is None else o.end - o.last_ok_before
        why = "probe stopped while still failing: a lower bound" if o.end is None else ""
        timing = Timing(name, seconds, low=low, high=high if high is not None else seconds, why=why)
        if best is None or (best.seconds or 0.0) < seconds:
            best = timing
    if best is None:
        return Timing(name, 0.0, low=0.0, high=0.0, start=fault, why="no failed probe attempt during the fault")
    return Timing(best.name, best.seconds, best.low, best.high, fault, None, best.why)


@dataclass(frozen=True)
class Timings:
    detection: Timing
    fencing: Timing
    recovery: Timing
    downtime: Timing
    extra: tuple[Timing, ...] = field(default=())

    def standard(self) -> tuple[Timing, Timing, Timing, Timing]:
        """Detection, fencing, recovery, downtime: the timings thresholds apply to."""
        return (self.detection, self.fencing, self.recovery, self.downtime)

    def all(self) -> list[Timing]:
        return [*self.standard(), *self.extra]

    def to_dict(self) -> dict[str, Any]:
        return {t.name: t.to_dict() for t in self.all()}

    def __str__(self) -> str:
        return "\n".join(str(t) for t in self.all())


def heal_of(events: Iterable[Event], fault: Event) -> Event | None:
    """The heal of ``fault``: the first ``fault_healed`` after it from the same source."""
    return next((e for e in select(events, EventKind.FAULT_HEALED, after=fault.t) if e.source == fault.source), None)


def derive(
    events: Sequence[Event], resource: str, outages: Iterable[Span] = (), members: Sequence[str] = ()
) -> Timings:
    """Every standard timing of the first fault in ``events`` (``members``:
    of ``resource`` when it is a group, see :func:`recovery`)."""
    f = _fault(events, None)
    healed = heal_of(events, f) if f is not None else None
    return Timings(
        detection(events, f),
        fencing(events, f),
        recovery(events, resource, f, members),
        client_downtime(outages, f, healed),
    )
