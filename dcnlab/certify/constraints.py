"""The cases the colocation and grow/shrink suites make of a cluster spec,
and the verdicts they reach on what crm_mon shows.

Pure functions of a :class:`~dcnlab.cluster.spec.ClusterSpec`, the fleet's
size and, for the verdicts, a :data:`Placement` (where each resource runs,
as the suites read it from crm_mon), so the suites generate their cases from
a user's spec at collection, before any VM boots, and every rule here is
unit-tested. Case ids are made of the spec's own resource ids. Nothing here
knows the shipped demo's names, units, ports or node count.

- Colocation: every mandatory colocation (INFINITY) under each relocating
  fault of its anchor's node; every mandatory anti-colocation (-INFINITY)
  with the kept-apart resource's node lost; every location preference with
  the preferred node lost and back, expecting the resource to stay or
  return as its stickiness and the preference's score say.
- Grow/shrink: the member counts each case goes through, and which members
  it may remove without moving anything a client reaches.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from dcnlab.certify.verdict import Finding
from dcnlab.certify.workloads import (
    NODE_LOSS,
    FailoverRun,
    FaultMaker,
    KillTarget,
    Workload,
    kill_target,
    meta_of,
    migration_threshold,
    workload_kill,
    workloads,
)
from dcnlab.cluster.crm import ClusterState
from dcnlab.cluster.spec import (
    INFINITY,
    Ban,
    ClusterSpec,
    Colocation,
    IPaddr2,
    Location,
    node_index,
    score_text,
)
from dcnlab.faults.power import PowerOff
from dcnlab.faults.process import KillProcess
from dcnlab.fleet.spec import MAX_NODES

# Where each resource (a primitive or a group) runs: the nodes crm_mon shows
# it started on, empty when it is stopped (or failed).
Placement = Mapping[str, Sequence[str]]

# The faults that move a colocated pair off its node: the kill of the
# dependent's process moves both without losing a node when its
# migration-threshold bans it there (the colocation can only be kept
# elsewhere); the node losses follow.
RELOCATING_FAULTS = ("kill-workload", "power-off", "kill-corosync")
# The smallest cluster a shrink may leave: corosync's two_node mode.
MIN_MEMBERS = 2


# --------------------------------------------------------------- scores


def parse_score(text: str) -> int:
    """A score as the spec writes it (the reader has checked it)."""
    value = text.strip().upper()
    if value in ("INFINITY", "+INFINITY"):
        return INFINITY
    if value == "-INFINITY":
        return -INFINITY
    return max(-INFINITY, min(INFINITY, int(value)))


def add_scores(a: int, b: int) -> int:
    """Pacemaker's score addition: saturating at ±INFINITY, and -INFINITY
    wins over INFINITY (Pacemaker Explained, "Infinity Math")."""
    if a <= -INFINITY or b <= -INFINITY:
        return -INFINITY
    if a >= INFINITY or b >= INFINITY:
        return INFINITY
    return max(-INFINITY, min(INFINITY, a + b))


def _unit(spec: ClusterSpec, rsc: str) -> str:
    """What moves as one: a resource's group, else the resource."""
    group = spec.group_of(rsc)
    return group.id if group is not None else rsc


def _primitives(spec: ClusterSpec, unit: str) -> tuple[str, ...]:
    group = spec.group(unit)
    return group.members if group is not None else (unit,)


def stickiness(spec: ClusterSpec, rsc: str) -> int:
    """How much ``rsc`` (a primitive or a group) wants to stay where it runs.

    Each primitive's resource-stickiness as Pacemaker resolves it (its own
    meta, its group's, else resource_defaults; Pacemaker's default is 0).
    A group's is the sum of its members': "Stickiness, the measure of how
    much a resource wants to stay where it is, is additive in groups. Every
    active resource of the group will contribute its stickiness value to the
    group's total" (Pacemaker Explained, Advanced Resource Types, "Group
    Stickiness"). Every member is active while the cluster is converged,
    which is when the suites compare it. A member of a group moves with its
    group, so it weighs the group's total too.
    """
    total = 0
    for member in _primitives(spec, _unit(spec, rsc)):
        total = add_scores(total, parse_score(meta_of(spec, member, "resource-stickiness") or "0"))
    return total


