"""What a cluster spec asks the suites to certify: its workloads, how their
clients reach them, what kills each one, and what every fault should do to
each (the expected outcome, derived from the configuration or declared).

Pure functions of a :class:`~dcnlab.cluster.spec.ClusterSpec` (and the
fleet's shape), so the suites generate their cases from a user's spec at
collection, before any VM boots, and every rule here is unit-tested. Nothing
here knows the shipped demo's names, units or ports.

The outcome table :func:`derive` implements is documented, row by row with
its reasoning, in docs/expectations.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from dcnlab.certify.verdict import Alternative, Expectation, Finding, Outcome
from dcnlab.cluster.spec import (
    FAILOVER_FAULTS,
    INFINITY,
    Client,
    ClusterSpec,
    Colocation,
    Group,
    IPaddr2,
    OcfResource,
    Podman,
    Requirement,
    Resource,
    Systemd,
    score_text,
)
from dcnlab.core.errors import ConfigError
from dcnlab.faults.base import Fault
from dcnlab.faults.network import Isolate, NicDown
from dcnlab.faults.power import Freeze, HardReset, PowerOff
from dcnlab.faults.process import KillProcess
from dcnlab.fleet.spec import AddressPlan
from dcnlab.observe.probe import Endpoint
from dcnlab.observe.timeline import Event, EventKind, Timings, heal_of

# The extra timing a failover case records: the longest client outage that
# began after the fault was healed (a fail-back, a restart on rejoin).
HEAL_OUTAGE = "heal-phase outage"
# Faults that take the node out of the cluster.
NODE_LOSS = ("power-off", "hard-reset", "freeze", "isolate", "kill-corosync", "kill-controld")
OUTCOMES = {
    "relocated": Outcome.RELOCATED,
    "restarted": Outcome.RESTARTED,
    "unaffected": Outcome.UNAFFECTED,
    "found-running": Outcome.REPROBED,
}


@dataclass(frozen=True)
class Workload:
    """A group, or a resource in no group: what moves as one unit and what
    clients use. ``resources`` are the primitives it consists of, in start
    order."""

    id: str
    resources: tuple[Resource, ...]
    client: Client | None
    group: Group | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The group's member ids (the journal and failed actions name
        members); () for a primitive."""
        return self.group.members if self.group is not None else ()

    @property
    def ids(self) -> frozenset[str]:
        """Every id that names it or part of it: its own, its group's members'."""
        return frozenset((self.id, *self.members, *(r.id for r in self.resources)))

    @property
    def kind(self) -> str:
        """What it is, in a few words, for markers and reports."""
        if self.group is not None:
            return "group of " + ", ".join(f"{r.id} ({r.agent})" for r in self.resources)
        return self.resources[0].agent


# Marker names pytest or the suites use for something else: a workload with
# one of these ids gets no marker of its own (select it with -k instead).
RESERVED_MARKERS = frozenset(
    {
        "skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings",
        "smoke", "certification", "node_loss", "grow_shrink", "destructive", "integration", "slow", "lab",
        *(f.replace("-", "_") for f in FAILOVER_FAULTS),
    }
)  # fmt: skip


def workload_marker(workload_id: str) -> bool:
    """Whether the workload's id is also its marker (``-m web``)."""
    return workload_id not in RESERVED_MARKERS


def workloads(spec: ClusterSpec) -> tuple[Workload, ...]:
    """The workloads the suites certify: ``certification.workloads`` when the
    spec lists them, else every group and every resource in no group."""
    names = spec.certified if spec.certified is not None else spec.top_level()
    out = []
    for name in names:
        group = spec.group(name)
        if group is not None:
            members = tuple(r for m in group.members if (r := spec.resource(m)) is not None)
            out.append(Workload(name, members, group.client, group))
        else:
            rsc = spec.resource(name)
            assert rsc is not None  # checked when the spec was read
            out.append(Workload(name, (rsc,), rsc.client))
    return tuple(out)


