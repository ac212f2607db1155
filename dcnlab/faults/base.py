"""What every fault shares: its life cycle, its context, and the heal that brings a
cluster back to health. The families are in :mod:`~dcnlab.faults.power`,
:mod:`~dcnlab.faults.network` and :mod:`~dcnlab.faults.process`.

Faults are injected from the hypervisor side wherever possible, each with its heal.

A hung or cut-off guest cannot be trusted to inject its own fault, so power,
reset, shutdown, freeze, NIC faults and partitions go through the engine that
runs the machines (the provider seam, :mod:`dcnlab.fleet.provider`; libvirt
and the fleet's bridges today), and a fault the engine cannot do is not
applicable rather than done some weaker way. Only process kills
and resource failures run inside the guest (:meth:`Node.run`): a process is
invisible from the hypervisor (the image carries no guest agent), and a
resource failure is a statement made to Pacemaker.

Every fault is a small object: ``inject(ctx)`` and ``heal(ctx)`` record their
own ``fault_injected`` / ``fault_healed`` events (the engine call's start as
the lower bound, its return as the time), ``heal`` is idempotent and safe
after a partial injection. :func:`injected` is the context manager that
always heals and then waits, through :func:`restore`, until the cluster is
healthy again: nodes that are off (fenced, powered off) or paused are
brought back and their cluster stack started, failed actions are cleaned
up, and :meth:`Cluster.wait_converged` must pass.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dcnlab.cluster.pcs import START_ARGV
from dcnlab.core.errors import DcnlabError, FaultError
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.fleet.provider import PAUSE, POWER, NotApplicable, PowerAction, require
from dcnlab.observe.timeline import Event, EventKind, Recorder

if TYPE_CHECKING:
    from dcnlab.cluster.bootstrap import Cluster
    from dcnlab.fleet.fleet import Fleet


# Seconds under KVM; scaled by the accelerator (x4 under TCG).
SHUTDOWN = 60.0  # a graceful shutdown, pacemaker migrating resources away first
RESTORE = 240.0  # heal to converged: boot, start the stack, rejoin, settle
ROUND = 120.0  # one round of restore() waits this long before retrying
STACK = START_ARGV[2:]  # the units `systemctl start` gets: corosync, pacemaker


@dataclass
class FaultContext:
    """What a fault acts on and where it records. The hypervisor-side faults
    (power, freeze, NICs, partitions) need only the fleet; their heals and the
    in-guest faults need the cluster too (:meth:`of`)."""

    fleet: Fleet
    recorder: Recorder
    member_of: Cluster | None = None
    # The heal leaves faulted nodes down: every node is about to be replaced by one
    # restored from the ready state (FaultInjector.skip_the_return), and nothing
    # uses them before that, so their boot and rejoin would be thrown away.
    nodes_replaced: bool = False

    @classmethod
    def of(cls, cluster: Cluster, recorder: Recorder) -> FaultContext:
        return cls(cluster.fleet, recorder, cluster)

    @property
    def cluster(self) -> Cluster:
        if self.member_of is None:
            raise FaultError(
                f"this step needs the Pacemaker cluster, and the fault context has only fleet {self.fleet.name}: "
                "build it with FaultContext.of(cluster, recorder)"
            )
        return self.member_of

    def power(self, node: str, action: PowerAction) -> None:
        """Power ``node``'s machine through the fleet's provider (:mod:`dcnlab.fleet.provider`)."""
        require(self.fleet.machines, PAUSE if action in ("suspend", "resume") else POWER, f"{action} of {node}")
        self.fleet.machines.power(self.fleet.node(node).domain, action)


class Fault(ABC):
    """One fault. Subclasses implement :meth:`_inject` and :meth:`_heal`."""

    kind: ClassVar[str]

    def __init__(self, node: str | None) -> None:
        self.node = node
        self.injected_at: Event | None = None
        self.healed_at: Event | None = None
        self._started = False  # inject was attempted: heal must run

    @property
    def name(self) -> str:
        return f"{self.kind} {self.node}" if self.node else self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @property
    def source(self) -> str:
        return f"fault:{self.name}"

    def describe(self) -> str:
        return ""

    def inject(self, ctx: FaultContext) -> Event:
        if self._started:
            raise FaultError(f"{self.name} was already injected; use a new fault object")
        self._started = True
        t0 = time.monotonic()
        try:
            self._inject(ctx)
        except NotApplicable:
            raise  # the engine cannot do it: not a failure of the fault
        except DcnlabError as err:
            raise FaultError(f"cannot inject {self.name}: {err}") from err
        self.injected_at = ctx.recorder.record(
            EventKind.FAULT_INJECTED, self.source, node=self.node, detail=self.describe(), earliest=t0
        )
        return self.injected_at

    def heal(self, ctx: FaultContext) -> Event | None:
        """Undo the fault (once; a no-op when it was never injected)."""
        if not self._started or self.healed_at is not None:
            return self.healed_at
        t0 = time.monotonic()
        try:
            self._heal(ctx)
        except NotApplicable:
            raise  # the engine cannot do it: not a failure of the fault
        except DcnlabError as err:
            raise FaultError(f"cannot heal {self.name}: {err}") from err
        self.healed_at = ctx.recorder.record(EventKind.FAULT_HEALED, self.source, node=self.node, earliest=t0)
        return self.healed_at

    @abstractmethod
    def _inject(self, ctx: FaultContext) -> None: ...

    @abstractmethod
    def _heal(self, ctx: FaultContext) -> None: ...


# ---------------------------------------------------------- power and CPU


def start_member(ctx: FaultContext, node: str) -> None:
    """Power ``node`` on if it is off, resume it if paused, and start its
    cluster stack (not enabled at boot: someone decides when a node rejoins).
    Does not wait for the cluster to converge (:func:`restore` does). Nothing
    when ``ctx.nodes_replaced``: the node is replaced instead."""
    if ctx.nodes_replaced:
        ctx.recorder.record(
            EventKind.NOTE, f"fault:{node}", node=node, detail="left down: the next test gets restored nodes"
        )
        return
    state = ctx.fleet.domain_state(node)
    if state == "paused":
        ctx.power(node, "resume")
    elif state not in ("running", "blocked"):
        ctx.fleet.power_on(node)
    target = ctx.fleet.node(node)
    active = target.run(["systemctl", "is-active", *STACK], check=False, timeout=30 * ctx.cluster.scale)
    if active.stdout.split() != ["active"] * len(STACK):
        ctx.cluster.start_stack(target)


# ------------------------------------------------------------ heal and wait


def restore(ctx: FaultContext, timeout: float | None = None) -> float:
    """Bring the cluster back to health after a fault: every node on,
    resumed and running its stack, failed actions cleaned up, then
    :meth:`Cluster.wait_converged`. Records ``cluster_healthy``; returns the
    seconds it took.

    Rounds until the deadline: under load a rejoin can itself go wrong (a
    start times out, a stop fails and the cluster fences that node), so each
    round powers on whatever is off again, starts stacks, cleans up failed
    actions and waits a while for convergence; what is still wrong at the
    deadline is the error."""
    t0 = time.monotonic()
    deadline = Deadline.after((timeout or RESTORE) * ctx.cluster.scale)
    rounds = 0
    while True:
        rounds += 1
        errors = []
        for name in ctx.fleet.nodes:
            try:
                start_member(ctx, name)
            except DcnlabError as err:
                errors.append(f"{name}: {str(err).splitlines()[0]}")
        # A node that cannot even be started will not be fixed by another round.
        if errors:
            raise FaultError("cannot bring every node back: " + "; ".join(errors))
        try:
            window = Deadline.after(min(deadline.remaining(), ROUND * ctx.cluster.scale))
            _wait_all_online(ctx, window)
            ctx.cluster.members()[0].run(["crm_resource", "--cleanup"], timeout=60 * ctx.cluster.scale)
            remaining = min(deadline.remaining(), ROUND * ctx.cluster.scale)
            ctx.cluster.wait_converged(timeout=max(10.0, remaining / ctx.cluster.scale))
            break
        except DcnlabError as err:
            last = str(err).splitlines()[0]
            if deadline.expired():
                raise FaultError(
                    f"the cluster did not become healthy after the heal ({rounds} rounds): {last}"
                ) from err
            ctx.recorder.record(EventKind.NOTE, "restore", detail=f"round {rounds} not healthy yet: {last}")
    seconds = time.monotonic() - t0
    detail = f"converged {seconds:.1f}s after the heal" + (f" ({rounds} rounds)" if rounds > 1 else "")
    ctx.recorder.record(EventKind.CLUSTER_HEALTHY, "restore", detail=detail)
    return seconds


def _wait_all_online(ctx: FaultContext, deadline: Deadline) -> None:
    # Clean up only once every node is back: a cleanup while a node is still
    # joining is undone by the failures its rejoin reports.
    expected = sorted(ctx.fleet.nodes)
    wait_until(
        lambda: sorted(ctx.cluster.state().online_nodes()) == expected,
        timeout=deadline,
        what=f"every node ({', '.join(expected)}) online in the cluster",
        interval=2.0,
    )


@dataclass
class Injected:
    """What :func:`injected` yields: the fault and, after the block, the
    seconds the cluster took to be healthy again."""

    fault: Fault
    restore_seconds: float | None = None
    # Seconds spent waiting for health, whether or not it came.
    waited: float = 0.0
    heal_errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def injected(
    fault: Fault,
    ctx: FaultContext,
    *,
    wait_healthy: Callable[[], bool] = lambda: True,
    on_healed: Callable[[], None] | None = None,
) -> Iterator[Injected]:
    """Inject ``fault``; when the block ends (however it ends), heal it, run
    ``on_healed`` (collect what cut-off nodes recorded, say), and wait until
    the cluster is healthy again if ``wait_healthy()`` says so then (what the
    fault played out to may decide it)."""
    result = Injected(fault)
    try:
        fault.inject(ctx)
        yield result
    finally:
        errors = []
        try:
            fault.heal(ctx)
        except FaultError as err:
            errors.append(str(err))
        if on_healed is not None:
            try:
                on_healed()
            except DcnlabError as err:
                errors.append(f"after the heal: {err}")
        if wait_healthy():
            started = time.monotonic()
            try:
                result.restore_seconds = restore(ctx)
            except FaultError as err:
                errors.append(str(err))
            result.waited = time.monotonic() - started
        result.heal_errors = errors
        if errors:
            ctx.recorder.record(EventKind.NOTE, fault.source, detail="heal failed: " + " | ".join(errors))
            raise FaultError(f"after {fault.name}: " + "\n".join(errors))
