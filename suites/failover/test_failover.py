"""Failover certification: every fault on the node running each workload
of the spec (dcnlab/certify/cases.py tables the cases from it), judged against
the expected outcome and the spec's thresholds (dcnlab/certify/verdict.py).

Workloads the spec binds to one node share the faults that hit the node: the
fault runs once and each workload is judged on its own (``power-off-web+app``);
a kill-workload case runs alone. Select with markers: ``-m smoke`` (a few
minutes), ``-m "not node_loss"``, ``-m power_off``, or a workload's id
(``-m web``)... A workload with no ``client:`` in the spec is certified on
cluster state, and its client downtime is reported as not measured. A case
fails with a message naming the expectation, each observed value, and the
timeline excerpt that shows it; ``verdict.json`` and ``timeline.json`` are
kept in the case's tmp dir and in the report (``verdict-WORKLOAD.json`` when
the run judges several).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dcnlab.certify import (
    CaseReport,
    ClientProbe,
    Cluster,
    ClusterSampler,
    FailoverRun,
    Recorder,
    Thresholds,
    cases,
    run_failover,
)
from dcnlab.faults import FaultInjector

# The cases: every certified workload x every fault, generated from the
# session's spec at collection (dcnlab/certify/cases.py), each with the outcome
# the configuration implies (docs/expectations.md) or the one the spec declares
# under certification.expect, and the reason. A cluster that behaves
# differently is what this suite exists to catch.


@pytest.mark.dcn_cases("run", cases.failover)
def test_failover(
    run: FailoverRun,
    fault_cluster: Cluster,
    timeline: Recorder,
    cluster_sampler: ClusterSampler,
    probes: ClientProbe,
    fault: FaultInjector,
    thresholds: dict[str, Thresholds],
    case_report: CaseReport,
    tmp_path: Path,
) -> None:
    results = run_failover(
        run, fault_cluster, fault, timeline, probes, thresholds, tmp_path / "journal", step=case_report.step
    )
    case_report(results)
    failed = [r.verdict for r in results if not r.verdict.passed]
    with case_report.step(f"verdict: {'FAIL' if failed else 'PASS'}"):
        assert not failed, "\n\n".join(v.message() for v in failed)
        broken = [str(v) for v in cluster_sampler.violations]
        assert not broken, (
            "FAIL: violated while the fault played out:\n  "
            + "\n  ".join(broken)
            + f"\ntimeline (seconds from the fault):\n{results[0].verdict.excerpt}"
        )
