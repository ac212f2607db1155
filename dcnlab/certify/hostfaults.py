"""What a cluster over several hosts must do when a host is lost or cut off
(:mod:`dcnlab.faults.hosts`), and the judge of what it did.

With one fence device per host, each reaching only its own host's listener
(docs/multihost.md), nothing can fence the nodes of an unreachable host. The
declared outcome, for any spec:

- every fence of those nodes fails, and none is reported done: a success
  would be a fence that never happened, the split brain fencing exists to
  prevent;
- the spec's resources that ran on those nodes are not started on any other
  node while the host is unreachable (blocked, not recovered);
- the spec's resources on the other hosts stay started where they were.

A spec whose site needs the lost host's resources back without the host
needs a second fencing level (SBD with a watchdog), which this topology lacks;
the verdict then says so rather than passing a recovery that was not safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dcnlab.certify.verdict import Finding
from dcnlab.cluster.crm import ClusterState
from dcnlab.observe.timeline import Event, EventKind

# pacemaker-fenced's line for a device's run, as dcnlab.observe.journal records it (a note).
DEVICE_RUN = re.compile(r"targeting (?P<node>\S+) using (?P<device>\S+) returned (?P<rc>-?\d+)")


@dataclass(frozen=True)
class HostFaultExpectation:
    host: str
    unreachable: tuple[str, ...]  # the host's nodes: no fence of them can succeed
    blocked: tuple[str, ...]  # resources that ran there: not started elsewhere meanwhile
    unaffected: dict[str, tuple[str, ...]]  # resources elsewhere -> where they ran

    def describe(self) -> str:
        blocked = ", ".join(self.blocked) or "none"
        kept = ", ".join(f"{r} on {'/'.join(n)}" for r, n in self.unaffected.items()) or "none"
        return (
            f"host {self.host} unreachable: every fence of {', '.join(self.unreachable)} fails, none succeeds; "
            f"blocked (not started elsewhere): {blocked}; unaffected: {kept}"
        )


def expect_host_fault(
    placement: Mapping[str, str], resources: Sequence[str], before: ClusterState, host: str
) -> HostFaultExpectation:
    """The declared outcome of losing (or cutting off) ``host``, from where the
    nodes are placed and where each of the spec's ``resources`` ran ``before``."""
    unreachable = tuple(n for n, h in placement.items() if h == host)
    blocked, unaffected = [], {}
    for rsc in resources:
        where = tuple(before.where(rsc))
        if any(n in unreachable for n in where):
            blocked.append(rsc)
        else:
            unaffected[rsc] = where
    return HostFaultExpectation(host, unreachable, tuple(blocked), unaffected)


def judge_host_fault(exp: HostFaultExpectation, samples: Sequence[ClusterState], since: datetime) -> list[str]:
    """What went against ``exp`` in the cluster states seen while the host was
    unreachable (read from nodes of other hosts); fences count from ``since``
    (the injection, on the guests' clock as crm_mon prints it). Empty: as declared."""
    problems: list[str] = []
    failed_fence = {n: False for n in exp.unreachable}

    def once(text: str) -> None:
        if text not in problems:
            problems.append(text)

    for state in samples:
        for f in state.fencing:
            if f.target not in failed_fence or (f.completed is not None and f.completed < since):
                continue
            if f.status == "success":
                once(f"a fence of {f.target} was reported done ({f.action} by {f.delegate or '?'}) "
                     f"while no device could reach host {exp.host}: a fence that never happened")  # fmt: skip
            elif f.status == "failed":
                failed_fence[f.target] = True
        for rsc in exp.blocked:
            elsewhere = [n for n in state.where(rsc) if n not in exp.unreachable]
            if elsewhere and state.started(rsc):
                once(f"{rsc} was started on {', '.join(elsewhere)} while its node was not fenced")
        for rsc, where in exp.unaffected.items():
            if tuple(state.where(rsc)) != where or not state.started(rsc):
                now = "/".join(state.where(rsc)) or "nowhere"
                once(f"{rsc} left {'/'.join(where)} (now {now}) though its host was not the one lost")
    for node, seen in failed_fence.items():
        if not seen:
            once(f"no failed fence of {node} was seen: Pacemaker did not try to fence it")
    return problems


def device_finding(events: Sequence[Event], target: str, host: str, device: str, since: float) -> Finding:
    """A failover verdict's check, on a fleet over several hosts, that the fence
    of ``target`` went through ``device``, the one of ``host``, the host that
    runs it, and through no other: read from the fencer's journal lines since
    ``since`` (a listener that does not run a domain reports "off" with
    success, so another host's device succeeding would be no fence at all)."""
    runs = []
    for e in events:
        if e.kind is not EventKind.NOTE or not e.source.startswith("journal:") or e.t < since:
            continue
        m = DEVICE_RUN.search(e.detail)
        if m is not None and m.group("node") == target:
            runs.append((m.group("device"), int(m.group("rc"))))
    done = sorted({d for d, rc in runs if rc == 0})
    failed = sorted({d for d, rc in runs if rc != 0})
    observed = f"through {', '.join(done) or 'no device'}" + (f" (failed: {', '.join(failed)})" if failed else "")
    if not runs:
        observed = "no fence device's run in the journals read"
    return Finding(
        "fence device",
        f"{target} fenced through {device}, the device of its host {host}, and no other",
        observed,
        done == [device],
    )