# ------------------------------------------------------------------- clients


def endpoint_of(spec: ClusterSpec, workload: Workload, plan: AddressPlan) -> Endpoint | None:
    """The client endpoint of ``workload`` on a fleet with ``plan``, or None
    when the spec declares none."""
    c = workload.client
    if c is None:
        return None
    host = c.address
    if c.floating:
        vip = spec.resource(c.address)
        assert isinstance(vip, IPaddr2)  # checked when the spec was read
        host = spec.vip_address(vip, plan)
    if c.protocol == "tcp":
        return Endpoint(workload.id, f"tcp://{host}:{c.port}")
    return Endpoint(workload.id, f"http://{host}:{c.port}{c.path}", status=c.status, contains=c.contains)


def endpoints(spec: ClusterSpec, plan: AddressPlan) -> list[Endpoint]:
    """Every certified workload's client endpoint (those that declare one)."""
    return [e for w in workloads(spec) if (e := endpoint_of(spec, w, plan)) is not None]


def unmeasured(workload: Workload) -> str:
    """Why the workload's client downtime is not measured ("" when it is)."""
    if workload.client is not None:
        return ""
    return f"{workload.id} declares no client endpoint (client: in the spec): certified on cluster state only"


# ------------------------------------------------------------------ killing


@dataclass(frozen=True)
class KillTarget:
    """The process the kill-workload fault kills: a systemd unit's main
    process, a podman container (the podman agent names it after the
    resource), or an OCF agent's process the spec names."""

    resource: str  # the primitive whose process it is
    unit: str | None = None
    container: str | None = None
    process: str | None = None

    def fault(self, node: str) -> KillProcess:
        return KillProcess(node, self.process, unit=self.unit, container=self.container)

    def describe(self) -> str:
        if self.unit is not None:
            return f"systemd unit {self.unit} of {self.resource}"
        if self.container is not None:
            return f"podman container {self.container}"  # named after its resource
        return f"process {self.process} of {self.resource}"


def kill_target(resource: Resource) -> KillTarget | str:
    """What to kill to make ``resource`` fail, or why nothing can be."""
    if isinstance(resource, Systemd):
        return KillTarget(resource.id, unit=resource.unit)
    if isinstance(resource, Podman):
        return KillTarget(resource.id, container=resource.id)
    if isinstance(resource, OcfResource):
        if resource.process is not None:
            return KillTarget(resource.id, process=resource.process)
        return (
            f"{resource.id} ({resource.agent}) names no process to kill: add `process: NAME` to it in the spec "
            f"(line {resource.line}) to certify a kill of its workload"
        )
    return f"{resource.id} ({resource.agent}) runs no process to kill"


def workload_kill(workload: Workload) -> KillTarget | str:
    """The kill target of a workload: its first resource, in start order,
    that runs a process (a group's floating IP runs none); or why there is
    none."""
    reasons = []
    for rsc in workload.resources:
        target = kill_target(rsc)
        if isinstance(target, KillTarget):
            return target
        reasons.append(target)
    return f"no kill-workload case for {workload.id}: " + "; ".join(reasons)


# ------------------------------------------------------------------ meta


def meta_of(spec: ClusterSpec, resource: str, name: str) -> str | None:
    """A meta attribute as Pacemaker resolves it: a primitive's own, else
    its group's, else ``resource_defaults``; for a group id, the group's,
    else ``resource_defaults``. None when nobody sets it."""
    rsc = spec.resource(resource)
    group = spec.group(resource) or spec.group_of(resource)
    for source in (rsc.meta if rsc else (), group.meta if group else (), spec.cluster.resource_defaults):
        value = dict(source).get(name)
        if value is not None:
            return value
    return None


