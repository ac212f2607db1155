"""Invariants of a healthy cluster, checked at every sample.

- **No split brain**: a primitive resource (not a clone instance) is never
  active on two nodes at once.
- **Colocation** (score INFINITY) holds whenever both resources run: every
  node running the dependent resource also runs the other.
- **Anti-colocation** (-INFINITY) holds whenever both run: no node runs both.
- **Bans**: no resource runs on a node the spec bans it from (``ban``, or a
  ``location`` of -INFINITY).
- **Requirements** (``certification.requirements``): ``together`` pairs run on
  the same nodes and ``apart`` pairs on none in common, whenever both run.

A split brain cannot be seen in any single crm_mon: each side of a partition
shows only itself running the resource. So the input is a set of
:class:`View` s, one per node that answered, and :func:`merge` combines them:
views are grouped into sides (views whose nodes count each other as members:
the corosync memberships of one side differ while a node joins or leaves)
and the freshest of each side speaks for it; a view's claim that a resource
runs on a node counts only when that view shows the node online (a survivor's
view still lists the resources of a node it has lost, marked unclean, and
those claims are stale). A view without a DC (:func:`informed`) does not
speak at all, nor does one taken before its node was fenced, once the fence
has completed (:func:`fenced_since`). The union of the partitions' claims is where each resource
runs as far as anyone can tell, and that is what is checked.

Pure: unit tested on recorded crm_mon output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from dcnlab.cluster.crm import ClusterState
from dcnlab.cluster.spec import INFINITY, Ban, ClusterSpec, Colocation, Location


class ViolationKind(StrEnum):
    SPLIT_BRAIN = "split_brain"
    COLOCATION = "colocation"
    ANTI_COLOCATION = "anti_colocation"
    BANNED_NODE = "banned_node"
    REQUIREMENT = "requirement"  # certification.requirements: together, apart


@dataclass(frozen=True)
class View:
    """What ``observer`` saw at monotonic time ``t``: its crm_mon, and its
    corosync membership when known."""

    observer: str
    t: float
    state: ClusterState
    members: frozenset[str] | None = None

    @property
    def partition(self) -> frozenset[str]:
        if self.members is not None:
            return self.members
        return frozenset(self.state.online_nodes())


@dataclass(frozen=True)
class Placement:
    """Where resources run at ``t``, merged from the views of every partition."""

    t: float
    running: Mapping[str, frozenset[str]]  # resource id -> nodes; a group: where any member runs
    complete: Mapping[str, frozenset[str]]  # group id -> nodes where every member runs
    claimed_by: Mapping[tuple[str, str], tuple[str, ...]]  # (resource, node) -> observers that say so
    partitions: tuple[frozenset[str], ...]
    observers: tuple[str, ...]  # the view that spoke for each partition
    primitives: frozenset[str]  # ids that must never run twice
    groups: frozenset[str] = frozenset()

    def nodes(self, rsc: str) -> frozenset[str]:
        return self.running.get(rsc, frozenset())


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    t: float  # the sample's time (its freshest view)
    resource: str
    nodes: tuple[str, ...]
    other: str | None = None  # the other resource of a (anti-)colocation
    other_nodes: tuple[str, ...] = ()
    observers: tuple[str, ...] = ()
    detail: str = ""

    @property
    def key(self) -> tuple[str, str, str | None, tuple[str, ...]]:
        """What makes two samples' violations the same ongoing one."""
        return (self.kind.value, self.resource, self.other, self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "t": self.t,
            "resource": self.resource,
            "nodes": list(self.nodes),
            "other": self.other,
            "other_nodes": list(self.other_nodes),
            "observers": list(self.observers),
            "detail": self.detail,
        }

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}"


def _same_side(a: View, b: View) -> bool:
    # Each counts the other as a member: one side of the cluster, seen at two
    # moments (a join or leave in progress, or corosync-quorumtool not
    # answering one of them). Nodes on two sides of a split never do.
    return a.observer in b.partition and b.observer in a.partition


def sides(views: Iterable[View]) -> list[list[View]]:
    """Views grouped into the sides of the cluster: connected by
    :func:`_same_side`. Memberships seen at different moments differ while a
    node joins or leaves; grouping by equal membership made one side look
    like two and flagged a split brain that was only sampling skew."""
    groups: list[list[View]] = []
    for view in views:
        touching = [g for g in groups if any(_same_side(view, other) for other in g)]
        merged = [view, *(v for g in touching for v in g)]
        groups = [g for g in groups if all(g is not t for t in touching)] + [merged]
    return groups


def informed(views: Iterable[View]) -> list[View]:
    """The views that can tell where resources run: those whose node's
    controller knows a DC. Without one (its stack just started, or an
    election is under way) the node's CIB may not be the cluster's yet: a
    node joining a running cluster showed no resources at all for a sample,
    while every resource ran undisturbed elsewhere."""
    return [v for v in views if v.state.dc is not None]