def _colocated_units(spec: ClusterSpec, rsc: str) -> list[str]:
    """The other units tied to ``rsc``'s by mandatory colocations, either
    way and through chains: they all run on one node."""
    start = _unit(spec, rsc)
    links: dict[str, set[str]] = {}
    for c in spec.constraints:
        if isinstance(c, Colocation) and c.score >= INFINITY:
            a, b = _unit(spec, c.rsc), _unit(spec, c.with_rsc)
            links.setdefault(a, set()).add(b)
            links.setdefault(b, set()).add(a)
    seen, todo = [start], [start]
    while todo:
        for other in sorted(links.get(todo.pop(), ())):
            if other not in seen:
                seen.append(other)
                todo.append(other)
    return seen[1:]


def banned_nodes(spec: ClusterSpec, rsc: str) -> frozenset[str]:
    """Nodes ``rsc`` may never run on: bans and -INFINITY locations of it,
    of its group, or (for a group) of any member, since a group runs where
    all its members can."""
    ids = {rsc, _unit(spec, rsc), *_primitives(spec, rsc)}
    out = set()
    for c in spec.constraints:
        if (isinstance(c, Ban) or (isinstance(c, Location) and c.score <= -INFINITY)) and c.rsc in ids:
            out.add(c.node)
    return frozenset(out)


# ------------------------------------------------------------ placements


def where_text(rsc: str, nodes: Sequence[str]) -> str:
    if not nodes:
        return f"{rsc} stopped"
    return f"{rsc} on {' and '.join(nodes)}"


def placement_of(state: ClusterState, resources: Sequence[str]) -> Placement:
    """Where each resource is started (nowhere while it is stopped, starting or failed)."""
    return {r: state.where(r) if state.started(r) else [] for r in resources}


def home(placement: Placement, *resources: str) -> str | None:
    """The one node every resource runs on, or None when they do not all
    run, each on one node, on the same one."""
    nodes = {tuple(placement.get(r, ())) for r in resources}
    if len(nodes) != 1:
        return None
    (where,) = nodes
    return where[0] if len(where) == 1 else None


def _seen(placement: Placement, resources: Sequence[str]) -> str:
    return ", ".join(where_text(r, placement.get(r, ())) for r in resources)


# ------------------------------------------------- colocation: together


@dataclass(frozen=True)
class ColocationCase:
    """One relocating fault on the node where a mandatory colocation's pair
    runs: ``constraint.rsc`` must run with ``constraint.with_rsc`` after it.
    ``skip`` says why the case cannot run (then ``make`` is None)."""

    constraint: Colocation
    fault: str  # one of RELOCATING_FAULTS
    make: FaultMaker | None
    kill: KillTarget | None = None  # kill-workload: what it kills
    skip: str = ""
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.constraint.rsc}-with-{self.constraint.with_rsc}-{self.fault}"

    @property
    def node_loss(self) -> bool:
        return self.fault in NODE_LOSS

    def action(self, node: str) -> str:
        """The fault in words, for messages: "power-off of dcn1"."""
        if self.kill is not None:
            return f"kill-workload of {self.kill.describe()} on {node}"
        return f"{self.fault} of {node}"