def migration_threshold(spec: ClusterSpec, resource: str) -> int:
    """The effective migration-threshold (Pacemaker's default is INFINITY;
    0 disables it, which is INFINITY too)."""
    text = (meta_of(spec, resource, "migration-threshold") or "INFINITY").upper()
    value = INFINITY if text in ("INFINITY", "+INFINITY") else int(text)
    return INFINITY if value == 0 else value


def fencing_enabled(spec: ClusterSpec) -> bool:
    return spec.fencing.method != "none" and dict(spec.cluster.properties).get("stonith-enabled") != "false"


def anchors(spec: ClusterSpec, workload: Workload) -> list[Colocation]:
    """Mandatory colocations that tie ``workload`` (or one of its members)
    to another resource: ``rsc`` depends on ``with_rsc``."""
    return [c for c in spec.constraints if isinstance(c, Colocation) and c.score >= INFINITY and c.rsc in workload.ids]


# --------------------------------------------------------------- networks


def nic_cut_network(spec: ClusterSpec, workload: Workload, networks: int) -> int:
    """The fleet network whose NIC the nic-cut case cuts on the workload's
    node: a knet link network (the cut must matter to corosync) that carries
    none of the spec's floating IPs or the fence path when there is a choice
    (so clients and fencing are untouched and only link redundancy is
    tested); with one link, that link."""
    links = spec.link_networks(networks)
    vips = {r.network for r in spec.resources if isinstance(r, IPaddr2)}
    fence = {spec.fencing.network} if fencing_enabled(spec) else set()
    for avoid in (vips | fence, vips, set()):
        choice = [n for n in links if n not in avoid]
        if choice:
            return choice[-1]
    return links[-1]


# --------------------------------------------------------------- outcomes


def derive(spec: ClusterSpec, workload: Workload, fault: str, networks: int, nodes: int) -> Expectation | str:
    """The expected outcome of ``fault`` on the node running ``workload``:
    declared under ``certification.expect``, else derived from the
    configuration (docs/expectations.md gives the table and its reasons).
    A string says why no case can be made."""
    declared = spec.expectation(workload.id, fault)
    if declared is not None:
        return Expectation(fault, workload.id, OUTCOMES[declared.outcome], declared.fenced, declared.why)
    if fault in NODE_LOSS:
        return _node_loss(spec, workload, fault, nodes)
    if fault == "nic-cut":
        return _nic_cut(spec, workload, networks)
    if fault == "kill-workload":
        return _kill(spec, workload)
    raise ValueError(f"unknown failover fault {fault!r}")


_NODE_LOSS_WHY = {
    "power-off": "the node is gone",
    "hard-reset": "the node reboots without its cluster stack (not enabled at boot)",
    "freeze": "a paused node misses the token",
    "isolate": "every link down cuts the node off from the rest",
    "kill-corosync": "membership is lost with corosync",
    "kill-controld": "a node whose controller dies holds resources in an unknown state",
}


def _node_loss(spec: ClusterSpec, workload: Workload, fault: str, nodes: int) -> Expectation:
    what = _NODE_LOSS_WHY[fault]
    if fencing_enabled(spec):
        why = f"{what}: the survivors keep quorum, fence it and start {workload.id} elsewhere"
    else:
        # Certification holds a spec to what safe HA needs, not to what its
        # configuration happens to do: without fencing the survivors start
        # the workload while the lost node may still run it.
        why = (
            f"{what}: it must be fenced before {workload.id} runs elsewhere; this spec disables fencing "
            f"(fencing.method {spec.fencing.method}, stonith-enabled "
            f"{dict(spec.cluster.properties).get('stonith-enabled', 'true')}), so this case is expected to fail"
        )
    also: tuple[Alternative, ...] = ()
    if fault == "kill-controld":
        # A race in Pacemaker 2.1: pacemakerd respawns the controller within
        # a second; when it rejoins before the DC has acted, the DC re-probes
        # the node and finds everything running (nothing fenced or moved).
        also = (
            Alternative(
                Outcome.REPROBED,
                fenced=False,
                why="the respawned controller rejoined before the DC acted: re-probed, found running, kept",
            ),
        )
    elif nodes == 2 and fault == "isolate":
        # Two nodes (corosync two_node): both sides are quorate and race to
        # fence each other; the cut-off one may win and keep the workload.
        also = (Alternative(Outcome.UNAFFECTED, fenced=False, why="two nodes: the cut-off node won the fence race"),)
    return Expectation(fault, workload.id, Outcome.RELOCATED, fenced=True, why=why, alternatives=also)