def merge(views: Iterable[View]) -> Placement:
    """Combine per-node views into one placement (see the module docstring)."""
    by_partition: dict[frozenset[str], View] = {}
    for side in sides(informed(views)):
        freshest = max(side, key=lambda v: v.t)
        by_partition[freshest.partition] = freshest
    running: dict[str, set[str]] = {}
    claimed: dict[tuple[str, str], list[str]] = {}
    primitives: set[str] = set()
    all_groups: dict[str, tuple[str, ...]] = {}
    for view in by_partition.values():
        online = set(view.state.online_nodes())
        groups = {gid.split(":", 1)[0]: members for gid, members in view.state.groups}
        all_groups.update(groups)
        for r in view.state.resources:
            if r.clone is None and r.bundle is None:
                primitives.add(r.id)
            if not r.active:
                continue
            for node in r.nodes:
                if node not in online:
                    continue
                ids = [r.id]
                if r.group is not None:
                    base = r.group.split(":", 1)[0]
                    if base in groups:
                        ids.append(base)
                if r.clone is not None:
                    ids.append(r.clone)
                for rid in ids:
                    running.setdefault(rid, set()).add(node)
                    claimed.setdefault((rid, node), [])
                    if view.observer not in claimed[(rid, node)]:
                        claimed[(rid, node)].append(view.observer)
    chosen = sorted(by_partition.values(), key=lambda v: v.observer)
    complete = {
        gid: frozenset.intersection(*(frozenset(running.get(m, ())) for m in members))
        for gid, members in all_groups.items()
        if members
    }
    return Placement(
        t=max((v.t for v in chosen), default=0.0),
        running={k: frozenset(v) for k, v in running.items()},
        complete={k: v for k, v in complete.items() if v},
        claimed_by={k: tuple(v) for k, v in claimed.items()},
        partitions=tuple(v.partition for v in chosen),
        observers=tuple(v.observer for v in chosen),
        primitives=frozenset(primitives),
        groups=frozenset(all_groups),
    )


def _claims(placement: Placement, rsc: str, nodes: Iterable[str]) -> str:
    return "; ".join(
        f"{node} per {', '.join(placement.claimed_by.get((rsc, node), ())) or '?'}" for node in sorted(nodes)
    )


def check(placement: Placement, spec: ClusterSpec) -> list[Violation]:
    """Every invariant the placement breaks."""
    out: list[Violation] = []
    t = placement.t
    for rsc in sorted(placement.primitives):
        nodes = placement.nodes(rsc)
        if len(nodes) > 1:
            observers = tuple(sorted({o for n in nodes for o in placement.claimed_by.get((rsc, n), ())}))
            out.append(
                Violation(
                    ViolationKind.SPLIT_BRAIN,
                    t,
                    rsc,
                    tuple(sorted(nodes)),
                    observers=observers,
                    detail=f"{rsc} active on {len(nodes)} nodes at once: {_claims(placement, rsc, nodes)}",
                )
            )
    for con in spec.constraints:
        if isinstance(con, Colocation) and abs(con.score) >= INFINITY:
            mine, theirs = placement.nodes(con.rsc), placement.nodes(con.with_rsc)
            if not mine or not theirs:
                continue  # the invariant holds "whenever both run"
            if con.score > 0 and not mine <= theirs:
                out.append(
                    Violation(
                        ViolationKind.COLOCATION,
                        t,
                        con.rsc,
                        tuple(sorted(mine)),
                        con.with_rsc,
                        tuple(sorted(theirs)),
                        placement.observers,
                        f"{con.rsc} must run with {con.with_rsc}, but {con.rsc} is on "
                        f"{', '.join(sorted(mine))} and {con.with_rsc} on {', '.join(sorted(theirs))}",
                    )
                )
            if con.score < 0 and mine & theirs:
                both = ", ".join(sorted(mine & theirs))
                out.append(
                    Violation(
                        ViolationKind.ANTI_COLOCATION,
                        t,
                        con.rsc,
                        tuple(sorted(mine)),
                        con.with_rsc,
                        tuple(sorted(theirs)),
                        placement.observers,
                        f"{con.rsc} must never run with {con.with_rsc}, but both run on {both}",
                    )
                )
    for req in spec.requirements:
        if req.kind not in ("together", "apart"):
            continue
        mine, theirs = placement.nodes(req.a), placement.nodes(req.b)
        if not mine or not theirs:
            continue  # like a colocation: it holds "whenever both run"
        # Together: one runs where the other does (as a colocation reads it).
        broken = not (mine <= theirs or theirs <= mine) if req.kind == "together" else bool(mine & theirs)
        if not broken:
            continue
        # The constraint that backs the requirement (check_requirements made
        # sure there is one) is broken too: one violation, naming both.
        pair = _family(spec, req.a) | _family(spec, req.b)
        backing = next(
            (
                i
                for i, v in enumerate(out)
                if v.kind in (ViolationKind.COLOCATION, ViolationKind.ANTI_COLOCATION)
                and v.resource in pair
                and v.other in pair
            ),
            None,
        )
        if backing is not None:
            v = out[backing]
            out[backing] = replace(v, detail=f"{v.detail} (requirement {req.describe()})")
        else:
            out.append(
                Violation(
                    ViolationKind.REQUIREMENT,
                    t,
                    req.a,
                    tuple(sorted(mine)),
                    req.b,
                    tuple(sorted(theirs)),
                    placement.observers,
                    f"requirement {req.describe()} broken: {req.a} on {', '.join(sorted(mine))}, "
                    f"{req.b} on {', '.join(sorted(theirs))}",
                )
            )
    for rsc, node in banned(spec):
        if node in placement.nodes(rsc):
            out.append(
                Violation(
                    ViolationKind.BANNED_NODE,
                    t,
                    rsc,
                    (node,),
                    observers=placement.claimed_by.get((rsc, node), ()),
                    detail=f"{rsc} runs on {node}, which the spec bans it from",
                )
            )
    return out


