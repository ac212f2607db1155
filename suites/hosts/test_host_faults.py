"""Host faults, on a fleet over several hosts (``--dcn-lab-hosts N``,
docs/multihost.md): each host but the first cut off from the others, and
lost whole, with what Pacemaker must do then declared for any spec
(dcnlab/certify/hostfaults.py). With one fence device per host, nothing can
fence an unreachable host's nodes, so:

- every fence of its nodes fails and none is reported done (a success would
  be a fence that never happened);
- the spec's resources that ran there are not started anywhere else while
  the host is unreachable (blocked, not recovered);
- the spec's resources on the other hosts stay where they were.

The cases come from the fleet's hosts (``host-partition-h2``,
``host-loss-h2``...; markers ``host_fault``, ``host_partition``,
``host_loss``; the first partition is the ``smoke`` case). On one host the
suite shows one case, skipped with the reason. The heal brings the host back
and fences its nodes through its own device (their state is then known);
when a later test takes the cluster as it is, it waits until the cluster has
converged (docs/ready-cache.md). A cluster that does otherwise fails the case
with a message starting ``FAIL:`` that names the declared outcome and each
departure from it.
"""

from __future__ import annotations

import pytest

from dcnlab.certify import CaseReport, Cluster, cases
from dcnlab.certify.hostfaults import HostFaultCase, play_host_fault
from dcnlab.faults import FaultInjector


@pytest.mark.dcn_cases("case", cases.host_faults)
def test_host_fault(
    case: HostFaultCase | None, fault_cluster: Cluster, fault: FaultInjector, case_report: CaseReport
) -> None:
    assert case is not None  # skipped rows have none
    with case_report.step(f"{case.id}: inject and watch from another host"):
        outcome = play_host_fault(fault_cluster, case, fault, progress=fault_cluster.progress)
    with case_report.step(f"verdict: {'PASS' if outcome.passed else 'FAIL'}"):
        case_report.record("verdict", outcome.to_dict())
    if not outcome.passed:
        __tracebackhide__ = True
        raise AssertionError(outcome.message())
    with case_report.step(f"heal: {case.host} back, its nodes fenced through its own device"):
        fault.heal()