def _nic_cut(spec: ClusterSpec, workload: Workload, networks: int) -> Expectation:
    links = spec.link_networks(networks)
    net = nic_cut_network(spec, workload, networks)
    if len(links) > 1:
        others = ", ".join(str(n) for n in links if n != net)
        why = (
            f"knet keeps the membership on the other link(s) (networks {others}); network {net} carries no floating IP"
        )
        vips = {r.network for r in workload.resources if isinstance(r, IPaddr2)}
        if net in vips:
            why = f"knet keeps the membership on networks {others}; but {workload.id}'s floating IP is on network {net}"
    else:
        # Like fencing, link redundancy is what certification holds a spec
        # to: one NIC failing must not take a node out of the cluster.
        why = (
            f"the spec has one knet link (network {net}): cutting it takes the node out of the cluster; "
            "a certified cluster rides out one NIC failure (add a second link), so this case is expected to fail"
        )
    return Expectation("nic-cut", workload.id, Outcome.UNAFFECTED, fenced=False, why=why)


def _kill(spec: ClusterSpec, workload: Workload) -> Expectation | str:
    target = workload_kill(workload)
    if isinstance(target, str):
        return target
    rsc = spec.resource(target.resource)
    assert rsc is not None
    threshold = migration_threshold(spec, target.resource)
    noticed = (
        "no monitor operation: nothing notices the kill, so this case is expected to fail"
        if rsc.no_monitor
        else "its monitor notices"
    )
    if threshold > 1:
        limit = score_text(threshold)
        why = f"{target.describe()} killed; {noticed}; below migration-threshold ({limit}) it restarts in place"
        return Expectation("kill-workload", workload.id, Outcome.RESTARTED, fenced=False, why=why)
    # One failure bans the resource from the node: it (and its workload) moves.
    why = f"{target.describe()} killed; {noticed}; migration-threshold 1 bans it from its node"
    for c in anchors(spec, workload):
        # The workload depends on another resource: with the colocation's
        # influence (Pacemaker's default, critical=true) the ban pulls the
        # anchor along; without it the workload can only stop.
        critical = (meta_of(spec, c.rsc, "critical") or "true") == "true"
        if not critical:
            return (
                f"kill-workload on {workload.id}: it must run with {c.with_rsc} (line {c.line}) but is not critical, "
                f"so a ban leaves it stopped; declare the outcome under certification.expect"
            )
        why += f"; its colocation with {c.with_rsc} (line {c.line}) moves both"
    return Expectation("kill-workload", workload.id, Outcome.RELOCATED, fenced=False, why=why)


# ------------------------------------------------------------------ cases

FaultMaker: TypeAlias = Callable[[str], Fault]


@dataclass(frozen=True)
class FailoverCase:
    """One fault on the node running one workload. ``skip`` says why the
    case cannot run (then ``expectation`` and ``make`` are None)."""

    fault: str
    workload: Workload
    expectation: Expectation | None
    make: FaultMaker | None
    skip: str = ""
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.workload.id}"

    @property
    def node_loss(self) -> bool:
        return self.expectation is not None and self.expectation.fenced


