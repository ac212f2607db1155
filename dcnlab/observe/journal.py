"""Timeline events from the nodes' own logs, to the microsecond.

Sampling tells when a change was *seen*, to within a sample; the cluster's
journal says when it *happened*: corosync logs the new membership, the
controller logs the fence it requests and each operation's result, the
fencer logs the fence's outcome. Read after the fact (``journalctl -o
short-unix`` on every node that is up) and put on the monotonic axis through
each guest's measured clock offset, these lines make the order of a failover
exact where samples can only bound it.

The patterns are data (:data:`PATTERNS`), written for Pacemaker 2.1 and
Corosync 3.1 (Debian bookworm, RHEL 9) and checked against their journals;
each says why it is there. Lines that match nothing are ignored: the journal
is evidence to add to the timeline, never a condition to wait on.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcnlab.core.errors import DcnlabError
from dcnlab.core.parallel import on_each
from dcnlab.observe.timeline import ClockAnchor, Event, EventKind, GuestClock, Recorder

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet
    from dcnlab.fleet.node import Node

UNITS = ("corosync", "pacemaker")
# journalctl -o short-unix: "1764064992.123456 dcn2 pacemaker-controld[1187]: message"
LEVEL_RE = re.compile(r"^(?:trace|debug|info|notice|warning|error|crit|critical|alert|emerg):\s+")
LINE_RE = re.compile(r"^(?P<ts>\d+\.\d+) (?P<host>\S+) (?P<ident>[^\[:]+)(?:\[\d+\])?: (?P<msg>.*)$")


@dataclass(frozen=True)
class Pattern:
    kind: EventKind
    regex: re.Pattern[str]
    ident: str  # the daemon whose line counts (others repeat the news)
    why: str

    def match(self, ident: str, message: str) -> re.Match[str] | None:
        return self.regex.search(message) if ident == self.ident else None


def _p(kind: EventKind, ident: str, regex: str, why: str) -> Pattern:
    return Pattern(kind, re.compile(regex), ident, why)


# pacemaker-fenced's line for one device's run of a fence (recorded as a note,
# its detail the whole line): dcnlab.certify.hostfaults reads device and exit code from it.
FENCE_DEVICE_RUN = (
    r"Operation '(?P<action>[\w-]+)' \[\d+\] targeting (?P<node>\S+) using (?P<device>\S+) returned (?P<rc>-?\d+)"
)

PATTERNS: tuple[Pattern, ...] = (
    _p(
        EventKind.MEMBERSHIP_CHANGED,
        "corosync",
        r"\[QUORUM\] Members\[\d+\]:(?P<members>[\d ]*?)\s*$",
        "votequorum's member list after every new membership: the cluster's own detection",
    ),
    _p(
        EventKind.NODE_LOST,
        "pacemaker-controld",
        r"Node (?P<node>\S+) state is now lost",
        "the controller's peer cache drops the node (every daemon logs it; the controller acts on it)",
    ),
    _p(
        EventKind.NODE_JOINED,
        "pacemaker-controld",
        r"Node (?P<node>\S+) state is now member",
        "the controller sees the node back",
    ),
    _p(
        EventKind.FENCE_STARTED,
        "pacemaker-controld",
        r"Requesting fencing \((?P<action>[\w-]+)\) targeting node (?P<node>\S+)",
        "the DC asks the fencer (te_fence_node)",
    ),
    _p(
        EventKind.FENCE_CONFIRMED,
        "pacemaker-controld",
        r"Peer (?P<node>\S+) was terminated \((?P<action>[\w-]+)\) by (?P<by>\S+) on behalf of \S+: OK",
        "every controller is told of the fence's success (Pacemaker's own CTS waits for this line)",
    ),
    _p(
        EventKind.FENCE_CONFIRMED,
        "pacemaker-fenced",
        r"Operation '(?P<action>[\w-]+)' targeting (?P<node>\S+) (?:by|on) (?P<by>\S+) for \S+: OK",
        "the fencer's final result, logged by every fencer once the operation is done",
    ),
    _p(
        EventKind.FENCE_FAILED,
        "pacemaker-fenced",
        r"Operation '(?P<action>[\w-]+)' targeting (?P<node>\S+) (?:by|on) (?P<by>\S+) for \S+: (?!OK)(?P<why>.+)",
        "any other final result",
    ),
    _p(
        EventKind.NOTE,
        "pacemaker-fenced",
        FENCE_DEVICE_RUN,
        "which fence device carried a fence out, and its agent's exit code: the fence history does not say "
        "(a fleet over several hosts must fence each node through its own host's device)",
    ),
    _p(
        EventKind.RESOURCE_STARTED,
        "pacemaker-controld",
        r"Result of start operation for (?P<resource>\S+) on (?P<node>\S+): (?:ok|OK)\b",
        "the executor's result as the node running it reports it",
    ),
    _p(
        EventKind.RESOURCE_FOUND,
        "pacemaker-controld",
        r"Result of probe operation for (?P<resource>\S+) on (?P<node>\S+): (?:ok|OK)\b",
        "a probe found the resource running (a probe that finds nothing says 'not running')",
    ),
    _p(
        EventKind.RESOURCE_STOPPED,
        "pacemaker-controld",
        r"Result of stop operation for (?P<resource>\S+) on (?P<node>\S+): (?:ok|OK)\b",
        "a stop that succeeded",
    ),
)


def journal_argv_text(since_wall: float) -> str:
    units = " ".join(f"-u {shlex.quote(u)}" for u in UNITS)
    # A minute early: guest clocks are seconds off the host's.
    return f"journalctl {units} -o short-unix --no-pager --since=@{int(since_wall) - 60}"


def parse_journal(
    text: str, node: str, anchor: ClockAnchor, clock: GuestClock | None, *, since: float | None = None
) -> list[Event]:
    """Events from ``journalctl -o short-unix`` output of ``node``, on the
    monotonic axis. ``since`` (monotonic) drops older lines. Each event's
    bounds are the clock offset's uncertainty (none known: the offset is
    taken as zero and said so)."""
    err = clock.error if clock is not None else 0.0
    caveat = "" if clock is not None else " (guest clock offset unknown)"
    events: list[Event] = []
    for line in text.splitlines():
        m = LINE_RE.match(line.strip())
        if m is None:
            continue
        ident, message = m.group("ident"), m.group("msg")
        for pattern in PATTERNS:
            found = pattern.match(ident, message)
            if found is None:
                continue
            t = anchor.to_monotonic(float(m.group("ts")), clock)
            if since is not None and t < since:
                break
            groups = found.groupdict()
            subject = groups.get("node") or node
            # libqb prefixes the level ("notice: "); Pacemaker appends " | key=value" details.
            detail = LEVEL_RE.sub("", message.split(" | ")[0].strip()) + caveat
            events.append(
                Event(t + err, pattern.kind, f"journal:{node}", node=subject, resource=groups.get("resource"),
                      detail=detail, earliest=t - err)
            )  # fmt: skip
            break
    return events


def journal_events(node: Node, recorder: Recorder, since: float, *, timeout: float = 60.0) -> tuple[list[Event], str]:
    """The cluster events in ``node``'s journal since monotonic ``since``,
    and the raw text, without adding them to ``recorder`` (whose clocks put
    them on the timeline). Raises CommandError when the node cannot be read."""
    since_wall = recorder.anchor.wall + (since - recorder.anchor.monotonic)
    res = node.run(journal_argv_text(since_wall), timeout=timeout, check=False)
    clock = recorder.guest_clocks.get(node.name)
    return parse_journal(res.stdout, node.name, recorder.anchor, clock, since=since), res.stdout


def record_journals(
    fleet: Fleet, recorder: Recorder, since: float, *, timeout: float = 60.0, save_dir: Path | None = None
) -> list[str]:
    """Read the cluster journal of every running node since monotonic
    ``since`` and add its events to ``recorder`` (the raw text goes to
    ``save_dir/NODE.journal-unix.txt`` when given). Returns the nodes that
    could not be read (off, unreachable)."""
    # One SSH call per node, all at once: each guest has its own emulated vCPU.
    running = [node for name, node in fleet.nodes.items() if fleet.domain_state(name) == "running"]

    def read(node: Node) -> tuple[list[Event], str] | None:
        try:
            return journal_events(node, recorder, since, timeout=timeout)
        except DcnlabError:
            return None

    texts = on_each(running, read, label=lambda node: node.name, what="reading the journals")
    read_back = dict(zip(running, texts, strict=True))
    missing: list[str] = []
    for name, node in fleet.nodes.items():
        got = read_back.get(node)
        if got is None:
            missing.append(name)
            continue
        events, text = got
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            (save_dir / f"{name}.journal-unix.txt").write_text(text)
        recorder.extend(events)
    return missing
