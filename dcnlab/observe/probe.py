"""Client probes: what a client of the cluster's services sees during a fault.

:class:`ClientProbe` starts :mod:`dcnlab.observe.probe_program` (a standard-library
program) inside the fleet's network namespace, where the guests' addresses
live, so no socket to a guest address is ever opened from the host's own
namespace. The program makes one request per endpoint every ``interval``
seconds (100 ms by default, 20 ms at least) and writes each attempt, with its
``time.monotonic()`` start, to a file; it is bounded in duration and count
and stops by itself, and :meth:`ClientProbe.stop` ends it early.

CLOCK_MONOTONIC is one clock for the whole machine (every process, every
network namespace), so the attempts' times are on the harness's own axis;
:meth:`ClientProbe.start` checks that against the program's first line.

The analysis is pure: :func:`parse_output` reads the program's lines and
:func:`analyse` turns one endpoint's attempts into availability windows and
outages, which :func:`client_events` puts on the timeline.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dcnlab.core.errors import ConfigError, DcnlabError
from dcnlab.core.proc import netns_prefix
from dcnlab.core.wait import wait_until
from dcnlab.observe import probe_program as probe_client
from dcnlab.observe.timeline import Event, EventKind, Recorder

PROGRAM = Path(probe_client.__file__)
# The program's monotonic clock must match ours to within this (it is the
# same clock; a gap means a time namespace or a broken start).
CLOCK_TOLERANCE = 5.0


class ProbeError(DcnlabError):
    """The probe program could not start, or its output cannot be read."""


@dataclass(frozen=True)
class Endpoint:
    """A service a client uses: ``name`` (the workload it belongs to) and a
    URL, ``http://HOST:PORT/PATH`` or ``tcp://HOST:PORT``. An HTTP answer is
    healthy when its status is ``status`` and, if set, its body (first 64
    KiB) contains ``contains``."""

    name: str
    url: str
    status: int = 200
    contains: str | None = None


# ------------------------------------------------------------- the data


@dataclass(frozen=True)
class Attempt:
    target: str
    seq: int
    t: float  # monotonic start
    dur: float
    ok: bool
    node: str | None  # who answered: the node whose MAC the answer came from
    status: int | None
    err: str | None
    mac: str | None = None  # the link-layer address the address resolved to


@dataclass(frozen=True)
class ProbeRun:
    """Everything one run of the program wrote."""

    started: float  # monotonic
    started_wall: float
    targets: dict[str, str]
    interval: float
    timeout: float
    attempts: tuple[Attempt, ...]
    end_reason: str | None  # None: the program did not finish its output (killed)
    ended: float | None

    def of(self, target: str) -> list[Attempt]:
        return sorted((a for a in self.attempts if a.target == target), key=lambda a: a.t)


def back_after_failure(attempts: Iterable[Attempt], since: float) -> str | None:
    """The node answering after the last failed attempt since ``since``:
    None while attempts still fail, or when none has failed (nothing to come
    back from). Sees a restart in place that no cluster sample caught."""
    after = [a for a in attempts if a.t > since]
    last_failure = max((i for i, a in enumerate(after) if not a.ok), default=None)
    if last_failure is None:
        return None
    return next((a.node for a in after[last_failure + 1 :] if a.ok), None)


def parse_output(text: str, macs: Mapping[str, str] | None = None) -> ProbeRun:
    """Parse the program's JSON lines. A last line cut short (the program
    was killed mid-write) is ignored; anything else unreadable is an error.

    ``macs`` maps a link-layer address (lower case) to the node that owns
    it: an attempt's node is the owner of the MAC its address resolved to
    when it was answered, so who served is known for any service, without
    the service's help."""
    owners = {k.lower(): v for k, v in (macs or {}).items()}
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    attempts: list[Attempt] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ProbeError(f"probe output line {number} is not JSON: {line[:120]!r}") from err
        kind = record.get("type")
        if kind == "start":
            start = record
        elif kind == "end":
            end = record
        elif kind == "attempt":
            mac = record.get("mac")
            # Recordings made before the probe read MACs carry the node the
            # demo's page named instead.
            node = owners.get(mac.lower()) if mac else record.get("node")
            attempts.append(
                Attempt(
                    record["target"],
                    int(record["seq"]),
                    float(record["t"]),
                    float(record["dur"]),
                    bool(record["ok"]),
                    node,
                    record.get("status"),
                    record.get("err"),
                    mac,
                )
            )
    if start is None:
        raise ProbeError("probe output has no start line: the program did not start")
    return ProbeRun(
        started=float(start["mono"]),
        started_wall=float(start["wall"]),
        targets=dict(start["targets"]),
        interval=float(start["interval"]),
        timeout=float(start["timeout"]),
        attempts=tuple(sorted(attempts, key=lambda a: a.t)),
        end_reason=end["reason"] if end else None,
        ended=float(end["mono"]) if end else None,
    )