def _family(spec: ClusterSpec, rsc: str) -> set[str]:
    """A resource with its group, or a group with its members."""
    group = spec.group(rsc) or spec.group_of(rsc)
    return {rsc, group.id, *group.members} if group is not None else {rsc}


def banned(spec: ClusterSpec) -> list[tuple[str, str]]:
    """(resource, node) pairs the spec forbids; a ban on a group bans its members."""
    pairs: list[tuple[str, str]] = []
    for con in spec.constraints:
        if isinstance(con, Ban) or (isinstance(con, Location) and con.score <= -INFINITY):
            pairs.append((con.rsc, con.node))
            group = spec.group(con.rsc)
            if group is not None:
                pairs.extend((member, con.node) for member in group.members)
    return pairs


Fences = Mapping[str, Sequence[float]]  # node -> when fences of it completed (monotonic)


def fenced_since(view: View, at: float, fences: Fences) -> bool:
    """Whether ``view``'s observer was fenced after the view was taken and by
    ``at``. Such a view no longer speaks: the fence stopped everything the
    node ran. A cut-off node's last view still showed its resources, taken
    before the cut and under the age limit when the survivors started them
    elsewhere after fencing it; merged, that read as a split brain that
    never was."""
    return any(view.t <= done <= at for done in fences.get(view.observer, ()))


def latest(views: Iterable[View], at: float, max_age: float, fences: Fences | None = None) -> list[View]:
    """Each observer's newest view taken at or before ``at`` and not older
    than ``max_age``, unless the observer was fenced since (:func:`fenced_since`)."""
    best: dict[str, View] = {}
    for v in views:
        if at - max_age <= v.t <= at and (v.observer not in best or v.t > best[v.observer].t):
            best[v.observer] = v
    return [v for v in best.values() if not fenced_since(v, at, fences or {})]


def replay(views: Sequence[View], spec: ClusterSpec, max_age: float, fences: Fences | None = None) -> list[Violation]:
    """Check the invariants at the time of every view, merging each
    observer's latest view no older than ``max_age`` and not outdated by a
    fence of its node: the offline form of what the sampler does live, for
    views collected after the fact (a node that was cut off records its own)."""
    out: list[Violation] = []
    for at in sorted({v.t for v in views}):
        out.extend(check(merge(latest(views, at, max_age, fences)), spec))
    return out


@dataclass(frozen=True)
class Episode:
    """One violation from its first to its last sample."""

    first: Violation
    last_t: float
    samples: int
    observers: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.first.to_dict(),
            "last_t": self.last_t,
            "samples": self.samples,
            "observers": list(self.observers),
        }


def episodes(violations: Iterable[Violation], gap: float) -> list[Episode]:
    """Group samples of the same violation (same :attr:`Violation.key`) that
    are less than ``gap`` seconds apart."""
    open_: dict[tuple[str, str, str | None, tuple[str, ...]], Episode] = {}
    done: list[Episode] = []
    for v in sorted(violations, key=lambda v: v.t):
        ep = open_.get(v.key)
        observers = tuple(sorted(set(ep.observers if ep else ()) | set(v.observers)))
        if ep is not None and v.t - ep.last_t <= gap:
            open_[v.key] = Episode(ep.first, v.t, ep.samples + 1, observers)
        else:
            if ep is not None:
                done.append(ep)
            open_[v.key] = Episode(v, v.t, 1, tuple(sorted(v.observers)))
    done.extend(open_.values())
    return sorted(done, key=lambda e: e.first.t)
