"""The certification cases as tables, generated from the session's spec.

A suite declares which table feeds which argument of a test, and the plugin
expands it at collection, before any VM boots::

    @pytest.mark.dcn_cases("run", cases.failover)
    def test_failover(run: FailoverRun, ...): ...

A table is a function of the :class:`Session` (the cluster spec and the
fleet's shape) returning :class:`Param` rows: the case, its id (the spec's own
resource ids), the markers it carries (``-m power_off``, ``-m web``,
``-m smoke``), and why it is skipped when it cannot apply. A table with nothing
to certify returns one skipped row saying so, never an empty set. Tables know no
pytest: the plugin turns rows into ``pytest.param`` and registers their markers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dcnlab.certify.constraints import Resize, constraint_cases
from dcnlab.certify.hostfaults import host_fault_cases
from dcnlab.certify.preflight import requirements_of
from dcnlab.certify.workloads import FailoverCase, FailoverRun, failover_runs, workload_marker
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.fleet.hosts import lab_hosts, place


@dataclass(frozen=True)
class Session:
    """What the tables are generated from: the session's cluster spec, and the
    fleet's networks, nodes and hosts."""

    spec: ClusterSpec
    networks: int
    nodes: int
    hosts: int = 1


@dataclass(frozen=True)
class Param:
    """One row of a table: a case, its test id, its markers, and a skip reason ("" runs it)."""

    value: object
    id: str
    marks: tuple[str, ...] = ()
    skip: str = ""


Table = Callable[[Session], Sequence[Param]]


def fault_marks(fault: str, *, node_loss: bool, smoke: bool, workload: str | None = None) -> tuple[str, ...]:
    """The markers of a case that injects ``fault``: the fault's kind, the workload's
    id when it can be a marker name, ``node_loss`` and ``smoke``."""
    marks = [fault.replace("-", "_")]
    if workload is not None and workload_marker(workload):
        marks.append(workload)
    if node_loss:
        marks.append("node_loss")
    if smoke:
        marks.append("smoke")
    return tuple(marks)


def nothing(case_id: str, why: str) -> Param:
    """The one row of a table whose spec has nothing of its kind."""
    return Param(None, case_id, skip=f"{why}: nothing to certify")


def failover(s: Session) -> list[Param]:
    """Every certified workload x every fault, as the runs that certify them
    (:func:`dcnlab.certify.workloads.failover_runs`): a fault that hits
    several workloads bound to one node runs once, its id naming them all
    (``power-off-web+app``), its markers theirs."""

    def row(c: FailoverRun | FailoverCase) -> Param:
        if isinstance(c, FailoverCase):
            return Param(
                c, c.id, fault_marks(c.fault, node_loss=c.node_loss, smoke=c.smoke, workload=c.workload.id), c.skip
            )
        marks = fault_marks(c.fault, node_loss=c.node_loss, smoke=c.smoke)
        named = tuple(w.id for w in c.workloads if workload_marker(w.id))
        return Param(c, c.id, (*marks[:1], *named, *marks[1:]))

    return [row(c) for c in failover_runs(s.spec, s.networks, s.nodes, s.hosts)] or [
        nothing("no-workload", f"{s.spec.path} certifies no workload")
    ]


def colocations(s: Session) -> list[Param]:
    """Every mandatory colocation under each fault that relocates its pair."""
    rows = [
        Param(c, c.id, fault_marks(c.fault, node_loss=c.node_loss, smoke=c.smoke), c.skip)
        for c in constraint_cases(s.spec, s.nodes).together
    ]
    return rows or [nothing("no-colocation", f"{s.spec.path} has no positive colocation")]


def anti_colocations(s: Session) -> list[Param]:
    """Every mandatory anti-colocation with the kept-apart resource's node lost."""
    rows = [
        Param(c, c.id, fault_marks("power-off", node_loss=True, smoke=c.smoke), c.skip)
        for c in constraint_cases(s.spec, s.nodes).apart
    ]
    return rows or [nothing("no-anti-colocation", f"{s.spec.path} has no anti-colocation")]


def preferences(s: Session) -> list[Param]:
    """Every location preference with the preferred node lost and back."""
    rows = [
        Param(c, c.id, fault_marks("power-off", node_loss=True, smoke=c.smoke), c.skip)
        for c in constraint_cases(s.spec, s.nodes).preferences
    ]
    why = f"{s.spec.path} has no location preference (a location with a positive score)"
    return rows or [nothing("no-location-preference", why)]


def host_faults(s: Session) -> list[Param]:
    """Every declared host fault (a host cut off, a host lost) on every host
    but the first, on a fleet over several hosts (docs/multihost.md)."""
    if s.hosts < 2:
        return [nothing("one-host", "host faults need a fleet over several hosts (--dcn-lab-hosts 2 or more)")]
    hosts = lab_hosts(s.hosts)
    # Spread as the fleet places them (only counts matter here).
    used = set(place([str(i) for i in range(s.nodes)], hosts).values())
    rows = []
    for c in host_fault_cases(hosts):
        marks = [c.fault.replace("-", "_"), "host_fault", *(["smoke"] if c.smoke else [])]
        skip = "" if c.host in used else f"{s.nodes} node(s) spread over {s.hosts} hosts leave none on {c.host}"
        rows.append(Param(c, c.id, tuple(marks), skip))
    return rows


def resize(plan: Callable[[int], Resize]) -> Table:
    """The one case of a grow/shrink test: the member counts ``plan`` gives the
    fleet's size, skipped at collection when the fleet is too small."""

    def table(s: Session) -> list[Param]:
        r = plan(s.nodes)
        return [Param(r, r.id, skip=r.skip)]

    table.__doc__ = plan.__doc__
    return table


def _needs(items: Sequence[object], ids: Sequence[str], none: Param) -> list[Param]:
    return [Param(item, case_id) for item, case_id in zip(items, ids, strict=True)] or [none]


def unit_needs(s: Session) -> list[Param]:
    """Each systemd unit a resource of the spec runs."""
    units = requirements_of(s.spec).units
    none = Param(None, "none", skip=f"the cluster spec {s.spec.path} has no systemd resource: no unit to check")
    return _needs(units, [u.resource for u in units], none)


def container_needs(s: Session) -> list[Param]:
    """Each container image a resource of the spec runs."""
    images = requirements_of(s.spec).containers
    why = f"the cluster spec {s.spec.path} has no podman resource: no container image to check"
    return _needs(images, [c.resource for c in images], Param(None, "none", skip=why))


def agent_needs(s: Session) -> list[Param]:
    """Each resource agent the spec's resources use."""
    agents = requirements_of(s.spec).agents
    why = f"the cluster spec {s.spec.path} has no resource: no resource agent to check"
    return _needs(agents, [a.resource for a in agents], Param(None, "none", skip=why))


def fence_needs(s: Session) -> list[Param]:
    """The fence agent of the spec's fencing method (its name is the case's id)."""
    fence = requirements_of(s.spec).fence_agent
    if fence is None:
        why = f"fencing.method is none in the cluster spec {s.spec.path}: no fence agent to check"
        return [Param(None, "none", skip=why)]
    return [Param(fence, s.spec.fencing.method)]