def _relocating_kill(spec: ClusterSpec, c: Colocation) -> KillTarget | str:
    """What to kill so that ``c.rsc`` is banned from its node and, its
    colocation kept, both move; or why no kill does that."""
    group = spec.group(c.rsc)
    if group is not None:
        members = tuple(r for m in group.members if (r := spec.resource(m)) is not None)
        target = workload_kill(Workload(c.rsc, members, None, group))
    else:
        rsc = spec.resource(c.rsc)
        assert rsc is not None  # constraints name resources of the spec (checked when read)
        target = kill_target(rsc)
    if isinstance(target, str):
        return f"kill-workload: {target}"
    threshold = migration_threshold(spec, target.resource)
    if threshold != 1:
        return (
            f"kill-workload: one kill of {target.describe()} restarts it in place (migration-threshold "
            f"{score_text(threshold)}), so nothing relocates; set migration-threshold: 1 on {target.resource} "
            f"for a kill to move it and {c.with_rsc} together"
        )
    rsc = spec.resource(target.resource)
    if rsc is not None and rsc.no_monitor:
        return (
            f"kill-workload: {target.resource} has no monitor operation, so nothing notices the kill and nothing "
            "relocates (the failover suite's kill-workload case reports that)"
        )
    # Without the colocation's influence (the dependent's critical, true by
    # default) the ban stops the dependent instead of moving its anchor.
    if (meta_of(spec, c.rsc, "critical") or "true") != "true":
        return (
            f"kill-workload: {c.rsc} is not critical (meta critical=false), so its ban leaves it stopped "
            f"rather than moving {c.with_rsc}"
        )
    return target


def colocation_cases(spec: ClusterSpec) -> list[ColocationCase]:
    """Every positive colocation x every relocating fault, in spec order.
    An advisory one (a finite score) is listed with every case skipped."""
    cases = []
    for c in spec.constraints:
        if not isinstance(c, Colocation) or c.score <= 0:
            continue
        for fault in RELOCATING_FAULTS:
            if c.score < INFINITY:
                why = (
                    f"{c.rsc} with {c.with_rsc} (colocation line {c.line}) scores {c.score}: an advisory "
                    "colocation, which Pacemaker breaks when other scores outweigh it; only a mandatory one "
                    "(INFINITY) is certified to hold"
                )
                cases.append(ColocationCase(c, fault, None, skip=why))
            elif fault == "kill-workload":
                target = _relocating_kill(spec, c)
                if isinstance(target, str):
                    cases.append(ColocationCase(c, fault, None, skip=target))
                else:
                    cases.append(ColocationCase(c, fault, target.fault, kill=target))
            elif fault == "power-off":
                cases.append(ColocationCase(c, fault, PowerOff))
            else:
                cases.append(ColocationCase(c, fault, lambda node: KillProcess(node, "corosync")))
    return cases


def moved_together(c: Colocation, lost: str, placement: Placement) -> bool:
    """Whether the pair runs on one node, not the one the fault hit."""
    where = home(placement, c.rsc, c.with_rsc)
    return where is not None and where != lost


def together_failure(c: Colocation, case: ColocationCase, lost: str, placement: Placement, waited: float) -> str:
    return (
        f"FAIL: {c.rsc} must run with {c.with_rsc} (colocation line {c.line}): after {case.action(lost)}, "
        f"{_seen(placement, (c.rsc, c.with_rsc))} ({waited:.0f}s after the fault); expected both on one node "
        f"other than {lost}"
    )


def together_before(c: Colocation, placement: Placement) -> str:
    return (
        f"FAIL: {c.rsc} must run with {c.with_rsc} (colocation line {c.line}): before any fault, "
        f"{_seen(placement, (c.rsc, c.with_rsc))}"
    )


def together_finding(c: Colocation, placement: Placement) -> Finding:
    """A failover verdict's check of a mandatory colocation once the fault
    settled: both on one node (the cluster sampler checked it at every sample
    before; where the workload went is the outcome's finding)."""
    where = home(placement, c.rsc, c.with_rsc)
    return Finding(
        f"colocation line {c.line}",
        f"{c.rsc} with {c.with_rsc}, both on one node",
        f"both on {where}" if where is not None else _seen(placement, (c.rsc, c.with_rsc)),
        where is not None,
    )