@dataclass(frozen=True)
class Outage:
    """Consecutive failed attempts of one endpoint.

    ``start`` is the start of the first failed attempt and ``end`` that of
    the first successful one after it (None: still failing when the probe
    stopped). The service broke after ``last_ok_before`` and was back by
    ``end``: those bound the true outage from above, the failed attempts
    (``start`` .. ``last_failed``) from below."""

    target: str
    start: float
    end: float | None
    last_ok_before: float | None
    last_failed: float
    failures: int
    errors: tuple[tuple[str, int], ...]  # (error, count), most frequent first
    node_before: str | None
    node_after: str | None

    @property
    def duration(self) -> float:
        return (self.end if self.end is not None else self.last_failed) - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "start": self.start,
            "end": self.end,
            "duration": round(self.duration, 3),
            "last_ok_before": self.last_ok_before,
            "last_failed": self.last_failed,
            "failures": self.failures,
            "errors": dict(self.errors),
            "node_before": self.node_before,
            "node_after": self.node_after,
        }


@dataclass(frozen=True)
class Window:
    """Consecutive successful attempts: the endpoint was available from
    ``start`` to ``end`` (first and last successful attempt)."""

    target: str
    start: float
    end: float
    attempts: int
    nodes: tuple[str, ...]  # who answered, in order of first answer


@dataclass(frozen=True)
class Availability:
    target: str
    attempts: int
    ok: int
    first: float | None
    last: float | None
    windows: tuple[Window, ...]
    outages: tuple[Outage, ...]
    node_changes: tuple[tuple[float, str | None, str], ...] = field(default=())  # (t, from, to)

    @property
    def longest_outage(self) -> Outage | None:
        return max(self.outages, key=lambda o: o.duration, default=None)

    def outages_between(self, start: float, end: float = math.inf) -> list[Outage]:
        return [o for o in self.outages if (o.end if o.end is not None else o.last_failed) > start and o.start < end]

    def to_dict(self) -> dict[str, Any]:
        longest = self.longest_outage
        return {
            "target": self.target,
            "attempts": self.attempts,
            "ok": self.ok,
            "windows": len(self.windows),
            "outages": [o.to_dict() for o in self.outages],
            "longest_outage": round(longest.duration, 3) if longest else 0.0,
            "node_changes": [list(c) for c in self.node_changes],
        }


