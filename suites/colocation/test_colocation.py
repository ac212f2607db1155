"""Colocation certification on the spec's constraints, through relocating
faults on a real cluster.

The cluster sampler checks every colocation, anti-colocation and ban of the
spec at every sample (harness/invariants.py), so "never observed apart" is a
claim about every sample taken during the fault and its heal, not only the
end state. With the default spec: app is colocated with web (INFINITY),
witness is kept apart from web (-INFINITY), web prefers dcn1 (50) but its
stickiness (100) is higher, so it must not fail back when dcn1 returns.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fixtures.faults import FaultInjector
from harness.cluster.bootstrap import Cluster
from harness.cluster.spec import INFINITY, ClusterSpec, Colocation, Location, Podman, Resource, Systemd
from harness.faults import Fault, KillProcess, PowerOff
from harness.invariants import Violation
from harness.sampler import ClusterSampler
from harness.wait import wait_until

SETTLE = 180.0  # seconds before the accelerator's scale

# Relocating faults on the node running the colocation's anchor, given that
# node and the dependent resource. Killing the dependent's process relocates
# both without a node loss when its migration-threshold bans it from the node
# (the default spec's app: 1), since the colocation can only be kept
# elsewhere: the quick case of every smoke run.
FAULTS: dict[str, Callable[[str, Resource], Fault]] = {
    "power-off": lambda node, _rsc: PowerOff(node),
    "kill-corosync": lambda node, _rsc: KillProcess(node, "corosync"),
    "kill-workload": lambda node, rsc: _kill(node, rsc),
}


def _kill(node: str, rsc: Resource) -> Fault:
    if dict(rsc.meta).get("migration-threshold") != "1":
        pytest.skip(f"{rsc.id} has no migration-threshold of 1: a kill restarts it in place, nothing relocates")
    # The podman agent names the container after the resource.
    if isinstance(rsc, Podman):
        return KillProcess(node, container=rsc.id)
    if isinstance(rsc, Systemd):
        return KillProcess(node, unit=rsc.unit)
    pytest.skip(f"no process to kill for {rsc.id} ({rsc.agent}): kill-workload needs a podman or systemd resource")


def _colocations(spec: ClusterSpec, together: bool) -> list[Colocation]:
    return [c for c in spec.constraints if isinstance(c, Colocation) and (c.score > 0) == together]


def _settle_elsewhere(cluster: Cluster, rsc: str, away_from: str) -> str:
    def moved() -> str | None:
        state = cluster.state()
        where = state.where(rsc)
        return where[0] if state.started(rsc) and len(where) == 1 and where[0] != away_from else None

    return wait_until(moved, timeout=SETTLE * cluster.scale, what=f"{rsc} to run on a node other than {away_from}")


def _score(text: str) -> int:
    value = text.strip().upper()
    if value in ("INFINITY", "+INFINITY"):
        return INFINITY
    if value == "-INFINITY":
        return -INFINITY
    return int(value)


def _no_violations(sampler: ClusterSampler, late: list[Violation]) -> None:
    found = [str(v) for v in [*sampler.violations, *late]]
    assert not found, "constraint violated while the fault played out:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "fault_kind",
    [
        pytest.param("kill-workload", marks=pytest.mark.smoke),
        pytest.param("power-off", marks=pytest.mark.node_loss),
        pytest.param("kill-corosync", marks=pytest.mark.node_loss),
    ],
)
def test_colocated_resources_move_together(
    fault_kind: str, fault_cluster: Cluster, cluster_sampler: ClusterSampler, fault: FaultInjector
) -> None:
    cluster = fault_cluster
    pairs = _colocations(cluster.spec, together=True)
    if not pairs:
        pytest.skip(f"{cluster.spec.path} has no positive colocation")
    anchor = pairs[0].with_rsc
    dependent = cluster.spec.resource(pairs[0].rsc)
    if dependent is None:
        pytest.skip(f"{pairs[0].rsc} is a group: kill-workload needs a primitive colocated with {anchor}")
    (target,) = cluster.state().where(anchor)
    fault(FAULTS[fault_kind](target, dependent))
    new_home = _settle_elsewhere(cluster, anchor, target)
    for pair in pairs:
        _settle_elsewhere(cluster, pair.rsc, target)
        state = cluster.state()
        assert state.where(pair.rsc) == state.where(pair.with_rsc) == [new_home], (
            f"{pair.rsc} must run with {pair.with_rsc}: {pair.rsc} on {state.where(pair.rsc)}, "
            f"{pair.with_rsc} on {state.where(pair.with_rsc)}"
        )
    late = fault.heal()
    _no_violations(cluster_sampler, late)


def test_anti_colocation_holds_with_a_node_fewer(
    fault_cluster: Cluster, cluster_sampler: ClusterSampler, fault: FaultInjector
) -> None:
    """Lose the node the kept-apart resource runs on: with one node fewer it
    must find another node that is not its rival's, never its rival's."""
    cluster = fault_cluster
    apart = _colocations(cluster.spec, together=False)
    if not apart:
        pytest.skip(f"{cluster.spec.path} has no anti-colocation")
    pair = apart[0]
    state = cluster.state()
    (target,) = state.where(pair.rsc)
    (rival_home,) = state.where(pair.with_rsc)
    if len(cluster.members()) < 3:
        pytest.skip("needs 3 nodes: with 2, losing one leaves no node apart from the rival")
    fault(PowerOff(target))
    moved_to = _settle_elsewhere(cluster, pair.rsc, target)
    assert moved_to != cluster.state().where(pair.with_rsc)[0], f"{pair.rsc} ended on {pair.with_rsc}'s node"
    assert rival_home != target
    late = fault.heal()
    _no_violations(cluster_sampler, late)


def test_returning_node_does_not_pull_resources_back(fault_cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """After the preferred node a resource left comes back (fenced, powered
    on, rejoined), the resource stays where it went when its stickiness
    outweighs its location preference (the default spec), and goes back when
    the preference is higher."""
    cluster = fault_cluster
    spec = cluster.spec
    prefs = [c for c in spec.constraints if isinstance(c, Location) and c.score > 0]
    if not prefs:
        pytest.skip(f"{spec.path} has no location preference")
    pref = prefs[0]
    stickiness = _score(dict(spec.cluster.resource_defaults).get("resource-stickiness", "0"))
    if stickiness == pref.score:
        pytest.skip(f"stickiness equals the location score ({stickiness}): Pacemaker may go either way")
    if pref.node not in [n.name for n in cluster.members()]:
        pytest.skip(f"{pref.rsc} prefers {pref.node}, which is not a cluster member")
    # Only the loss of the preferred node itself can tell stickiness from
    # preference: from any other node the resource has no reason to return,
    # whatever the scores. Earlier cases leave it wherever they moved it, so
    # put it there first (no constraint is left), before the observers arm.
    cluster.place(pref.rsc, pref.node)
    cluster_sampler: ClusterSampler = request.getfixturevalue("cluster_sampler")
    fault: FaultInjector = request.getfixturevalue("fault")
    target = pref.node
    # This test is about what happens once the node is back: always wait for
    # the healthy cluster, even when no later test needs it.
    fault.wait_healthy = True
    fault(PowerOff(target))
    moved_to = _settle_elsewhere(cluster, pref.rsc, target)
    late = fault.heal()  # powers the node on and waits until the cluster has converged with it
    where = cluster.state().where(pref.rsc)
    if stickiness > pref.score:
        assert where == [moved_to], (
            f"{pref.rsc} moved back to {where} after {target} returned; its stickiness {stickiness} "
            f"should keep it on {moved_to} (location preference for {pref.node}: {pref.score})"
        )
    else:
        assert where == [pref.node], f"{pref.rsc} did not go back to its preferred node {pref.node}: {where}"
    _no_violations(cluster_sampler, late)