def covering_run(case: ColocationCase, runs: Sequence[FailoverRun]) -> FailoverRun | None:
    """The failover run among ``runs`` that injects ``case``'s fault on the
    node of its pair and judges the pair's dependent, with the colocation in
    its verdict (:func:`together_finding`) and in its sampler's check of
    every sample: the same observation, so the colocation case need not
    inject the fault again. None when no run does."""
    if case.make is None:
        return None
    c = case.constraint
    owner = {rid: w.id for r in runs for w in r.workloads for rid in w.ids}
    dependent, anchor = owner.get(c.rsc), owner.get(c.with_rsc)
    if dependent is None or anchor is None:
        return None
    for run in runs:
        judged = {w.id for w in run.workloads}
        if run.fault != case.fault or dependent not in judged:
            continue
        if case.fault == "kill-workload":
            # The same process killed: the dependent's, whose ban moves both.
            if case.kill is not None and workload_kill(run.workloads[0]) == case.kill:
                return run
        elif anchor in judged:
            return run
    return None


# ------------------------------------------------------ colocation: apart


@dataclass(frozen=True)
class AntiColocationCase:
    """The node of ``constraint.rsc`` (the kept-apart resource) lost: it
    must restart elsewhere, never on the node of ``constraint.with_rsc``."""

    constraint: Colocation
    skip: str = ""
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.constraint.rsc}-apart-from-{self.constraint.with_rsc}"


def anti_colocation_cases(spec: ClusterSpec, nodes: int) -> list[AntiColocationCase]:
    cases = []
    for c in spec.constraints:
        if not isinstance(c, Colocation) or c.score >= 0:
            continue
        why = ""
        if c.score > -INFINITY:
            why = (
                f"{c.rsc} apart from {c.with_rsc} (colocation line {c.line}) scores {c.score}: an advisory "
                "anti-colocation, which Pacemaker breaks when other scores outweigh it; only a mandatory one "
                "(-INFINITY) is certified to hold"
            )
        elif nodes < 3:
            why = (
                f"needs 3 nodes or more: with {nodes}, losing {c.rsc}'s node leaves no node apart from "
                f"{c.with_rsc}'s (run with --dcn-nodes 3)"
            )
        cases.append(AntiColocationCase(c, skip=why))
    return cases


def refuge(spec: ClusterSpec, c: Colocation, members: Sequence[str], lost: str, rival: Sequence[str]) -> list[str]:
    """The members ``c.rsc`` may move to once ``lost`` is gone: not its
    rival's, not one it is banned from."""
    banned = banned_nodes(spec, c.rsc)
    return [m for m in members if m != lost and m not in rival and m not in banned]


def kept_apart(c: Colocation, lost: str, placement: Placement) -> bool:
    """Whether the kept-apart resource runs again, on one node that is
    neither the lost one nor one where its rival runs (which runs too)."""
    moved, rival = placement.get(c.rsc, ()), placement.get(c.with_rsc, ())
    return len(moved) == 1 and moved[0] != lost and bool(rival) and moved[0] not in rival


def apart_failure(c: Colocation, lost: str, placement: Placement, waited: float) -> str:
    return (
        f"FAIL: {c.rsc} must never run with {c.with_rsc} (colocation line {c.line}, -INFINITY): after "
        f"power-off of {lost}, {_seen(placement, (c.rsc, c.with_rsc))} ({waited:.0f}s after the fault); expected "
        f"{c.rsc} running again on a node other than {lost} and {c.with_rsc}'s"
    )


def apart_before(c: Colocation, placement: Placement) -> str:
    return (
        f"FAIL: {c.rsc} must never run with {c.with_rsc} (colocation line {c.line}, -INFINITY): before any "
        f"fault, {_seen(placement, (c.rsc, c.with_rsc))}"
    )


# ------------------------------------------------ location preferences


@dataclass(frozen=True)
class PreferenceCase:
    """The preferred node of ``constraint.rsc`` lost and back, with the
    resource on it first: ``returns`` says whether it must go back (its
    location score above its stickiness) or stay where it moved; ``why``
    says which outweighs which."""

    constraint: Location
    returns: bool
    why: str
    skip: str = ""
    smoke: bool = False

    @property
    def id(self) -> str:
        return f"{self.constraint.rsc}-prefers-{self.constraint.node}"


