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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dcnlab.certify.verdict import Finding
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.crm import ClusterState, FenceEvent
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import FaultError
from dcnlab.core.wait import wait_until
from dcnlab.faults.hosts import HostFault, HostLoss, HostPartition
from dcnlab.fleet.hosts import HostPlan
from dcnlab.fleet.node import Node
from dcnlab.observe.journal import FENCE_DEVICE_RUN
from dcnlab.observe.timeline import Event, EventKind

DEVICE_RUN = re.compile(FENCE_DEVICE_RUN)


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


def _since(fence: FenceEvent, since: datetime) -> bool:
    """Whether ``fence`` is one of the fault's: completed at ``since`` or later, or pending."""
    return fence.completed is None or fence.completed >= since


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
            if f.target not in failed_fence or not _since(f, since):
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


# ------------------------------------------------------------------ cases

# The faults of a host whose outcome is declared above; packet loss between
# hosts has no outcome that holds for any spec (it depends on the token and
# knet's retransmits), so it is a fault to inject, not a case to certify.
HOST_FAULTS: dict[str, Callable[[str], HostFault]] = {"host-partition": HostPartition, "host-loss": HostLoss}
# How long the cluster has, once every fence of the host's nodes has failed,
# to start something where it must not (before the accelerator's scale): two
# of Pacemaker's fence retries here (15 s apart, docs/multihost.md).
QUIET_SECONDS = 30.0
# How long the first failed fence of every node may take (before the scale):
# the token and consensus timeouts, a fence attempt's own timeout and margin.
FENCE_FAILED_SECONDS = 300.0


@dataclass(frozen=True)
class HostFaultCase:
    """One case of the host-fault suite: ``fault`` (a key of HOST_FAULTS) on ``host``."""

    fault: str
    host: str
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.host}"

    def make(self) -> HostFault:
        return HOST_FAULTS[self.fault](self.host)


def host_fault_cases(hosts: Sequence[HostPlan]) -> list[HostFaultCase]:
    """Every declared host fault on every host but the first (the harness
    reaches the guests through the first host's namespace: it can be neither
    lost nor cut off, docs/multihost.md). The smoke case is the first
    partition: its heal is a link up, where a loss's boots a host."""
    cases = [HostFaultCase(fault, host.name) for host in hosts[1:] for fault in HOST_FAULTS]
    return [HostFaultCase(c.fault, c.host, smoke=i == 0) for i, c in enumerate(cases)]


def placed_units(spec: ClusterSpec) -> list[str]:
    """What Pacemaker places as one: each group, and each resource in no group."""
    grouped = {m for g in spec.groups for m in g.members}
    return [g.id for g in spec.groups] + [r.id for r in spec.resources if r.id not in grouped]


# ------------------------------------------------------------------ running


def guest_now(node: Node) -> datetime:
    """``node``'s clock now, as crm_mon's fence history is stamped."""
    return datetime.fromtimestamp(float(node.run(["date", "+%s.%N"]).stdout), tz=UTC)


@dataclass
class HostFaultOutcome:
    """What a host fault played out to, judged against its declared outcome."""

    expectation: HostFaultExpectation
    watcher: str
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    seconds_to_failed_fences: float | None = None
    quiet_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def message(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'}: {self.expectation.describe()}"
        return "\n".join([head, *self.problems])

    def to_dict(self) -> dict[str, Any]:
        exp = self.expectation
        return {
            "passed": self.passed,
            "host": exp.host,
            "declared": exp.describe(),
            "unreachable": list(exp.unreachable),
            "blocked": list(exp.blocked),
            "unaffected": {r: list(n) for r, n in exp.unaffected.items()},
            "watched_from": self.watcher,
            "problems": self.problems,
            "samples": self.samples,
            "seconds_to_failed_fences": self.seconds_to_failed_fences,
            "quiet_seconds": self.quiet_seconds,
        }


def play_host_fault(
    cluster: Cluster,
    case: HostFaultCase,
    inject: Callable[[HostFault], object],
    progress: Callable[[str], None] = lambda _: None,
) -> HostFaultOutcome:
    """Inject ``case`` through ``inject`` (the test's fault injector, which
    heals it), then watch the cluster from a node on another host: until
    every node of the faulted host has had a fence fail, then for the quiet
    window, in which a wrong start would show. Judges what was seen against
    the declared outcome; the heal is the caller's."""
    fleet = cluster.fleet
    watchers = [n for n in fleet.nodes.values() if fleet.host_of(n.name) != case.host]
    if not watchers:
        raise FaultError(
            f"{case.id}: every node runs on host {case.host}, so none can watch the cluster while it is "
            "unreachable; give the fleet more nodes (--dcn-nodes) so the others get one"
        )
    watcher = watchers[0]
    before = cluster.state(watcher)
    exp = expect_host_fault(fleet.record.placement, placed_units(cluster.spec), before, case.host)
    if not exp.unreachable:
        raise FaultError(
            f"{case.id}: no node of the cluster runs on host {case.host}, so the fault would hit nothing of it; "
            "give the fleet more nodes (--dcn-nodes) or fewer hosts"
        )
    outcome = HostFaultOutcome(exp, watcher.name)
    since = guest_now(watcher)
    samples: list[ClusterState] = []
    scale = fleet.accel.scale

    def fence_failed() -> bool:
        state = cluster.state(watcher)
        samples.append(state)
        failed = {f.target for f in state.fencing if f.status == "failed" and _since(f, since)}
        return failed >= set(exp.unreachable)

    progress(f"{case.id}: {exp.describe()}")
    t0 = time.monotonic()
    inject(case.make())
    wait_until(
        fence_failed,
        timeout=FENCE_FAILED_SECONDS * scale,
        what=f"a failed fence of {', '.join(exp.unreachable)} seen from {watcher.name}",
        interval=5.0,
    )
    outcome.seconds_to_failed_fences = round(time.monotonic() - t0, 1)
    quiet_until = time.monotonic() + QUIET_SECONDS * scale
    while time.monotonic() < quiet_until:
        samples.append(cluster.state(watcher))
        time.sleep(5.0)  # between crm_mon samples, in a window of fixed length
    outcome.quiet_seconds = round(QUIET_SECONDS * scale, 1)
    outcome.samples = len(samples)
    outcome.problems = judge_host_fault(exp, samples, since)
    return outcome
