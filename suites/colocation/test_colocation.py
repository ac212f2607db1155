"""Colocation certification on every constraint of the spec, through
relocating faults on a real cluster.

The cases come from the session's spec at collection
(dcnlab/certify/constraints.py), named by its own resource ids:

- every mandatory colocation (INFINITY) under each relocating fault of the
  node its pair runs on: power-off and kill-corosync (node losses), and the
  kill of the dependent's process when its migration-threshold of 1 bans it
  there, so that only the anchor's move can keep the colocation (in a
  session that runs the failover suite too, a case one of its runs repeats,
  the same fault on the pair's node, is skipped naming the run: suites/conftest.py);
- every mandatory anti-colocation (-INFINITY) with the kept-apart
  resource's node lost: with one node fewer it must find a node that is not
  its rival's;
- every location preference with the preferred node lost and back: the
  resource goes back when its score outweighs the resource's stickiness,
  and stays where it moved when the stickiness outweighs it.

The cluster sampler checks every colocation, anti-colocation and ban of the
spec at every sample (dcnlab/cluster/invariants.py), so "never observed apart" is a
claim about every sample taken during the fault and its heal, not only the
end state. A cluster that ends somewhere else than expected fails the case
at the end of its settle window with a message starting ``FAIL:`` that names
the constraint, its spec line, and where the resources were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import pytest

from dcnlab.certify import Cluster, ClusterSampler, Violation, WaitTimeout, cases, wait_until
from dcnlab.certify.constraints import (
    AntiColocationCase,
    ColocationCase,
    Placement,
    PreferenceCase,
    apart_before,
    apart_failure,
    home,
    kept_apart,
    moved_off,
    moved_together,
    not_moved_failure,
    placement_of,
    refuge,
    return_failure,
    together_before,
    together_failure,
)
from dcnlab.faults import FaultInjector, PowerOff

SETTLE = 180.0  # seconds before the accelerator's scale

# The cases come from the spec's constraints (dcnlab/certify/cases.py). A spec
# without a constraint of a kind still shows its test, skipped with the reason.


# ------------------------------------------------------------------ helpers


def _fail(message: str) -> NoReturn:
    """A certification failure: Allure files ``AssertionError: FAIL: ...``
    under "Certification failures" (dcnlab/report/allure_report.py), apart from
    the harness's own errors."""
    __tracebackhide__ = True
    raise AssertionError(message)


def _settle(
    cluster: Cluster,
    resources: Sequence[str],
    done: Callable[[Placement], bool],
    failure: Callable[[Placement, float], str],
) -> Placement:
    """Wait for ``done``, and fail the case with ``failure`` (given the last
    placement seen and the seconds waited) when the settle window ends
    first: what the cluster did is the verdict, not a harness timeout. Only
    when no member answered crm_mon in the whole window does the wait's
    timeout stand: then nothing was observed to judge."""
    seen: list[Placement] = []
    start = time.monotonic()

    def settled() -> Placement | None:
        placement = placement_of(cluster.state(), resources)
        seen[:] = [placement]
        return placement if done(placement) else None

    try:
        return wait_until(settled, timeout=SETTLE * cluster.scale, what=" and ".join(resources) + " to settle")
    except WaitTimeout:
        if not seen:
            raise
        _fail(failure(seen[0], time.monotonic() - start))


def _no_violations(sampler: ClusterSampler, late: list[Violation]) -> None:
    found = [str(v) for v in [*sampler.violations, *late]]
    if found:
        _fail("FAIL: constraint violated while the fault played out:\n" + "\n".join(found))


# -------------------------------------------------------------------- cases