def fault_maker(spec: ClusterSpec, workload: Workload, fault: str, networks: int) -> FaultMaker | str:
    makers: Mapping[str, FaultMaker] = {
        "power-off": PowerOff,
        "hard-reset": HardReset,
        "freeze": Freeze,
        "isolate": Isolate,
        "kill-corosync": lambda node: KillProcess(node, "corosync"),
        "kill-controld": lambda node: KillProcess(node, "pacemaker-controld"),
    }
    if fault in makers:
        return makers[fault]
    if fault == "nic-cut":
        net = nic_cut_network(spec, workload, networks)
        return lambda node: NicDown(node, net)
    target = workload_kill(workload)
    if isinstance(target, str):
        return target
    return target.fault


def failover_cases(spec: ClusterSpec, networks: int, nodes: int, hosts: int = 1) -> list[FailoverCase]:
    """Every certified workload x every failover fault, in spec order.

    The smoke case is one quick case for any spec: the first workload's
    kill-workload case that restarts in place (no node lost), else the first
    runnable kill-workload case, else the first nic-cut case. On a fleet over
    several ``hosts`` it is the first power-off instead: what several hosts
    change is the fence (through the device of the host that runs the node)
    and a relocation to a node on another host."""
    cases = []
    for w in workloads(spec):
        for fault in FAILOVER_FAULTS:
            expect = derive(spec, w, fault, networks, nodes)
            make = fault_maker(spec, w, fault, networks)
            if isinstance(expect, str) or isinstance(make, str):
                why = expect if isinstance(expect, str) else str(make)
                cases.append(FailoverCase(fault, w, None, None, skip=why))
            else:
                cases.append(FailoverCase(fault, w, expect, make))
    runnable = [c for c in cases if not c.skip]
    picks = (
        [c for c in runnable if hosts > 1 and c.fault == "power-off"],
        [c for c in runnable if c.fault == "kill-workload" and c.expectation and not c.node_loss
         and c.expectation.outcome is Outcome.RESTARTED],
        [c for c in runnable if c.fault == "kill-workload"],
        [c for c in runnable if c.fault == "nic-cut"],
        runnable,
    )  # fmt: skip
    smoke = next((p[0] for p in picks if p), None)
    return [FailoverCase(c.fault, c.workload, c.expectation, c.make, c.skip, c is smoke) for c in cases]


@dataclass(frozen=True)
class FailoverRun:
    """One fault injected once, on the node running its workloads, and judged
    for each of them (``cases``, in spec order, each with its expectation).

    Workloads the spec binds to one node (mandatory colocations, however
    chained) are on the same node whenever they run, so a fault on that node
    (power-off, nic-cut...) hits them all: the fault runs once and each
    workload gets its own verdict from the same timeline, as separate cases
    of the same fault would have seen it. A kill-workload fault kills one
    workload's process: its case runs alone. So does a nic-cut whose cut
    network differs between them (a floating IP's network is avoided)."""

    fault: str
    cases: tuple[FailoverCase, ...]
    make: FaultMaker

    @property
    def id(self) -> str:
        return f"{self.fault}-" + "+".join(c.workload.id for c in self.cases)

    @property
    def smoke(self) -> bool:
        return any(c.smoke for c in self.cases)

    @property
    def node_loss(self) -> bool:
        return any(c.node_loss for c in self.cases)

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return tuple(c.workload for c in self.cases)


def bound_together(spec: ClusterSpec, certified: Sequence[Workload]) -> dict[str, str]:
    """For each certified workload, the first (in spec order) of the
    certified workloads it shares a node with by mandatory colocations
    (INFINITY, chained through any resource); itself when none."""
    unit = {rid: w.id for w in certified for rid in w.ids}  # any id -> its certified workload
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def top(rid: str) -> str:
        if rid in unit:
            return unit[rid]
        group = spec.group_of(rid)
        return group.id if group is not None else rid

    # Each set's root is its first certified workload in spec order.
    index = {w.id: i for i, w in enumerate(certified)}

    def rank(x: str) -> tuple[int, str]:
        return (index.get(x, len(index)), x)

    for c in spec.constraints:
        if isinstance(c, Colocation) and c.score >= INFINITY:
            a, b = sorted((root(top(c.rsc)), root(top(c.with_rsc))), key=rank)
            if a != b:
                parent[b] = a
    return {w.id: root(w.id) for w in certified}


