"""The cluster sampler: crm_mon and corosync membership from every node, all
through a fault, turned into timeline events and checked against the
invariants at every sample.

A background thread asks every running node, each in its own worker, for one
sample: the guest's clock, ``crm_mon`` (:data:`CRM_MON_ARGV`) and
``corosync-quorumtool -s``, in one SSH command. A node that does not answer
(powered off, cut off, frozen) is marked unreachable and retried at the next
tick; the others go on. Each sample is fed to a :class:`Tracker`, which is
pure (unit tested on recorded output) and turns changes into events:
membership changes and lost nodes (corosync's view, per observer), quorum,
resources started and stopped (merged from every partition, see
:mod:`dcnlab.cluster.invariants`), fences from Pacemaker's fence history (its
wall-clock ``completed`` put on the monotonic axis through the guest clock
offsets measured when the sampler starts), failed actions, and invariant
violations and their end.

Pace: a node is sampled at most once per ``interval`` (3 s by default),
and after each sample it is left alone for ``min_gap`` (the interval again)
however long the sample took. Each sample costs the guest real CPU: under TCG
crm_mon takes 0.7-0.9 s and corosync-quorumtool 0.3-1.5 s of a guest's single
emulated vCPU, and a sample took 2-3 s end to end on a host running just one
3-node fleet (10-15 s when the host was shared with another fleet). Sampling
back to back, or every second, saturated the guests: monitors timed out and
the web page stopped answering *before* any fault. Every 2 s with a rest
of half that still left a guest busy with a failover short of CPU: IPaddr2
and podman monitors timed out (20 s, 30 s) while the sampler took 2-3 s of
every 3-4. A rest as long as the interval caps the observer near a third of
a guest's vCPU while still resolving a failover that takes tens of seconds
under TCG; the journal
(:mod:`dcnlab.observe.journal`) then times the steps to the microsecond. Events
from samples carry the previous sample's time as their lower bound, so the
resolution actually achieved is in the data.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcnlab.cluster.corosync import QuorumStatus, parse_quorumtool
from dcnlab.cluster.crm import CRM_MON_ARGV, ClusterState, FenceEvent, parse_crm_mon
from dcnlab.cluster.invariants import View, Violation, check, fenced_since, informed, merge, replay
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import DcnlabError
from dcnlab.fleet.node import Node
from dcnlab.observe.timeline import ClockAnchor, Event, EventKind, GuestClock, Recorder

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet
    from dcnlab.fleet.provider import Provider

DEFAULT_INTERVAL = 3.0
# One sample's command may take this long (seconds, before the accelerator's scale).
SAMPLE_TIMEOUT = 5.0
TICK = 0.1  # how often the sampling thread looks for work
CLOCK_READINGS = 3  # per node when the sampler starts; the shortest round trip wins
MARK = "@@dcnlab"
SAMPLE_SCRIPT = (
    "date +%s.%N; "
    f"echo {MARK} crm_mon; {shlex.join(CRM_MON_ARGV)} 2>&1; echo {MARK} rc $?; "
    f"echo {MARK} quorum; corosync-quorumtool -s 2>&1; echo {MARK} rc $?"
)


@dataclass(frozen=True)
class Sample:
    """One node's answer (or its absence). ``before``/``after``: host
    monotonic times around the command."""

    node: str
    before: float
    after: float
    state: ClusterState | None = None
    quorum: QuorumStatus | None = None
    guest_wall: float | None = None
    error: str | None = None

    @property
    def reached(self) -> bool:
        return self.guest_wall is not None

    def view(self) -> View | None:
        if self.state is None:
            return None
        members = frozenset(self.quorum.member_names()) if self.quorum is not None else None
        return View(self.node, self.after, self.state, members)


def parse_sample(node: str, before: float, after: float, text: str) -> Sample:
    """Split the output of :data:`SAMPLE_SCRIPT` and parse its parts. crm_mon
    or corosync not answering (the stack is down on that node) leaves that
    part None and says why in ``error``."""
    lines = text.splitlines()
    try:
        guest_wall = float(lines[0])
    except (IndexError, ValueError):
        return Sample(node, before, after, error=f"unexpected sample output: {text.strip()[:200]!r}")
    sections: dict[str, list[str]] = {}
    codes: dict[str, int] = {}
    current: str | None = None
    for line in lines[1:]:
        if line.startswith(MARK + " "):
            word = line[len(MARK) + 1 :].split()
            if word and word[0] == "rc" and current is not None:
                codes[current] = int(word[1]) if len(word) > 1 and word[1].lstrip("-").isdigit() else -1
                current = None
            elif word:
                current = word[0]
                sections[current] = []
            continue
        if current is not None:
            sections[current].append(line)
    errors = []
    state = None
    crm_text = "\n".join(sections.get("crm_mon", []))
    try:
        state = parse_crm_mon(crm_text)
    except DcnlabError as err:
        errors.append(f"crm_mon (exit {codes.get('crm_mon')}): {str(err).splitlines()[0]}")
    quorum = None
    try:
        quorum = parse_quorumtool("\n".join(sections.get("quorum", [])))
    except DcnlabError as err:
        errors.append(f"corosync-quorumtool (exit {codes.get('quorum')}): {str(err).splitlines()[0]}")
    return Sample(node, before, after, state, quorum, guest_wall, "; ".join(errors) or None)


# ---------------------------------------------------------------- tracker


@dataclass
class _Observer:
    reachable: bool | None = None
    last_ok: float | None = None  # `before` of its last answered sample
    members: frozenset[str] | None = None
    quorate: bool | None = None
    view: View | None = None


@dataclass
class Tracker:
    """Turns a stream of samples into events and invariant checks (pure).

    ``armed`` is when observation began: fence history and failed actions
    from before it are not news. ``max_age``: a view older than this no
    longer speaks for its partition.
    """

    spec: ClusterSpec
    anchor: ClockAnchor
    armed: float
    max_age: float
    clocks: dict[str, GuestClock] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    _observers: dict[str, _Observer] = field(default_factory=dict)
    _lost: dict[str, set[frozenset[str]]] = field(default_factory=dict)  # node -> partitions that lost it
    _believed: dict[tuple[str, str], float] = field(default_factory=dict)  # (rsc, node) -> since
    _last_merge: float | None = None
    _fences: set[tuple[str, str, str, str, str]] = field(default_factory=set)
    fenced: dict[str, list[float]] = field(default_factory=dict)  # node -> completed fences (latest bound)
    _failures: set[tuple[str, str, str]] = field(default_factory=set)
    _ongoing: dict[tuple[str, str, str | None, tuple[str, ...]], Violation] = field(default_factory=dict)
    quiet: bool = False  # learn the baseline placement without reporting it as starts

    def placement(self) -> dict[str, frozenset[str]]:
        """Where each resource runs as far as the tracker believes now."""
        out: dict[str, set[str]] = {}
        for rsc, node in self._believed:
            out.setdefault(rsc, set()).add(node)
        return {k: frozenset(v) for k, v in out.items()}

    def feed(self, sample: Sample) -> list[Event]:
        events: list[Event] = []
        obs = self._observers.setdefault(sample.node, _Observer())
        src = f"sampler:{sample.node}"
        if not sample.reached:
            if obs.reachable is not False:
                events.append(
                    Event(sample.after, EventKind.NODE_UNREACHABLE, src, node=sample.node,
                          detail=sample.error or "", earliest=obs.last_ok)
                )  # fmt: skip
            obs.reachable = False
            obs.view = None
            events += self._merge(sample.after)
            return events
        if obs.reachable is False:
            events.append(Event(sample.after, EventKind.NODE_REACHABLE, src, node=sample.node, earliest=sample.before))
        obs.reachable = True
        earliest = obs.last_ok if obs.last_ok is not None else sample.before
        events += self._membership(sample, obs, earliest)
        view = sample.view()
        obs.view = view
        obs.last_ok = sample.before
        if view is not None:
            self.views.append(view)
            events += self._history(sample, view.state, earliest)
        events += self._merge(sample.after)
        return events

    # -- corosync ---------------------------------------------------------

    def _membership(self, sample: Sample, obs: _Observer, earliest: float) -> list[Event]:
        events: list[Event] = []
        src = f"sampler:{sample.node}"
        q = sample.quorum
        members = frozenset(q.member_names()) if q is not None else None
        if members is None and sample.state is not None:
            members = frozenset(sample.state.online_nodes())
        if members is not None and obs.members is not None and members != obs.members:
            events.append(
                Event(sample.after, EventKind.MEMBERSHIP_CHANGED, src, node=sample.node,
                      detail=f"{sample.node} sees {_names(members)} (was {_names(obs.members)})", earliest=earliest)
            )  # fmt: skip
            for gone in sorted(obs.members - members):
                seen_by = self._lost.setdefault(gone, set())
                if members not in seen_by:
                    seen_by.add(members)
                    events.append(
                        Event(sample.after, EventKind.NODE_LOST, src, node=gone,
                              detail=f"partition {_names(members)} lost {gone}", earliest=earliest)
                    )  # fmt: skip
            for back in sorted(members - obs.members):
                if self._lost.pop(back, None):
                    events.append(
                        Event(sample.after, EventKind.NODE_JOINED, src, node=back,
                              detail=f"{sample.node} sees {back} again", earliest=earliest)
                    )  # fmt: skip
        if members is not None:
            obs.members = members
        if q is not None:
            if obs.quorate is not None and q.quorate != obs.quorate:
                kind = EventKind.QUORUM_REGAINED if q.quorate else EventKind.QUORUM_LOST
                events.append(
                    Event(sample.after, kind, src, node=sample.node,
                          detail=f"{sample.node}: {q.total_votes} of {q.expected_votes} votes", earliest=earliest)
                )  # fmt: skip
            obs.quorate = q.quorate
        return events

    # -- fence history and failed actions -----------------------------------

    def _history(self, sample: Sample, state: ClusterState, earliest: float) -> list[Event]:
        events: list[Event] = []
        src = f"sampler:{sample.node}"
        for fence in state.fencing:
            key = (fence.target, fence.action, fence.status, str(fence.completed), fence.origin)
            if key in self._fences:
                continue
            self._fences.add(key)
            if fence.status == "pending":
                events.append(
                    Event(sample.after, EventKind.FENCE_STARTED, src, node=fence.target,
                          detail=_fence_detail(fence), earliest=earliest)
                )  # fmt: skip
                continue
            kind = EventKind.FENCE_CONFIRMED if fence.status == "success" else EventKind.FENCE_FAILED
            lo, hi = earliest, sample.after
            if fence.completed is not None:
                clock = self._clock_of(fence, sample.node)
                lo, hi = self.anchor.bounds(fence.completed, precision=_precision(fence), guest=clock)
                hi = min(hi, sample.after)
                lo = min(lo, hi)
            if kind is EventKind.FENCE_CONFIRMED:
                self.fenced.setdefault(fence.target, []).append(hi)
            if hi < self.armed:
                continue  # history from before we were watching
            events.append(
                Event(hi, kind, f"fence-history:{sample.node}", node=fence.target,
                      detail=_fence_detail(fence), earliest=lo)
            )  # fmt: skip
        for fail in state.failures:
            fkey = (fail.op_key, fail.node, str(fail.last_rc_change or fail.call))
            if fkey in self._failures:
                continue
            self._failures.add(fkey)
            if fail.last_rc_change is not None:
                _lo, hi = self.anchor.bounds(fail.last_rc_change, precision=1.0, guest=self.clocks.get(fail.node))
                if hi < self.armed:
                    continue
            events.append(
                Event(sample.after, EventKind.RESOURCE_FAILED, src, node=fail.node, resource=fail.resource,
                      detail=f"{fail.task} {fail.exitstatus}: {fail.exitreason}".strip(), earliest=earliest)
            )  # fmt: skip
        return events

    def _clock_of(self, fence: FenceEvent, observer: str) -> GuestClock | None:
        # The node that carried the fence out stamped its completion.
        for name in (fence.delegate, fence.origin, observer):
            if name and name in self.clocks:
                return self.clocks[name]
        return None

    # -- placement and invariants ---------------------------------------------

    def fresh_views(self, now: float) -> list[View]:
        """The views that speak at ``now``: of reachable nodes, not older than
        ``max_age``, and not taken before a fence of their node that has
        completed since (:func:`~dcnlab.cluster.invariants.fenced_since`: the node
        is still "reachable" while the sample that will time out is pending)."""
        return [
            o.view
            for o in self._observers.values()
            if o.reachable
            and o.view is not None
            and now - o.view.t <= self.max_age
            and not fenced_since(o.view, now, self.fenced)
        ]

    def _merge(self, now: float) -> list[Event]:
        views = informed(self.fresh_views(now))  # what merge() counts vouches for nodes too
        if not views:
            return []
        placement = merge(views)
        events: list[Event] = []
        earliest = self._last_merge
        self._last_merge = now
        visible = _settled_nodes(views)
        # A group counts as started where all its members are (the service
        # is up), and as stopped as soon as one of them is not.
        current = {
            (rsc, node) for rsc, nodes in placement.running.items() if rsc not in placement.groups for node in nodes
        }
        current |= {(grp, node) for grp, nodes in placement.complete.items() for node in nodes}
        for rsc, node in sorted(current - set(self._believed)):
            self._believed[(rsc, node)] = now
            if self.quiet:
                continue
            by = ", ".join(placement.claimed_by.get((rsc, node), ()))
            events.append(
                Event(now, EventKind.RESOURCE_STARTED, "sampler", node=node, resource=rsc,
                      detail=f"seen by {by}", earliest=earliest)
            )  # fmt: skip
        for rsc, node in sorted(set(self._believed) - current):
            if node not in visible:
                continue  # nobody can tell yet (the node is unclean or unseen): keep believing
            del self._believed[(rsc, node)]
            if self.quiet:
                continue
            events.append(Event(now, EventKind.RESOURCE_STOPPED, "sampler", node=node, resource=rsc, earliest=earliest))
        found = check(placement, self.spec)
        self.violations.extend(found)
        keys = {v.key: v for v in found}
        for key, v in keys.items():
            if key not in self._ongoing:
                events.append(
                    Event(now, EventKind.INVARIANT_VIOLATED, "invariants", node=",".join(v.nodes),
                          resource=v.resource, detail=v.detail, earliest=earliest)
                )  # fmt: skip
        for key, v in self._ongoing.items():
            if key not in keys:
                events.append(
                    Event(now, EventKind.INVARIANT_RESTORED, "invariants", node=",".join(v.nodes),
                          resource=v.resource, detail=v.kind.value, earliest=earliest)
                )  # fmt: skip
        self._ongoing = keys
        return events


def _settled_nodes(views: Iterable[View]) -> set[str]:
    """Nodes whose resources some view can vouch for: online there, or
    offline and clean (fenced, or stopped cleanly)."""
    out: set[str] = set()
    for v in views:
        for n in v.state.nodes:
            if n.online or not n.unclean:
                out.add(n.name)
    return out


def _names(nodes: Iterable[str]) -> str:
    return "{" + ",".join(sorted(nodes)) + "}"


def _precision(fence: FenceEvent) -> float:
    # Pacemaker 2.1 prints `completed` as a time_t string: whole seconds.
    return 1.0 if fence.completed is not None and fence.completed.microsecond == 0 else 1e-6


def _fence_detail(fence: FenceEvent) -> str:
    text = f"{fence.action} {fence.status}, asked by {fence.origin}"
    if fence.delegate:
        text += f", done by {fence.delegate}"
    if fence.exit_reason:
        text += f": {fence.exit_reason}"
    return text


def replay_log(
    text: str,
    spec: ClusterSpec,
    anchor: ClockAnchor,
    *,
    clocks: dict[str, GuestClock] | None = None,
    max_age: float = 5.0,
) -> tuple[list[Event], Tracker]:
    """Feed a sampler's raw log (``raw_log``: one JSON line per sample) to a
    fresh :class:`Tracker`, the first sample of each node as the baseline,
    as the live sampler does. For post-mortems and tests on recorded runs.
    Without ``clocks``, each guest's clock offset is taken from the clock
    reading every sample carries (the shortest sample's)."""
    rows = sorted((json.loads(line) for line in text.splitlines() if line.strip()), key=lambda r: r["after"])
    samples = [parse_sample(r["node"], r["before"], r["after"], r["text"]) for r in rows]
    armed = samples[0].before if samples else 0.0
    if clocks is None:
        # Each sample read the guest's clock too: the shortest sample says most.
        clocks = {}
        for sm in samples:
            if sm.guest_wall is not None:
                reading = GuestClock.measure(sm.node, anchor, sm.before, sm.guest_wall, sm.after)
                clocks[sm.node] = reading.better(clocks.get(sm.node))
    tracker = Tracker(spec, anchor, armed=armed, max_age=max_age, clocks=dict(clocks))
    events: list[Event] = []
    seen: set[str] = set()
    for sample in samples:
        tracker.quiet = sample.node not in seen
        seen.add(sample.node)
        events += tracker.feed(sample)
    tracker.quiet = False
    return events, tracker


# ---------------------------------------------------------------- sampler


class ClusterSampler:
    """Samples every running node of ``fleet`` from :meth:`start` to
    :meth:`stop`, recording events into ``recorder``.

    It uses its own SSH connections (one :class:`Node` per node, separate
    from ``fleet.nodes``) and its own handle on the machines (Fleet.new_provider), so it never races
    the test for them.
    """

    def __init__(
        self,
        fleet: Fleet,
        spec: ClusterSpec,
        recorder: Recorder,
        *,
        interval: float = DEFAULT_INTERVAL,
        command_timeout: float | None = None,
        max_age: float | None = None,
        raw_log: Path | None = None,
        min_gap: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("sampling interval must be positive")
        self.fleet = fleet
        self.spec = spec
        self.recorder = recorder
        self.interval = interval
        self.command_timeout = command_timeout or SAMPLE_TIMEOUT * fleet.accel.scale
        self.tracker = Tracker(
            spec,
            recorder.anchor,
            armed=time.monotonic(),
            max_age=max_age if max_age is not None else max(5 * interval, 5.0),
            clocks=recorder.guest_clocks,
        )
        self.min_gap = min_gap if min_gap is not None else interval
        self._due: dict[str, float] = {}
        self.samples = 0
        self.durations: list[float] = []
        self._nodes = {name: Node(n.plan, n.access) for name, n in fleet.nodes.items()}
        self._stop = threading.Event()
        self._results: queue.Queue[Sample] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._machines: Provider | None = None
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        # Every sample's raw output, one JSON line each: an artifact, and
        # the input to replay a run offline.
        self.raw_log = raw_log
        self._raw = open(raw_log, "a", encoding="utf-8") if raw_log is not None else None  # noqa: SIM115

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self.tracker.violations)

    # -- life cycle -------------------------------------------------------

    def start(self) -> ClusterSampler:
        """Measure every guest's clock, take a first sample of every node (so
        the baseline is known before any fault), then sample in the background."""
        self._machines = self.fleet.new_provider()
        for node in list(self._nodes.values())[:1]:
            # Its connection opened now, where a hypervisor that cannot be reached is an
            # error; once sampling, a failed read is only an "unknown" state.
            self._machines.state(node.domain)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._nodes)), thread_name_prefix="sampler")
        running = self._running()
        list(self._pool.map(self._measure_clock, running))
        self.tracker.armed = time.monotonic()
        self.tracker.quiet = True  # where things are now is the baseline, not news
        for sample in self._pool.map(self._sample, running):
            self._feed(sample)
        self.tracker.quiet = False
        placed = ", ".join(f"{r} on {'+'.join(sorted(n))}" for r, n in sorted(self.tracker.placement().items()))
        self.recorder.record(EventKind.NOTE, "sampler", detail=f"armed; {placed or 'nothing running'}")
        self._thread = threading.Thread(target=self._loop, name="cluster-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and wait (at most ``timeout`` seconds) for the sampling thread;
        samples still in flight finish within their own command timeout."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.recorder.record(EventKind.NOTE, "sampler", detail=f"sampler thread still busy after {timeout}s")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for node in self._nodes.values():
            with contextlib.suppress(Exception):
                node.close()
        if self._machines is not None:
            self._machines.close()
            self._machines = None
        with self._lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None

    def __enter__(self) -> ClusterSampler:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the loop -----------------------------------------------------------

    def _loop(self) -> None:
        assert self._pool is not None
        inflight: dict[str, Future[Sample]] = {}
        next_check = time.monotonic()
        running: set[str] = set()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + self.interval
                    running = set(self._running())
                    for name in self._nodes:
                        if name not in running:
                            self._results.put(Sample(name, now, now, error=f"domain is {self._state(name)}"))
                for name in running:
                    busy = name in inflight and not inflight[name].done()
                    if not busy and now >= self._due.get(name, 0.0):
                        fut = self._pool.submit(self._sample, name)
                        fut.add_done_callback(lambda f: self._results.put(f.result()))
                        inflight[name] = fut
                with contextlib.suppress(queue.Empty):
                    self._feed(self._results.get(timeout=TICK))
                    while True:
                        self._feed(self._results.get_nowait())
        except BaseException as err:  # noqa: BLE001 - kept and reported by the fixture
            self.error = err
            self.recorder.record(EventKind.NOTE, "sampler", detail=f"sampler stopped by {type(err).__name__}: {err}")

    def _feed(self, sample: Sample) -> None:
        # Pace: one sample per interval at most, and the guest always gets
        # MIN_GAP of rest after one, however long it took (see the module doc).
        self._due[sample.node] = max(sample.before + self.interval, sample.after + self.min_gap)
        with self._lock:
            events = self.tracker.feed(sample)
            if sample.reached:
                self.samples += 1
                self.durations.append(sample.after - sample.before)
        self.recorder.extend(events)

    def _running(self) -> list[str]:
        return [name for name in self._nodes if self._state(name) in ("running", "blocked", "unknown")]

    def _state(self, name: str) -> str:
        if self._machines is None:
            return "unknown"
        try:
            return self._machines.state(self._nodes[name].domain)
        except DcnlabError:
            return "unknown"

    def _sample(self, name: str) -> Sample:
        node = self._nodes[name]
        before = time.monotonic()
        try:
            res = node.run(SAMPLE_SCRIPT, timeout=self.command_timeout, check=False)
        except Exception as err:  # noqa: BLE001 - any failure means "not reached this time"
            return Sample(name, before, time.monotonic(), error=(str(err).splitlines() or [type(err).__name__])[0])
        after = time.monotonic()
        self._log_raw({"node": name, "before": before, "after": after, "text": res.stdout})
        return parse_sample(name, before, after, res.stdout)

    def _log_raw(self, record: dict[str, object]) -> None:
        with self._lock:
            if self._raw is not None:
                self._raw.write(json.dumps(record) + "\n")
                self._raw.flush()

    def _measure_clock(self, name: str) -> None:
        node = self._nodes[name]
        for _ in range(CLOCK_READINGS):
            before = time.monotonic()
            try:
                out = node.run(["date", "+%s.%N"], timeout=self.command_timeout).stdout
                after = time.monotonic()
                clock = GuestClock.measure(name, self.recorder.anchor, before, float(out.strip()), after)
            except (DcnlabError, ValueError):
                continue
            self.recorder.note_guest_clock(clock)

    # -- views from elsewhere ---------------------------------------------

    def replay_with(self, extra: Sequence[View], max_age: float | None = None) -> list[Violation]:
        """Re-check the invariants over every view the sampler took plus
        ``extra`` (views a cut-off node recorded itself, collected after the
        heal). A view speaks for its partition for ``max_age`` seconds
        (default: the live limit, and at least 3 periods of a NodeWatch).
        Returns the violations found with them that the live check could not see."""
        with self._lock:
            views = list(self.tracker.views)
            live = {(v.key, round(v.t, 3)) for v in self.tracker.violations}
            fences = {node: list(times) for node, times in self.tracker.fenced.items()}
        age = max_age if max_age is not None else max(self.tracker.max_age, 3 * NodeWatch.DEFAULT_INTERVAL)
        found = replay([*views, *extra], self.spec, age, fences)
        return [v for v in found if (v.key, round(v.t, 3)) not in live]


# ------------------------------------------------------------- node watch

WATCH_DIR = "/run/dcnlab-watch"
WATCH_END = "@@dcnlab end"
WATCH_FILE = "@@dcnlab file"


def watch_script(interval: float, count: int, max_seconds: int, directory: str = WATCH_DIR) -> str:
    """A bounded guest-side loop writing one crm_mon view per file, between
    two readings of the guest clock; it stops after ``count`` views, after
    ``max_seconds``, or when ``DIR/stop`` exists."""
    crm = shlex.join(CRM_MON_ARGV)
    d = shlex.quote(directory)
    loop = (
        f"i=0; while [ $i -lt {count} ] && [ ! -e {d}/stop ]; do "
        f"f={d}/v.$(printf %06d $i); "
        f'{{ date +%s.%N; {crm} 2>/dev/null; echo "{WATCH_END}"; date +%s.%N; }} > $f.tmp; '
        f"mv $f.tmp $f; i=$((i+1)); sleep {interval}; done"
    )
    return (
        f"rm -rf {d} && mkdir -p {d} && "
        f"(nohup timeout {max_seconds} sh -c {shlex.quote(loop)} >/dev/null 2>&1 </dev/null &)"
    )


def watch_collect_script(directory: str = WATCH_DIR) -> str:
    d = shlex.quote(directory)
    return f'touch {d}/stop; for f in {d}/v.*; do [ -e "$f" ] && cat "$f" && echo "{WATCH_FILE}"; done; true'


def parse_watch(text: str, node: str, anchor: ClockAnchor, clock: GuestClock | None) -> list[View]:
    """The views a :class:`NodeWatch` recorded, on the monotonic axis (the
    guest clock converted through ``clock``; each view's time is the guest
    reading after its crm_mon). Views crm_mon could not produce (the stack
    was down) are skipped."""
    views: list[View] = []
    for block in text.split(WATCH_FILE):
        lines = block.strip().splitlines()
        if len(lines) < 3 or WATCH_END not in lines:
            continue
        end = lines.index(WATCH_END)
        try:
            after = float(lines[end + 1])
            state = parse_crm_mon("\n".join(lines[1:end]))
        except (IndexError, ValueError, DcnlabError):
            continue
        views.append(View(node, anchor.to_monotonic(after, clock), state))
    return views


class NodeWatch:
    """What a node saw while the harness could not ask it.

    A node cut off from every network (or frozen) cannot be sampled, yet its
    own view is the other half of a split brain. Armed on it before the
    fault, a bounded loop on the guest records a crm_mon view every
    ``interval`` seconds (5 by default) into ``/run``; :meth:`collect`, after
    the heal, stops it and returns the views on the monotonic axis. Each view
    costs the guest a crm_mon (about a second of emulated CPU under TCG, on
    top of the sampler's), so arm it only on the nodes a fault will cut off.
    """

    DEFAULT_INTERVAL = 5.0

    def __init__(
        self, node: Node, recorder: Recorder, *, interval: float = DEFAULT_INTERVAL, max_seconds: int = 900
    ) -> None:
        self.node = node
        self.recorder = recorder
        self.interval = interval
        self.max_seconds = max_seconds

    def start(self, timeout: float = 60.0) -> NodeWatch:
        if self.node.name not in self.recorder.guest_clocks:
            raise DcnlabError(
                f"no clock reading of {self.node.name}: start the ClusterSampler (it measures every guest's clock) "
                "before arming a NodeWatch"
            )
        count = int(self.max_seconds / self.interval) + 1
        self.node.run(watch_script(self.interval, count, self.max_seconds), timeout=timeout)
        return self

    def collect(self, timeout: float = 120.0) -> list[View]:
        res = self.node.run(watch_collect_script(), timeout=timeout)
        return parse_watch(
            res.stdout, self.node.name, self.recorder.anchor, self.recorder.guest_clocks.get(self.node.name)
        )
