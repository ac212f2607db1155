"""Faults, injected from the hypervisor side wherever possible, each with its heal.

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
import signal as signals
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dcnlab.cluster.pcs import START_ARGV
from dcnlab.core.errors import ConfigError, DcnlabError, FaultError
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.fleet.provider import LINKS, PARTITION, PAUSE, POWER, Nic, NotApplicable, PowerAction, require
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
    Does not wait for the cluster to converge (:func:`restore` does)."""
    state = ctx.fleet.domain_state(node)
    if state == "paused":
        ctx.power(node, "resume")
    elif state not in ("running", "blocked"):
        ctx.fleet.power_on(node)
    target = ctx.fleet.node(node)
    active = target.run(["systemctl", "is-active", *STACK], check=False, timeout=30 * ctx.cluster.scale)
    if active.stdout.split() != ["active"] * len(STACK):
        ctx.cluster.start_stack(target)


class PowerOff(Fault):
    """Pull the plug: ``virDomainDestroy``. Heal: power on and start the stack."""

    kind = "power-off"

    def __init__(self, node: str) -> None:
        super().__init__(node)

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        ctx.power(self.node, "off")

    def _heal(self, ctx: FaultContext) -> None:
        assert self.node is not None
        start_member(ctx, self.node)


class HardReset(Fault):
    """The reset button: ``virDomainReset``; the guest reboots at once (and is
    usually fenced while it does). Heal: make sure it is on and in the cluster."""

    kind = "hard-reset"

    def __init__(self, node: str) -> None:
        super().__init__(node)

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        ctx.power(self.node, "reset")

    def _heal(self, ctx: FaultContext) -> None:
        assert self.node is not None
        start_member(ctx, self.node)


class GracefulShutdown(Fault):
    """ACPI power button: ``virDomainShutdown``. Pacemaker stops cleanly and
    moves resources away, so no fence is expected. Heal: wait until the
    domain is off (bounded), then power on and start the stack."""

    kind = "shutdown"

    def __init__(self, node: str) -> None:
        super().__init__(node)

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        ctx.power(self.node, "shutdown")

    def _heal(self, ctx: FaultContext) -> None:
        node = self.node
        assert node is not None
        with contextlib.suppress(DcnlabError):
            wait_until(
                lambda: ctx.fleet.domain_state(node) == "shut-off",
                timeout=SHUTDOWN * ctx.cluster.scale,
                what=f"{node} to finish shutting down",
                interval=1.0,
            )
        if ctx.fleet.domain_state(node) not in ("shut-off", "absent"):
            ctx.power(node, "off")  # it never finished: the heal must not hang
        start_member(ctx, node)


class Freeze(Fault):
    """Pause the guest's vCPUs: ``virDomainSuspend`` (a hung node that still
    holds its addresses). Heal: resume; if it was fenced meanwhile, power it on."""

    kind = "freeze"

    def __init__(self, node: str) -> None:
        super().__init__(node)

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        ctx.power(self.node, "suspend")

    def _heal(self, ctx: FaultContext) -> None:
        assert self.node is not None
        start_member(ctx, self.node)


# --------------------------------------------------------------- network


def set_link(ctx: FaultContext, node: str, network: int, up: bool) -> None:
    """Pull or plug ``node``'s cable on ``network``, through the fleet's provider."""
    require(ctx.fleet.machines, LINKS, f"a link of {node}")
    ctx.fleet.machines.set_link(ctx.fleet.node(node).domain, ctx.fleet.node(node).plan.nics[network].mac, up)


