"""Power faults from the hypervisor side: power-off (as a fence does), hard reset,
graceful shutdown (the ACPI button) and freeze (the vCPUs stopped)."""

from __future__ import annotations

import contextlib

from dcnlab.core.errors import DcnlabError
from dcnlab.core.wait import wait_until
from dcnlab.faults.base import SHUTDOWN, Fault, FaultContext, start_member


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