def failover_runs(spec: ClusterSpec, networks: int, nodes: int, hosts: int = 1) -> list[FailoverRun | FailoverCase]:
    """The failover cases (:func:`failover_cases`) as they run: every
    runnable case in a :class:`FailoverRun`, shared by the workloads bound to
    one node for the faults that hit the node, not one workload; a skipped
    case stays as it is (it says why). In the order of each run's first case."""
    anchor = bound_together(spec, workloads(spec))
    groups: dict[tuple[object, ...], list[FailoverCase]] = {}  # in the order of each first case
    for c in failover_cases(spec, networks, nodes, hosts):
        key: tuple[object, ...] = (c.fault, c.workload.id)  # alone: skipped, or a kill
        if not c.skip and c.fault != "kill-workload":
            network = nic_cut_network(spec, c.workload, networks) if c.fault == "nic-cut" else None
            key = (c.fault, anchor[c.workload.id], network)
        groups.setdefault(key, []).append(c)
    out: list[FailoverRun | FailoverCase] = []
    for members in groups.values():
        first = members[0]
        if first.skip or first.make is None:
            out.append(first)
        else:
            out.append(FailoverRun(first.fault, tuple(members), first.make))
    return out


# ------------------------------------------------------------ requirements

# Corosync's defaults (corosync.conf(5)): token 3000 ms, consensus 1.2 x token.
DEFAULT_TOKEN_MS = 3000
# Faults whose detection waits for the token and consensus to expire.
TOKEN_BOUND = ("power-off", "hard-reset", "freeze", "isolate", "kill-corosync")


def _family(spec: ClusterSpec, rsc: str) -> set[str]:
    """A resource id with its group (a constraint on either binds it)."""
    group = spec.group_of(rsc)
    return {rsc, group.id} if group is not None else {rsc}


def _line_of(spec: ClusterSpec, rsc: str) -> int:
    entry = spec.group(rsc) or spec.resource(rsc)
    return entry.line if entry is not None else 0


def detection_floor(spec: ClusterSpec) -> tuple[float, str]:
    """The least time before survivors can act on a lost node: token plus
    consensus, in seconds, and where that comes from."""
    opts = spec.cluster.corosync
    token = opts.token or DEFAULT_TOKEN_MS
    consensus = opts.consensus or int(1.2 * token)
    where = f"line {opts.line}" if opts.token is not None and opts.line else "corosync's default token"
    return (token + consensus) / 1000, f"token {token} ms + consensus {consensus} ms ({where})"


# pcs gives a resource whose spec sets no monitor the interval its agent's
# metadata advertises, and 60 s when the agent advertises none
# (docs/expectations.md): the spec does not say which, so the longer is assumed.
PCS_MONITOR_DEFAULT_S = 60.0


def monitor_interval(resource: Resource) -> float | None:
    """Seconds between the resource's monitors; None: it has none."""
    if resource.no_monitor:
        return None
    for op in resource.ops:
        if op.name == "monitor" and op.interval is not None:
            return op.interval.ms / 1000
    return PCS_MONITOR_DEFAULT_S