class NicDown(Fault):
    """Cut one NIC: its link goes down as if the cable were pulled
    (``<link state='down'/>`` through ``virDomainUpdateDeviceFlags``, live).
    Heal: link up. A node keeps running and keeps its addresses."""

    kind = "nic-down"

    def __init__(self, node: str, network: int) -> None:
        super().__init__(node)
        self.network = network

    @property
    def name(self) -> str:
        return f"{self.kind} {self.node} eth{self.network}"

    def _links(self, ctx: FaultContext) -> list[int]:
        return [self.network]

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        for net in self._links(ctx):
            set_link(ctx, self.node, net, up=False)

    def _heal(self, ctx: FaultContext) -> None:
        assert self.node is not None
        errors = []
        for net in self._links(ctx):
            try:
                set_link(ctx, self.node, net, up=True)
            except DcnlabError as err:
                if ctx.fleet.domain_state(self.node) in ("running", "paused", "blocked"):
                    errors.append(f"eth{net}: {err}")
                # A domain that was fenced off meanwhile comes back with its
                # defined (persistent) XML, where every link is up.
        if errors:
            raise FaultError(f"cannot bring {self.node}'s links up: {'; '.join(errors)}")


class Isolate(NicDown):
    """Cut every NIC of a node. The harness cannot reach it either while it
    lasts (it is reached over the same networks): a :class:`~dcnlab.observe.sampler.NodeWatch`
    armed on it beforehand records what it saw."""

    kind = "isolate"

    def __init__(self, node: str) -> None:
        super().__init__(node, network=-1)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.node}"

    def _links(self, ctx: FaultContext) -> list[int]:
        assert self.node is not None
        return list(range(len(ctx.fleet.node(self.node).plan.nics)))


def _nics(ctx: FaultContext, nodes: Sequence[str], network: int) -> list[Nic]:
    """The NICs of ``nodes`` on ``network``, as the provider names them."""
    return [(ctx.fleet.node(n).domain, ctx.fleet.node(n).plan.nics[network].mac) for n in nodes]


class Partition(Fault):
    """Split the fleet in two on every network.

    The engine drops frames between a NIC of one side and a NIC of the other
    (:meth:`Links.block`; on libvirt, ebtables on the bridges in the fleet's
    namespace). Frames to and from the bridge itself pass, so both sides
    still reach the namespace: the harness samples both (which is how a
    split brain is seen), clients in the namespace still reach whichever
    side answers, and both sides still reach the fence device, as on a site
    whose fencing runs over its own path. Moving side B's taps to a second
    bridge was the alternative; it also cuts side B off from the namespace,
    fencing and harness included. Heal: unblock exactly what was blocked.
    """

    kind = "partition"

    def __init__(self, side_a: Sequence[str], side_b: Sequence[str] | None = None) -> None:
        super().__init__(None)
        self.side_a = list(side_a)
        self.side_b = list(side_b) if side_b is not None else None
        self._blocked: list[tuple[list[Nic], list[Nic]]] = []

    @property
    def name(self) -> str:
        b = ",".join(self.side_b) if self.side_b is not None else "the rest"
        return f"{self.kind} {','.join(self.side_a)} | {b}"

    def _sides(self, ctx: FaultContext) -> tuple[list[str], list[str]]:
        nodes = list(ctx.fleet.nodes)
        unknown = [n for n in [*self.side_a, *(self.side_b or [])] if n not in nodes]
        if unknown:
            raise ConfigError(f"partition names nodes the fleet does not have: {', '.join(unknown)}")
        b = self.side_b if self.side_b is not None else [n for n in nodes if n not in self.side_a]
        if not self.side_a or not b or set(self.side_a) & set(b):
            raise ConfigError(f"a partition needs two non-empty, disjoint sides: {self.side_a} | {b}")
        return self.side_a, b

    def _inject(self, ctx: FaultContext) -> None:
        a, b = self._sides(ctx)
        require(ctx.fleet.machines, PARTITION, self.name)
        for net in range(ctx.fleet.spec.networks):
            pair = (_nics(ctx, a, net), _nics(ctx, b, net))
            ctx.fleet.machines.block(*pair)
            self._blocked.append(pair)

    def _heal(self, ctx: FaultContext) -> None:
        errors = []
        for sides in list(self._blocked):
            try:
                ctx.fleet.machines.unblock(*sides)
                self._blocked.remove(sides)
            except DcnlabError as err:
                errors.append(str(err).splitlines()[0])
        if errors:
            raise FaultError("could not let every partitioned frame through again: " + "; ".join(errors))