def preference_cases(spec: ClusterSpec, nodes: int) -> list[PreferenceCase]:
    cases = []
    for c in spec.constraints:
        if not isinstance(c, Location) or c.score <= 0:
            continue
        own = stickiness(spec, c.rsc)
        unit = _unit(spec, c.rsc)
        sticky = f"its stickiness {score_text(own)}"
        if spec.group(unit) is not None:
            sticky += f" (group {unit}: its members' stickiness adds up)"
        pref = f"its location score {score_text(c.score)} for {c.node} (location line {c.line})"
        # The resources colocated with it run on its node and have a
        # stickiness of their own; whether theirs holds it there too is not
        # what Pacemaker documents. Where that could decide, no case.
        others = _colocated_units(spec, c.rsc)
        total = own
        for other in others:
            total = add_scores(total, stickiness(spec, other))
        low, high = min(own, total), max(own, total)
        skip = ""
        if nodes < 2:
            skip = f"needs 2 nodes or more: with {nodes}, {c.rsc} has nowhere to go when {c.node} is lost"
        elif low <= c.score <= high:
            if low == high:
                skip = f"{sticky} equals {pref}: Pacemaker may keep {c.rsc} where it moved or take it back"
            else:
                skip = (
                    f"{pref} is between {sticky} and {score_text(high)} with the resources colocated with it "
                    f"({', '.join(others)}): whether their stickiness holds {c.rsc} is not documented by Pacemaker"
                )
        returns = c.score > high
        if total != own:
            sticky += f", {score_text(total)} with the resources colocated with it ({', '.join(others)})"
        if returns:
            why = f"{pref} outweighs {sticky}: {c.rsc} goes back to {c.node} when it returns"
        else:
            why = f"{sticky} outweighs {pref}: {c.rsc} stays where it moved when {c.node} returns"
        cases.append(PreferenceCase(c, returns, why, skip))
    return cases


def moved_off(rsc: str, lost: str, placement: Placement) -> bool:
    where = placement.get(rsc, ())
    return len(where) == 1 and where[0] != lost


def not_moved_failure(case: PreferenceCase, placement: Placement, waited: float) -> str:
    c = case.constraint
    return (
        f"FAIL: {c.rsc} must run elsewhere while its preferred node {c.node} is lost (location line {c.line}): "
        f"after power-off of {c.node}, {_seen(placement, (c.rsc,))} ({waited:.0f}s after the fault)"
    )


def return_failure(case: PreferenceCase, moved_to: str, where: Sequence[str]) -> str | None:
    """What is wrong with where the resource runs once its preferred node
    is back and the cluster has settled, or None when it is right."""
    c = case.constraint
    expected = c.node if case.returns else moved_to
    if list(where) == [expected]:
        return None
    went = "go back to" if case.returns else "stay on"
    return (
        f"FAIL: {c.rsc} must {went} {expected} once {c.node} is back ({case.why}); "
        f"after {c.node} returned, {where_text(c.rsc, where)}"
    )


# ----------------------------------------------------------------- smoke


@dataclass(frozen=True)
class ConstraintCases:
    together: list[ColocationCase]
    apart: list[AntiColocationCase]
    preferences: list[PreferenceCase]


def constraint_cases(spec: ClusterSpec, nodes: int) -> ConstraintCases:
    """Every case of the colocation suite for ``spec`` on ``nodes`` nodes.

    The smoke case is one case for any spec that has a constraint to
    certify, the quickest first (the first of each kind that can run): an
    anti-colocation case, where one resource starts on another node after a
    fence and nothing has to stop; else a colocation's kill-workload case,
    where the pair stops and starts again elsewhere; else a colocation under
    a node loss; else a location preference's, which waits for the node to
    come back. On the default spec under TCG the first took 12.5 s from
    fault to verdict and the second 116 s (docs/measurements.md,
    "2026-12-07 (night)")."""
    together = colocation_cases(spec)
    apart = anti_colocation_cases(spec, nodes)
    preferences = preference_cases(spec, nodes)
    kills = [c for c in together if c.fault == "kill-workload" and not c.skip]
    pick: object = next(
        iter([*(a for a in apart if not a.skip), *kills, *(c for c in together if not c.skip),
              *(p for p in preferences if not p.skip)]),
        None,
    )  # fmt: skip
    return ConstraintCases(
        [replace(c, smoke=c is pick) for c in together],
        [replace(a, smoke=a is pick) for a in apart],
        [replace(p, smoke=p is pick) for p in preferences],
    )


