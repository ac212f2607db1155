"""Faults only a fleet over several hosts has (docs/multihost.md): a host cut
off from the others, and a host lost whole. Elsewhere they are not applicable.

What Pacemaker must do then follows from the fencing topology. Each host's
fence device asks that host's own fence listener, the only one that can power
off its nodes, and only that one (a listener that does not run a domain
reports "off" with success, so no other host may stand in). With the host
unreachable, no device can fence its nodes: the cluster on the other hosts
must see every fence of them fail and must not treat them as fenced, so
whatever ran there is not started elsewhere until a fence succeeds. A site
that needs those resources back sooner needs a second fencing level (SBD with
a watchdog, say), which per-host fence_virt does not give.
"""

from __future__ import annotations

from dcnlab.cluster.fencing import start_fence_virtd
from dcnlab.faults.base import Fault, FaultContext


def fence_host_nodes(ctx: FaultContext, host: str, *, off_too: bool = False) -> None:
    """Complete the fence the cluster could not while ``host`` was unreachable,
    now that its device reaches it again: its nodes are then off, a known
    state, when the heal brings them back. Without this the cluster's own
    retry raced the heal (seen in the lab: the fence landed while the heal
    was starting the node's stack, and the heal failed on a node switched
    off under it). ``off_too``: fence nodes that are off already as well (a
    lost host's: the cluster holds them UNCLEAN until a fence succeeds).
    Nothing without a cluster or without fencing."""
    cluster = ctx.member_of
    if cluster is None or not cluster.fences:
        return
    for node in ctx.fleet.nodes_on(host):
        if off_too or ctx.fleet.domain_state(node) not in ("shut-off", "absent"):
            cluster.fence_node(node)


class HostFault(Fault):
    """A fault of one host of the fleet's (not of a node)."""

    def __init__(self, host: str) -> None:
        super().__init__(None)
        self.host = host

    @property
    def name(self) -> str:
        return f"{self.kind} {self.host}"


class HostPartition(HostFault):
    """Cut ``host`` off the other hosts (its underlay link down). Its nodes run
    on and reach each other; no frame crosses to or from any other host, fence
    requests to its listener included. Heal: the link up again."""

    kind = "host-partition"

    def describe(self) -> str:
        return f"host {self.host} cut off the underlay"

    def _inject(self, ctx: FaultContext) -> None:
        ctx.fleet.cut_host(self.host, True)

    def _heal(self, ctx: FaultContext) -> None:
        ctx.fleet.cut_host(self.host, False)
        fence_host_nodes(ctx, self.host)


class HostLoss(HostFault):
    """Lose ``host`` whole, as a machine losing power: its nodes, its libvirtd and
    its fence listener die together, and nothing of it answers. Heal: the host
    boots again with its nodes off and its fence listener back, and its nodes
    are fenced through it (telling the cluster they are off); bringing them
    back is :func:`~dcnlab.faults.base.restore`'s, as after any power loss."""

    kind = "host-loss"

    def describe(self) -> str:
        return f"host {self.host} and everything on it killed"

    def _inject(self, ctx: FaultContext) -> None:
        ctx.fleet.lose_host(self.host)

    def _heal(self, ctx: FaultContext) -> None:
        ctx.fleet.revive_host(self.host)
        cluster = ctx.member_of
        if cluster is not None and cluster.fences:
            cluster.fences = start_fence_virtd(ctx.fleet, cluster.spec)
        fence_host_nodes(ctx, self.host, off_too=True)


class HostPacketLoss(HostFault):
    """Drop ``percent`` of the packets between ``host`` and every other host, at
    random, both ways (the VXLAN packets on its underlay link). Heal: no loss."""

    kind = "host-packet-loss"

    def __init__(self, host: str, percent: float) -> None:
        super().__init__(host)
        self.percent = percent

    @property
    def name(self) -> str:
        return f"{self.kind} {self.host} {self.percent:g}%"

    def describe(self) -> str:
        return f"{self.percent:g}% of the packets between host {self.host} and the others dropped"

    def _inject(self, ctx: FaultContext) -> None:
        ctx.fleet.host_packet_loss(self.host, self.percent, True)

    def _heal(self, ctx: FaultContext) -> None:
        ctx.fleet.host_packet_loss(self.host, self.percent, False)