def analyse(attempts: Iterable[Attempt], target: str | None = None, *, min_failures: int = 1) -> Availability:
    """Windows and outages of one endpoint's attempts (ordered by start time;
    attempts run concurrently and may finish out of order). A run of fewer
    than ``min_failures`` failed attempts is not an outage (and does not
    split a window)."""
    ordered = sorted((a for a in attempts if target is None or a.target == target), key=lambda a: a.t)
    name = target or (ordered[0].target if ordered else "")
    runs: list[tuple[bool, list[Attempt]]] = []
    for a in ordered:
        if runs and runs[-1][0] == a.ok:
            runs[-1][1].append(a)
        else:
            runs.append((a.ok, [a]))
    # Absorb failure runs that are too short into the surrounding windows.
    merged: list[tuple[bool, list[Attempt]]] = []
    for ok, run in runs:
        if not ok and len(run) < min_failures:
            ok = True
        if merged and merged[-1][0] == ok:
            merged[-1][1].extend(run)
        else:
            merged.append((ok, list(run)))
    windows: list[Window] = []
    outages: list[Outage] = []
    for i, (ok, run) in enumerate(merged):
        if ok:
            nodes: list[str] = []
            for a in run:
                if a.ok and a.node and a.node not in nodes:
                    nodes.append(a.node)
            windows.append(Window(name, run[0].t, run[-1].t, len(run), tuple(nodes)))
            continue
        before = merged[i - 1][1] if i > 0 else []
        after = merged[i + 1][1] if i + 1 < len(merged) else []
        last_ok = next((a for a in reversed(before) if a.ok), None)
        first_ok = next((a for a in after if a.ok), None)
        errors = Counter(a.err or "error" for a in run)
        outages.append(
            Outage(
                target=name,
                start=run[0].t,
                end=first_ok.t if first_ok else None,
                last_ok_before=last_ok.t if last_ok else None,
                last_failed=run[-1].t,
                failures=len(run),
                errors=tuple(errors.most_common()),
                node_before=last_ok.node if last_ok else None,
                node_after=first_ok.node if first_ok else None,
            )
        )
    changes: list[tuple[float, str | None, str]] = []
    current: str | None = None
    for a in ordered:
        if a.ok and a.node and a.node != current:
            if current is not None:
                changes.append((a.t, current, a.node))
            current = a.node
    return Availability(
        target=name,
        attempts=len(ordered),
        ok=sum(1 for a in ordered if a.ok),
        first=ordered[0].t if ordered else None,
        last=ordered[-1].t if ordered else None,
        windows=tuple(windows),
        outages=tuple(outages),
        node_changes=tuple(changes),
    )


def client_events(av: Availability) -> list[Event]:
    """Timeline events of one endpoint: each outage's first failure and
    recovery, and every change of the node that answers."""
    source = f"probe:{av.target}"
    events: list[Event] = []
    for o in av.outages:
        errors = ", ".join(f"{err} x{n}" for err, n in o.errors)
        events.append(
            Event(
                o.start,
                EventKind.CLIENT_FAILURE_FIRST,
                source,
                node=o.node_before,
                resource=av.target,
                detail=f"{o.failures} failed attempts ({errors})",
                earliest=o.last_ok_before,
            )
        )
        if o.end is not None:
            events.append(
                Event(
                    o.end,
                    EventKind.CLIENT_RECOVERED,
                    source,
                    node=o.node_after,
                    resource=av.target,
                    detail=f"after {o.duration:.2f}s",
                    earliest=o.last_failed,
                )
            )
    for t, before, after in av.node_changes:
        events.append(
            Event(t, EventKind.CLIENT_NODE_CHANGED, source, node=after, resource=av.target, detail=f"was {before}")
        )
    return events


# ------------------------------------------------------------ the program


@dataclass(frozen=True)
class ProbeSettings:
    interval: float = 0.1
    timeout: float = 1.0  # per attempt
    max_duration: float = 900.0  # the program stops by itself after this

    def __post_init__(self) -> None:
        if self.interval < probe_client.MIN_INTERVAL:
            raise ConfigError(f"probe interval {self.interval}s is below {probe_client.MIN_INTERVAL}s")
        if self.timeout <= 0 or self.max_duration <= 0:
            raise ConfigError("probe timeout and max_duration must be positive")

    @property
    def max_count(self) -> int:
        return math.ceil(self.max_duration / self.interval) + 1


def probe_argv(
    netns: str | None, endpoints: Sequence[Endpoint], settings: ProbeSettings, python: str = sys.executable
) -> list[str]:
    """The command line that runs the program inside ``netns``."""
    if not endpoints:
        raise ConfigError("a client probe needs at least one endpoint")
    argv = [*netns_prefix(netns), python, "-I", str(PROGRAM)]
    for e in endpoints:
        argv += ["--target", f"{e.name}={e.url}"]
        if e.url.startswith("http") and e.status != 200:
            argv += ["--status", f"{e.name}={e.status}"]
        if e.contains is not None:
            argv += ["--contains", f"{e.name}={e.contains}"]
    argv += [
        "--interval", str(settings.interval),
        "--timeout", str(settings.timeout),
        "--max-duration", str(settings.max_duration),
        "--max-count", str(settings.max_count),
    ]  # fmt: skip
    return argv