# ------------------------------------------------------------ grow/shrink


@dataclass(frozen=True)
class Resize:
    """The member counts a grow/shrink case goes through, one node at a
    time: (3, 2, 3) removes one and joins one. ``skip`` says why it cannot
    run on this fleet."""

    sizes: tuple[int, ...]
    skip: str = ""

    @property
    def id(self) -> str:
        if self.skip:
            return f"{self.sizes[0]}-nodes"
        # The sizes it turns at: (4, 3, 2, 3, 4) reads 4-to-2-to-4.
        n = self.sizes
        turns = [n[i] for i in range(1, len(n) - 1) if (n[i] - n[i - 1]) * (n[i + 1] - n[i]) < 0]
        return "-to-".join(str(k) for k in (n[0], *turns, n[-1]))

    @property
    def removals(self) -> int:
        return sum(max(0, a - b) for a, b in pairwise(self.sizes))

    @property
    def joins(self) -> int:
        """Spares the case needs, each booted before the observers arm."""
        return sum(max(0, b - a) for a, b in pairwise(self.sizes))


def _too_small(nodes: int) -> str:
    return (
        f"a {nodes}-node cluster cannot lose a node: that would leave {nodes - 1}, below the {MIN_MEMBERS} "
        f"a cluster keeps (corosync two_node); run with --dcn-nodes {MIN_MEMBERS + 1} or more"
    )


def grow_then_shrink(nodes: int) -> Resize:
    """One spare joins, then leaves."""
    if nodes >= MAX_NODES:
        return Resize((nodes,), skip=f"the fleet is at its {MAX_NODES}-node limit: there is no spare to join")
    return Resize((nodes, nodes + 1, nodes))


def remove_one(nodes: int) -> Resize:
    """One member drained and removed."""
    if nodes - 1 < MIN_MEMBERS:
        return Resize((nodes,), skip=_too_small(nodes))
    return Resize((nodes, nodes - 1))


def shrink_to_two_and_back(nodes: int) -> Resize:
    """Members removed one by one down to two, then as many spares joined."""
    if nodes - 1 < MIN_MEMBERS:
        return Resize((nodes,), skip=_too_small(nodes))
    return Resize((*range(nodes, MIN_MEMBERS - 1, -1), *range(MIN_MEMBERS + 1, nodes + 1)))


def client_facing(spec: ClusterSpec) -> tuple[str, ...]:
    """What clients reach: certified workloads that declare a client, and
    every floating IP of the spec (a client may use one no workload names)."""
    ids = [w.id for w in workloads(spec) if w.client is not None]
    ids += [r.id for r in spec.resources if isinstance(r, IPaddr2)]
    return tuple(dict.fromkeys(ids))


def pick_removals(members: Sequence[str], busy: Mapping[str, Collection[str]], count: int) -> tuple[str, ...] | str:
    """``count`` members to remove, highest-numbered first, among those
    running nothing a client reaches (``busy``: node -> the client-facing
    resources on it), so removing them moves nothing a client uses; or why
    there are not enough."""
    free = sorted((m for m in members if not busy.get(m)), key=node_index, reverse=True)
    if len(free) >= count:
        return tuple(free[:count])
    running = "; ".join(f"{n}: {', '.join(sorted(busy[n]))}" for n in sorted(busy, key=node_index) if busy[n])
    verb = "runs" if len(free) == 1 else "run"
    spare = f"only {', '.join(free)} {verb} none" if free else "every member runs one"
    return (
        f"needs {count} of the {len(members)} members running nothing a client reaches (a workload with a "
        f"client: or a floating IP) to remove them without a move, and {spare} ({running})"
    )