# ------------------------------------------------------------ inside the guest


# Names as pkill --exact matches them: the kernel keeps 15 characters of a
# process name (comm), so "pacemaker-controld" is "pacemaker-contr".
COMM_LENGTH = 15


def kill_argv(
    *, process: str | None = None, unit: str | None = None, container: str | None = None, signal: str = "KILL"
) -> list[str]:
    """The guest command that sends ``signal`` to a process by name, to the
    main process of a systemd unit, or to a podman container."""
    if sum(x is not None for x in (process, unit, container)) != 1:
        raise ConfigError("name exactly one of process, unit or container to kill")
    sig = signal.upper().removeprefix("SIG")
    if sig not in signals.Signals.__members__ and f"SIG{sig}" not in signals.Signals.__members__:
        raise ConfigError(f"unknown signal {signal!r}")
    if process is not None:
        return ["pkill", "--signal", sig, "--exact", process[:COMM_LENGTH]]
    if unit is not None:
        return ["systemctl", "kill", f"--signal=SIG{sig}", "--kill-whom=main", unit]
    assert container is not None
    return ["podman", "kill", "--signal", sig, container]


class KillProcess(Fault):
    """Send a signal to a process inside the guest: ``process`` by name
    (corosync, pacemakerd, pacemaker-controld...), the main process of a
    systemd ``unit`` (a workload's service), or a podman ``container``.
    Guest-side because the hypervisor sees a VM, not its processes. Heal:
    if the node was fenced for it, power it on; start its stack if it is down."""

    kind = "kill"

    def __init__(
        self,
        node: str,
        process: str | None = None,
        *,
        unit: str | None = None,
        container: str | None = None,
        signal: str = "KILL",
    ) -> None:
        super().__init__(node)
        self.argv = kill_argv(process=process, unit=unit, container=container, signal=signal)
        self.what = process or unit or container or ""
        self.signal = signal

    @property
    def name(self) -> str:
        return f"{self.kind} -{self.signal} {self.what} on {self.node}"

    def _inject(self, ctx: FaultContext) -> None:
        assert self.node is not None
        ctx.fleet.node(self.node).run(self.argv, timeout=30 * ctx.cluster.scale)

    def _heal(self, ctx: FaultContext) -> None:
        assert self.node is not None
        start_member(ctx, self.node)


class ResourceFailure(Fault):
    """Tell Pacemaker that ``resource`` failed on ``node`` (default: where it
    runs now): ``crm_resource --fail``, which records a failed monitor as the
    agent would, and the cluster recovers it by its own rules. Heal:
    ``crm_resource --cleanup`` of that resource."""

    kind = "resource-failure"

    def __init__(self, resource: str, node: str | None = None) -> None:
        super().__init__(node)
        self.resource = resource

    @property
    def name(self) -> str:
        return f"{self.kind} {self.resource}" + (f" on {self.node}" if self.node else "")

    def _inject(self, ctx: FaultContext) -> None:
        if self.node is None:
            where = ctx.cluster.state().where(self.resource)
            if len(where) != 1:
                raise FaultError(f"{self.resource} runs on {where or 'no node'}: name the node to fail it on")
            self.node = where[0]
        member = ctx.cluster.members()[0]
        member.run(
            ["crm_resource", "--fail", "--resource", self.resource, "--node", self.node],
            timeout=30 * ctx.cluster.scale,
        )

    def _heal(self, ctx: FaultContext) -> None:
        ctx.cluster.members()[0].run(
            ["crm_resource", "--cleanup", "--resource", self.resource], timeout=60 * ctx.cluster.scale
        )


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
    wait_healthy: bool = True,
    on_healed: Callable[[], None] | None = None,
) -> Iterator[Injected]:
    """Inject ``fault``; when the block ends (however it ends), heal it, run
    ``on_healed`` (collect what cut-off nodes recorded, say), and wait until
    the cluster is healthy again."""
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
        if wait_healthy:
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
