"""Faults inside the guest: a process killed (a process is invisible from the
hypervisor, and the image carries no guest agent), and a resource failure
reported to Pacemaker."""

from __future__ import annotations

import signal as signals

from dcnlab.core.errors import ConfigError, FaultError
from dcnlab.faults.base import Fault, FaultContext, start_member

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