class ClientProbe:
    """The probe program for a set of endpoints, from :meth:`start` to
    :meth:`stop`. Attempts go to ``out`` (a file kept as an artifact)."""

    def __init__(
        self,
        netns: str | None,
        endpoints: Sequence[Endpoint],
        out: Path,
        settings: ProbeSettings | None = None,
        macs: Mapping[str, str] | None = None,
    ) -> None:
        if netns is None:
            # Guests' addresses must never be contacted from the host's own namespace.
            raise ConfigError("client probes run inside the fleet's network namespace; this fleet names none")
        self.netns = netns
        self.endpoints = list(endpoints)
        self.out = out
        self.settings = settings or ProbeSettings()
        self.macs = dict(macs or {})  # MAC -> node, to name who answered
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self.run: ProbeRun | None = None
        self._recorded: dict[str, Availability] | None = None

    def start(self) -> ClientProbe:
        if self._proc is not None or self.run is not None:
            raise ProbeError("probe already started")
        if not self.endpoints:
            # No workload declares a client: nothing to probe, and an empty
            # run says so (availability {}, no client events).
            now = time.monotonic()
            s = self.settings
            self.run = ProbeRun(now, time.time(), {}, s.interval, s.timeout, (), "no-endpoints", now)
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        argv = probe_argv(self.netns, self.endpoints, self.settings)
        self._stdout = open(self.out, "wb")  # noqa: SIM115 - handed to the child, closed in stop()
        err = open(self.out.with_suffix(".stderr"), "wb")  # noqa: SIM115
        try:
            # stdin stays a pipe we hold: the program stops when it closes.
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self._stdout, stderr=err)
        finally:
            err.close()
        spawned = time.monotonic()

        def started() -> dict[str, Any] | None:
            if self._proc is not None and self._proc.poll() is not None:
                raise ProbeError(f"the probe program exited at once: {self.stderr_tail()}")
            first = self.out.read_text(errors="replace").split("\n", 1)[0]
            return json.loads(first) if first.endswith("}") else None

        try:
            header = wait_until(
                started,
                timeout=15.0,
                what=f"the client probe in {self.netns} to start",
                interval=0.05,
                give_up_on=(ProbeError,),
            )
        except DcnlabError:
            self._kill()
            raise
        if abs(float(header["mono"]) - spawned) > CLOCK_TOLERANCE:
            self._kill()
            raise ProbeError(
                f"the probe's monotonic clock reads {header['mono']:.1f}, ours {spawned:.1f}: not one clock "
                "(is the namespace in its own time namespace?); probe timings would be meaningless"
            )
        return self

    def stop(self, timeout: float | None = None) -> ProbeRun:
        """End the program (it finishes its in-flight attempts), read and
        return its output. Idempotent."""
        if self.run is not None:
            return self.run
        proc = self._proc
        if proc is None:
            raise ProbeError("probe was never started")
        grace = timeout if timeout is not None else self.settings.timeout + 5.0
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._kill()
        if self._stdout is not None:
            self._stdout.close()
        self.run = parse_output(self.out.read_text(errors="replace"), self.macs)
        return self.run

    def snapshot(self) -> ProbeRun:
        """What the program has written so far, without stopping it."""
        if self.run is not None:
            return self.run
        return parse_output(self.out.read_text(errors="replace"), self.macs)

    def last_ok(self, endpoint: str) -> Attempt | None:
        """The latest successful attempt at ``endpoint`` so far."""
        return next((a for a in reversed(self.snapshot().of(endpoint)) if a.ok), None)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stderr_tail(self) -> str:
        path = self.out.with_suffix(".stderr")
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return "\n".join(text.splitlines()[-10:]) or "(no stderr)"

    def availability(self) -> dict[str, Availability]:
        run = self.stop()
        return {e.name: analyse(run.of(e.name), e.name) for e in self.endpoints}

    def record(self, recorder: Recorder) -> dict[str, Availability]:
        """Stop, analyse every endpoint and put its client events on the
        timeline (once: later calls return the same result)."""
        if self._recorded is None:
            self._recorded = self.availability()
            for av in self._recorded.values():
                recorder.extend(client_events(av))
        return self._recorded

    def __enter__(self) -> ClientProbe:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