def quiet_window(spec: ClusterSpec, workload: Workload) -> tuple[float, str]:
    """How long a case that expects nothing to happen must watch before
    "nothing happened" is a finding, before scaling for slow guests: the
    token and consensus (a node cut off is declared lost), then two monitor
    intervals of the slowest monitor that runs next to the workload (its
    members and what is colocated with them: one interval for a monitor to
    start after the fault, one for a run already under way), and why."""
    floor, floor_why = detection_floor(spec)
    ids = {workload.id, *workload.members}
    for c in spec.constraints:
        if isinstance(c, Colocation) and c.score > 0 and ids & {c.rsc, c.with_rsc}:
            ids |= {c.rsc, c.with_rsc}
    near = [r for r in spec.resources if _family(spec, r.id) & ids]
    intervals = [(i, r.id) for r in near if (i := monitor_interval(r)) is not None]
    if not intervals:
        return floor, f"{floor_why}; no monitor runs next to {workload.id}"
    longest, rsc = max(intervals)
    return floor + 2 * longest, f"{floor_why} + 2 x {longest:g} s ({rsc}'s monitor interval)"


def check_requirements(spec: ClusterSpec) -> None:
    """Refuse, before any VM boots, a requirement the configuration cannot
    guarantee, naming the requirement's line and the configuration's.
    Raises ConfigError; docs/requirements.md explains each rule."""
    for req in spec.requirements:
        problem = _cannot_hold(spec, req)
        if problem:
            raise ConfigError(f"{spec.path}:{req.line}: requirement {req.describe()} cannot hold: {problem}")


def _cannot_hold(spec: ClusterSpec, req: Requirement) -> str:
    if req.kind in ("together", "apart"):
        return _tie_problem(spec, req)
    if req.kind == "max-downtime":
        return _downtime_problem(spec, req)
    return ""  # no-outage-on-return: scores add up at run time (stickiness of members, colocations)


def _tie_problem(spec: ClusterSpec, req: Requirement) -> str:
    a, b = _family(spec, req.a), _family(spec, req.b)
    together = req.kind == "together"
    if a & b:
        # One group: always together, never apart.
        return "" if together else f"{req.a} and {req.b} are in one group, which always runs on one node"
    ties = [c for c in spec.constraints if isinstance(c, Colocation) and {c.rsc, c.with_rsc} <= a | b
            and (c.rsc in a) != (c.with_rsc in a)]  # fmt: skip
    good = [c for c in ties if (c.score >= INFINITY if together else c.score <= -INFINITY)]
    if good:
        return ""
    if ties:
        c = ties[0]
        what = "keeps them apart" if c.score < 0 else "ties them together"
        if (c.score > 0) == together:
            sign = "" if together else "-"
            what = f"has score {c.score}, a preference the cluster may trade away; only {sign}INFINITY guarantees it"
        return f"line {c.line}: colocation of {c.rsc} with {c.with_rsc} {what}"
    score = "INFINITY" if together else "-INFINITY"
    return (
        f"nothing in the configuration {'keeps them together' if together else 'keeps them apart'} "
        f"({req.a} on line {_line_of(spec, req.a)}, {req.b} on line {_line_of(spec, req.b)}): add "
        f"`- colocation: {{rsc: {req.a}, with: {req.b}, score: {score}}}` to constraints"
    )


def _downtime_problem(spec: ClusterSpec, req: Requirement) -> str:
    targets = [w for w in workloads(spec) if req.workload in (None, w.id)]
    measured = [w for w in targets if w.client is not None]
    if not measured:
        who = req.workload or "no certified workload"
        line = f" (line {_line_of(spec, req.workload)})" if req.workload else ""
        return f"{who}{line} declares no client: endpoint, so no client downtime can be measured; add one"
    floor, why = detection_floor(spec)
    if (req.fault is None or req.fault in TOKEN_BOUND) and req.limit < floor:
        fault = req.fault or "a node loss"
        return f"on {fault} the survivors cannot act before {floor:g}s ({why}): lower the token or raise the limit"
    if req.fault in (None, "kill-workload"):
        for w in measured:
            target = workload_kill(w)
            if isinstance(target, str):
                continue
            rsc = spec.resource(target.resource)
            assert rsc is not None
            if rsc.no_monitor:
                return f"line {rsc.line}: {rsc.id} has no monitor operation, so nothing notices its process dying"
            monitor = next((op for op in rsc.ops if op.name == "monitor"), None)
            if monitor is not None and monitor.interval is not None and monitor.interval.ms / 1000 > req.limit:
                return (
                    f"line {rsc.line}: {rsc.id} is monitored every {monitor.interval}, so a killed process can go "
                    f"unnoticed longer than {req.limit:g}s"
                )
    return ""


