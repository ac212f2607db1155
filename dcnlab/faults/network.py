"""Network faults from the hypervisor side: a NIC's cable pulled (one network, or
every network: the node isolated) and a partition between two sets of nodes."""

from __future__ import annotations

from collections.abc import Sequence

from dcnlab.core.errors import ConfigError, DcnlabError, FaultError
from dcnlab.faults.base import Fault, FaultContext
from dcnlab.fleet.provider import LINKS, PARTITION, Nic, require


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