@pytest.mark.dcn_cases("together", cases.colocations)
def test_colocated_resources_move_together(
    together: ColocationCase | None, fault_cluster: Cluster, cluster_sampler: ClusterSampler, fault: FaultInjector
) -> None:
    """A relocating fault on the node the pair runs on: both must end up on
    one other node."""
    # Skipped cases (a placeholder, or one that cannot run) have none.
    assert together is not None
    assert together.make is not None
    cluster = fault_cluster
    c = together.constraint
    pair = (c.rsc, c.with_rsc)
    before = placement_of(cluster.state(), pair)
    target = home(before, *pair)
    if target is None:
        _fail(together_before(c, before))
    if together.node_loss:
        # What is certified ends when the pair has settled; the node's
        # return is test_returning_node's. The next test gets a cluster
        # restored from the ready state instead of waiting for it.
        fault.skip_the_return(f"{target} not waited for after {together.fault}")
    fault(together.make(target))
    _settle(
        cluster,
        pair,
        lambda placement: moved_together(c, target, placement),
        lambda placement, waited: together_failure(c, together, target, placement, waited),
    )
    late = fault.heal()
    _no_violations(cluster_sampler, late)


@pytest.mark.dcn_cases("apart", cases.anti_colocations)
def test_anti_colocation_holds_with_a_node_fewer(
    apart: AntiColocationCase | None, fault_cluster: Cluster, cluster_sampler: ClusterSampler, fault: FaultInjector
) -> None:
    """Lose the node the kept-apart resource runs on: with one node fewer it
    must find another node that is not its rival's, never its rival's."""
    assert apart is not None  # skipped cases have none
    cluster = fault_cluster
    c = apart.constraint
    pair = (c.rsc, c.with_rsc)
    before = placement_of(cluster.state(), pair)
    kept, rival = before[c.rsc], before[c.with_rsc]
    if len(kept) != 1 or not rival or kept[0] in rival:
        _fail(apart_before(c, before))
    target = kept[0]
    members = [n.name for n in cluster.members()]
    if len(members) < 3:
        pytest.skip(f"needs 3 members or more: with {len(members)}, losing {target} leaves only {c.with_rsc}'s node")
    if not refuge(cluster.spec, c, members, target, rival):
        pytest.skip(
            f"with {target} lost, {c.rsc} may run on no member: {c.with_rsc} runs on {', '.join(rival)} "
            "and the spec bans it from the others"
        )
    fault.skip_the_return(f"{target} not waited for after power-off")  # as in the case above
    fault(PowerOff(target))
    _settle(
        cluster,
        pair,
        lambda placement: kept_apart(c, target, placement),
        lambda placement, waited: apart_failure(c, target, placement, waited),
    )
    late = fault.heal()
    _no_violations(cluster_sampler, late)


@pytest.mark.dcn_cases("preference", cases.preferences)
def test_returning_node(
    preference: PreferenceCase | None, fault_cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """After the preferred node a resource left comes back (fenced, powered
    on, rejoined), the resource stays where it went when its stickiness
    outweighs its location preference, and goes back when the preference
    weighs more (the case's ``why`` says which, from the spec's values)."""
    assert preference is not None  # skipped cases have none
    cluster = fault_cluster
    c = preference.constraint
    if c.node not in [n.name for n in cluster.members()]:
        pytest.skip(f"{c.rsc} prefers {c.node}, which is not a cluster member")
    # Only the loss of the preferred node itself can tell stickiness from
    # preference: from any other node the resource has no reason to return,
    # whatever the scores. Earlier cases leave it wherever they moved it, so
    # put it there first (no constraint is left), before the observers arm.
    cluster.place(c.rsc, c.node)
    cluster_sampler: ClusterSampler = request.getfixturevalue("cluster_sampler")
    fault: FaultInjector = request.getfixturevalue("fault")
    # This test is about what happens once the node is back: always wait for
    # the healthy cluster, even when no later test needs it.
    fault.wait_healthy = True
    fault(PowerOff(c.node))
    placement = _settle(
        cluster,
        (c.rsc,),
        lambda placement: moved_off(c.rsc, c.node, placement),
        lambda placement, waited: not_moved_failure(preference, placement, waited),
    )
    (moved_to,) = placement[c.rsc]
    late = fault.heal()  # powers the node on and waits until the cluster has converged with it
    wrong = return_failure(preference, moved_to, placement_of(cluster.state(), (c.rsc,))[c.rsc])
    if wrong:
        _fail(wrong)
    _no_violations(cluster_sampler, late)