def requirement_findings(
    spec: ClusterSpec,
    workload: Workload,
    fault: str,
    timings: Timings,
    events: Sequence[Event],
    injected: Event,
    *,
    return_certified_by: str = "",
) -> list[Finding]:
    """The run's findings for every requirement on this case's workload and
    fault (together and apart are checked at every sample by the sampler).
    ``no-outage-on-return`` applies to the faults that take a node away and
    bring it back (NODE_LOSS): after a kill, the cleanup of the failed
    action is no return. ``return_certified_by`` names the earlier case that
    certified that return when this one did not wait for it."""
    out = []
    for req in spec.requirements:
        if req.workload not in (None, workload.id):
            continue
        if req.kind == "max-downtime" and req.fault in (None, fault) and workload.client is not None:
            down = timings.downtime
            seen = "not observed" if down.seconds is None else f"{down.seconds:.1f}s"
            ok = down.seconds is not None and down.seconds <= req.limit
            out.append(Finding(f"requirement {req.describe()}", f"client downtime at most {req.limit:g}s", seen, ok))
        if req.kind == "no-outage-on-return" and req.workload == workload.id and fault in NODE_LOSS:
            if return_certified_by:
                what, expected = f"requirement {req.describe()}", "certified once per session"
                out.append(Finding(what, expected, f"not waited for here: certified by {return_certified_by}", True))
            else:
                out.append(_return_finding(req, workload, timings, events, injected))
    return out


def _return_finding(
    req: Requirement, workload: Workload, timings: Timings, events: Sequence[Event], injected: Event
) -> Finding:
    what = f"requirement {req.describe()}"
    expected = "not interrupted by the return" + (
        f", clients out at most {req.limit:g}s" if req.limit else ", not one failed request"
    )
    healed = heal_of(events, injected)
    if healed is None:
        return Finding(what, expected, "the fault was not healed", False)
    ids = {workload.id, *workload.members}
    changes = (EventKind.RESOURCE_STOPPED, EventKind.RESOURCE_FAILED, EventKind.RESOURCE_STARTED)
    # Where each resource was last seen before the heal. A start after the
    # heal on that same node is the end of an in-place recovery (a re-probe
    # after controld restarts reports the resource stopped, then started
    # where it always ran), not a return; a stop after the heal, or a start
    # anywhere else, is the return moving the workload.
    before = [e for e in events if e.t <= healed.t and e.kind in changes]
    last = {e.resource: e.node for e in before if e.resource and e.resource in ids}

    def moved(e: Event) -> bool:
        if e.kind is not EventKind.RESOURCE_STARTED:
            return True
        known = last.get(e.resource or "") or last.get(workload.id)
        return known is None or e.node != known

    moves = [e for e in events if e.t > healed.t and e.resource in ids and e.kind in changes and moved(e)]
    outage = next((t for t in timings.extra if t.name == HEAL_OUTAGE), None)
    seen = []
    if moves:
        first = moves[0]
        seen.append(f"{first.resource} {first.kind.value.replace('resource_', '')} on {first.node} "
                    f"{first.t - healed.t:.1f}s after the heal")  # fmt: skip
    over = outage is not None and outage.seconds is not None and outage.seconds > req.limit
    if outage is not None and outage.seconds is not None:
        seen.append(f"heal-phase outage {outage.seconds:.1f}s")
    elif outage is not None:
        seen.append(f"heal-phase outage not measured ({outage.why})")
    return Finding(what, expected, "; ".join(seen) or "nothing", not moves and not over)
