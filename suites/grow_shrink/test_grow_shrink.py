"""Grow and shrink a running cluster while clients watch.

Spare nodes are booted before the observers arm (:meth:`Cluster.boot_spare`:
under TCG the members are paused meanwhile, the host's two cores being the
lab's limit, not the cluster's), then joined to the running cluster, and
members are drained and removed, one at a time, in the steps of ``pcs cluster
node add/remove``. At every size the quorum must count exactly the members,
the workloads must not move (none of the spec's constraints asks them to;
only what ran on a removed node moves), and the client probes must see no
outage longer than the spec's ``grow-shrink`` downtime (none at all when it
is 0, the default).

The cases follow the fleet's size N (``--dcn-nodes``, else the spec's
``cluster.nodes``), shown in their ids: grow then shrink (N to N+1 and back),
remove a node (N to N-1), shrink to two and grow back (N to 2, a node at a
time, and back to N with as many spares). A cluster never goes below two
nodes: on a 2-node fleet the removal cases are skipped saying so. The members
removed run nothing a client reaches (a certified workload with a client, a
floating IP), the highest-numbered first; when there are not enough, the case
is skipped saying what runs where (dcnlab/certify/constraints.py).

The smoke case only shrinks (no spare, no join): see its comment.

Every case changes the membership: they are ``destructive``, so the next
test gets a fresh cluster of the spec's size. Each keeps the members'
cluster journals from its start (``journal/`` in its tmp dir, and on the
timeline a failure message shows).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from dcnlab.certify import (
    Availability,
    ClientProbe,
    Cluster,
    ClusterError,
    ClusterSampler,
    ClusterState,
    EventKind,
    Node,
    Recorder,
    Thresholds,
    cases,
    membership_change_limit,
    record_journals,
)
from dcnlab.certify.constraints import (
    Resize,
    client_facing,
    grow_then_shrink,
    pick_removals,
    remove_one,
    shrink_to_two_and_back,
)
from dcnlab.certify.verdict import describe_outage, downtime_over, window

# The member counts each case goes through come from the fleet's size, at
# collection: a case the fleet is too small for is skipped before its
# destructive mark costs a fresh cluster.
pytestmark = [pytest.mark.grow_shrink, pytest.mark.destructive]


@pytest.fixture
def victims(resize: Resize, fault_cluster: Cluster) -> tuple[str, ...]:
    """The members the case removes, in order, chosen before any spare boots
    or observer arms: a case with none to remove is skipped at no more cost.
    All are chosen from the placement at the start, which the case certifies
    does not change (only what ran on a removed node moves)."""
    if not resize.removals:
        return ()
    members = [n.name for n in fault_cluster.members()]
    if len(members) != resize.sizes[0]:
        raise ClusterError(
            f"the cluster has {len(members)} members ({', '.join(members)}) but the case was made for "
            f"{resize.sizes[0]} (--dcn-nodes, else the spec's cluster.nodes): a fresh cluster should have that many"
        )
    state = fault_cluster.state()
    facing = client_facing(fault_cluster.spec)
    busy = {m: [rsc for rsc in facing if m in state.where(rsc)] for m in members}
    picked = pick_removals(members, busy, resize.removals)
    if isinstance(picked, str):
        pytest.skip(picked)
    return picked


@pytest.fixture
def spares(resize: Resize, victims: tuple[str, ...], fault_cluster: Cluster) -> Iterator[list[Node]]:
    """The nodes the case joins, booted for the cluster (after ``victims``
    is chosen), not joined yet; deleted at the end unless they joined."""
    booted: list[Node] = []
    try:
        for _ in range(resize.joins):
            booted.append(fault_cluster.boot_spare())
        yield booted
    finally:
        for node in booted:
            if node.name in fault_cluster.spares:
                fault_cluster.drop_spare(node.name)


@pytest.fixture
def watched(
    spares: list[Node], fault_cluster: Cluster, timeline: Recorder, cluster_sampler: ClusterSampler
) -> Iterator[Cluster]:
    """The cluster with the sampler checking invariants throughout, its
    spares booted first (pytest sets up a fixture's arguments in order)."""
    yield fault_cluster
    if cluster_sampler.violations:
        _fail(
            "FAIL: invariants violated while the membership changed:\n"
            + "\n".join(map(str, cluster_sampler.violations))
        )


def _fail(message: str) -> NoReturn:
    """A certification failure: Allure files ``AssertionError: FAIL: ...``
    under "Certification failures" (dcnlab/report/allure_report.py), apart from
    the harness's own errors."""
    __tracebackhide__ = True
    raise AssertionError(message)


def _shrink(cluster: Cluster, timeline: Recorder, victim: str) -> None:
    """Drain ``victim``, take it out of the cluster; quorum right after, and
    nothing that ran elsewhere moved."""
    before = _placement(cluster, cluster.state())
    _step(timeline, f"standby {victim}")
    cluster.standby(victim)
    _step(timeline, f"remove {victim}")
    cluster.remove_node(victim)
    _step(timeline, f"{victim} removed: {len(cluster.members())} nodes")
    _assert_quorum(cluster)
    after = _placement(cluster, cluster.state())
    moved = {r: (before[r], after[r]) for r in before if before[r] != after[r] and victim not in before[r]}
    if moved:
        _fail(f"FAIL: resources not on {victim} moved when it left (before, after): {moved}")


def _grow(cluster: Cluster, timeline: Recorder, spare: Node) -> None:
    """Join ``spare``; quorum right after, and nothing moved."""
    before = _placement(cluster, cluster.state())
    _step(timeline, f"join {spare.name}")
    cluster.add_node(spare)
    _step(timeline, f"{spare.name} joined, cluster converged: {len(cluster.members())} nodes")
    _assert_quorum(cluster)
    after = _placement(cluster, cluster.state())
    moved = {r: (before[r], after[r]) for r in before if before[r] != after[r]}
    if moved:
        _fail(f"FAIL: resources moved when {spare.name} joined (before, after): {moved}")


def _placement(cluster: Cluster, state: ClusterState) -> dict[str, list[str]]:
    return {r.id: state.where(r.id) for r in cluster.spec.resources}


def _assert_quorum(cluster: Cluster) -> None:
    members = sorted(n.name for n in cluster.members())
    for node in cluster.members():
        q = cluster.quorum(node)
        if not q.quorate:
            _fail(f"FAIL: {node.name} is not quorate with {members}")
        if q.total_votes != len(members):
            _fail(f"FAIL: {node.name} counts {q.total_votes} votes for {len(members)} members")
        if sorted(q.member_names()) != members:
            _fail(f"FAIL: {node.name} sees members {q.member_names()}, the fleet runs {members}")


def _assert_downtime(availability: dict[str, Availability], limit: float, timeline: Recorder) -> None:
    """No client outage longer than the spec's grow-shrink downtime (none at
    all with 0), named with the timeline around the worst one."""
    over = downtime_over((o for av in availability.values() for o in av.outages), limit)
    if not over:
        return
    worst = max(over, key=lambda o: o.duration)
    allowed = "no failed request" if limit == 0 else f"no outage over {limit:g}s"
    _fail(
        f"FAIL: grow-shrink: expected {allowed} (certification.thresholds.grow-shrink.downtime), observed "
        + "; ".join(describe_outage(o) for o in over)
        + "\ntimeline around the longest, from its start:\n"
        + window(timeline.events(), worst.start, worst.end or worst.last_failed)
    )


def _step(timeline: Recorder, what: str) -> None:
    timeline.record(EventKind.NOTE, "grow_shrink", detail=what)


def _record(
    cluster: Cluster, probes: ClientProbe, timeline: Recorder, since: float, tmp_path: Path
) -> dict[str, Availability]:
    """The clients' availability, and the members' cluster journals since
    ``since`` on the timeline (and in ``tmp_path/journal``): a restart or a
    move shows there as the controller's operations, with their reasons."""
    availability = probes.record(timeline)
    record_journals(cluster.fleet, timeline, since=since - 5.0, save_dir=tmp_path / "journal")
    return availability


# Not in the smoke set: while the spare joins, one guest more than the
# members share the two host cores, on top of what the membership change
# costs the web node itself (the shipped spec's grow-shrink comment); in an
# earlier session that node went quiet long enough to be fenced.
@pytest.mark.dcn_cases("resize", cases.resize(grow_then_shrink))
def test_grow_then_shrink_without_downtime(
    resize: Resize,
    watched: Cluster,
    spares: list[Node],
    timeline: Recorder,
    probes: ClientProbe,
    thresholds: dict[str, Thresholds],
    tmp_path: Path,
) -> None:
    cluster = watched
    (spare,) = spares
    since = time.monotonic()
    _assert_quorum(cluster)
    try:
        _grow(cluster, timeline, spare)
        # Nothing runs there unless something must: the standby in _shrink
        # moves only that.
        _shrink(cluster, timeline, spare.name)
    finally:
        availability = _record(cluster, probes, timeline, since, tmp_path)
    _assert_downtime(availability, membership_change_limit(thresholds), timeline)


# The smoke case: one node drained and removed (on a 3-node cluster, down to
# two: corosync's two-node mode), and nothing else. It needs no spare:
# booting one and its join are the slowest and most TCG-bound steps of this
# suite (a guest more on two host cores; corosync and pacemaker on every
# member busy for seconds while a node joins). Joins are certified by the
# two cases above and below.
@pytest.mark.smoke
@pytest.mark.dcn_cases("resize", cases.resize(remove_one))
def test_remove_a_node(
    resize: Resize,
    watched: Cluster,
    victims: tuple[str, ...],
    timeline: Recorder,
    probes: ClientProbe,
    thresholds: dict[str, Thresholds],
    tmp_path: Path,
) -> None:
    """Remove a node that runs nothing a client reaches, one node fewer: no
    outage of the workloads, quorum right, and only what ran on the removed
    node moved."""
    cluster = watched
    (victim,) = victims
    since = time.monotonic()
    try:
        _shrink(cluster, timeline, victim)
    finally:
        availability = _record(cluster, probes, timeline, since, tmp_path)
    _assert_downtime(availability, membership_change_limit(thresholds), timeline)


# On a 3-node fleet the spare joins a two-node cluster, so three guests share
# the host, as in every other case. Its outages under TCG (0-9.0 s, from the
# membership change's work on the web node: corosync's, then pacemaker's) are
# what sized the shipped spec's grow-shrink downtime.
@pytest.mark.dcn_cases("resize", cases.resize(shrink_to_two_and_back))
def test_shrink_to_two_and_grow_back(
    resize: Resize,
    watched: Cluster,
    victims: tuple[str, ...],
    spares: list[Node],
    timeline: Recorder,
    probes: ClientProbe,
    thresholds: dict[str, Thresholds],
    tmp_path: Path,
) -> None:
    """Remove nodes that run nothing a client reaches, one at a time, down
    to two (corosync's two-node mode), then join as many spares, one at a
    time: no outage of the workloads, quorum right at every size, and only
    what ran on a removed node moved."""
    cluster = watched
    since = time.monotonic()
    try:
        for victim in victims:
            _shrink(cluster, timeline, victim)
        for spare in spares:
            _grow(cluster, timeline, spare)
    finally:
        availability = _record(cluster, probes, timeline, since, tmp_path)
    _assert_downtime(availability, membership_change_limit(thresholds), timeline)
