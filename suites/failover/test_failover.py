"""Failover certification: every fault on the node running each workload
of the spec (dcnlab/certify/workloads.py generates the cases from it), judged against
the expected outcome and the spec's thresholds (dcnlab/certify/verdict.py).

Select with markers: ``-m smoke`` (a few minutes), ``-m "not node_loss"``,
``-m power_off``, or a workload's id (``-m web``)... A workload with no
``client:`` in the spec is certified on cluster state, and its client
downtime is reported as not measured. A case fails with a message naming the
expectation, each observed value, and the timeline excerpt that shows it;
``verdict.json`` and ``timeline.json`` are kept in the case's tmp dir and in
the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from dcnlab.certify.outcome import heal_outage, wait_for_outcome
from dcnlab.certify.verdict import judge
from dcnlab.certify.workloads import (
    NODE_LOSS,
    FailoverCase,
    failover_cases,
    requirement_findings,
    unmeasured,
    workload_marker,
)
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.crm import parse_crm_mon
from dcnlab.cluster.thresholds import Thresholds, thresholds_for
from dcnlab.faults.injector import FaultInjector
from dcnlab.observe.journal import record_journals
from dcnlab.observe.probe import ClientProbe
from dcnlab.observe.sampler import ClusterSampler
from dcnlab.observe.timeline import Recorder, Timing, derive
from dcnlab.pytest_plugin import allure_glue
from dcnlab.pytest_plugin.plugin import fleet_nodes, session_spec
from dcnlab.report.chart import chart_of, client_spans
from dcnlab.report.environment import environment_of
from dcnlab.report.timing import CaseRecord, RunReport

# ------------------------------------------------------------------ the cases
#
# Generated from the session's spec at collection (dcnlab/certify/workloads.py): every
# certified workload x every fault, each with the outcome the configuration
# implies (docs/expectations.md) or the one the spec declares under
# certification.expect, and the reason. A cluster that behaves differently is
# what this suite exists to catch.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    spec = session_spec(config)
    cases = failover_cases(spec, config.option.dcn_networks, fleet_nodes(config))
    metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in cases])


def _marks(case: FailoverCase) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, case.fault.replace("-", "_"))]
    if workload_marker(case.workload.id):
        marks.append(getattr(pytest.mark, case.workload.id))
    if case.smoke:
        marks.append(pytest.mark.smoke)
    if case.node_loss:
        marks.append(pytest.mark.node_loss)
    if case.skip:
        marks.append(pytest.mark.skip(reason=case.skip))
    return marks


def test_failover(
    case: FailoverCase,
    fault_cluster: Cluster,
    timeline: Recorder,
    cluster_sampler: ClusterSampler,
    probes: ClientProbe,
    fault: FaultInjector,
    thresholds: dict[str, Thresholds],
    timing_report: RunReport,
    dcn_repeat: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    cluster = fault_cluster
    workload = case.workload
    rsc = workload.id
    # Skipped cases (nothing to kill, say) have neither.
    assert case.expectation is not None
    assert case.make is not None
    spec_path = Path(str(cluster.spec.path))
    allure_glue.parameter("image", f"{cluster.fleet.image.recipe} {cluster.fleet.image.digest}")
    allure_glue.parameter("spec", spec_path.name)
    allure_glue.attach_file(spec_path, "cluster spec")
    if workload.client is None:
        allure_glue.parameter("client downtime", f"not measured: {unmeasured(workload)}")
    if timing_report.environment is None:
        # Before the fault: afterwards a node may be off or still booting.
        timing_report.environment = environment_of(cluster.fleet, cluster.spec)
    before = cluster.crm_mon_xml()
    (target,) = parse_crm_mon(before).where(rsc)
    returning = case.fault in NODE_LOSS
    skipped_return = ""
    if returning and any(r.kind == "no-outage-on-return" and r.workload == rsc for r in cluster.spec.requirements):
        # The return is what the requirement is about: heal until the
        # cluster has converged with the node back, whatever comes next.
        fault.wait_healthy = True
    elif returning and fault.skip_the_return(f"{target} not waited for after {case.fault}"):
        # Nothing certifies this node's return: the next test gets a
        # cluster restored from the ready state rather than waiting for it.
        skipped_return = (
            f"{target}'s return (the next test gets a cluster restored from the ready state; "
            f"a no-outage-on-return requirement on {rsc} would certify the return)"
        )
    with allure_glue.step(f"inject {case.fault} on {target}, where {rsc} runs"):
        injected = fault(case.make(target)).injected_at
    assert injected is not None
    with allure_glue.step(f"observe until {rsc} settles ({case.expectation.outcome.value} expected)"):
        wait_for_outcome(case, cluster, timeline, probes, injected, target)
        record_journals(cluster.fleet, timeline, since=injected.lower - 5.0, save_dir=tmp_path / "journal")
    # Heal with the probes still running: the return of the node (a
    # fail-back, a restart on rejoin) is a second outage clients see, and the
    # report carries how long the return to a healthy cluster took.
    wait = "and wait for a healthy cluster" if fault.wait_healthy else "(the next test gets a fresh cluster)"
    with allure_glue.step(f"heal {case.fault} {wait}"):
        fault.heal()
    availability = probes.record(timeline)
    events = timeline.events()
    measured = rsc in availability
    outages = availability[rsc].outages if measured else ()
    timings = derive(events, rsc, outages, workload.members)
    if not measured:
        timings = replace(timings, downtime=Timing("client downtime", None, why=unmeasured(workload)))
    healed = heal_outage(events, outages, injected, measured, workload, skipped_return)
    timings = replace(timings, extra=(*timings.extra, healed))
    limits = thresholds_for(case.fault, thresholds)
    verdict = judge(case.expectation, events, timings, limits, target, workload.members, clients=measured)
    required = requirement_findings(cluster.spec, workload, case.fault, timings, events, injected)
    verdict = replace(verdict, findings=(*verdict.findings, *required))
    text = json.dumps({**verdict.to_dict(), "why": case.expectation.why, "timings": timings.to_dict()}, indent=1)
    (tmp_path / "verdict.json").write_text(text)
    chart = chart_of(
        f"{case.fault} on {target}: {rsc}",
        events,
        injected,
        {name: client_spans(av, injected.t) for name, av in availability.items()},
        sorted(cluster.fleet.nodes),
        timings=timings,
    )
    (tmp_path / "timeline.svg").write_text(chart.svg())
    request.node.add_report_section("call", "verdict", verdict.message())
    record = CaseRecord.from_verdict(
        test=request.node.nodeid,
        suite="failover",
        verdict=verdict,
        timings=timings,
        events=events,
        fault_t=injected.t,
        workload=rsc,
        repeat=dcn_repeat,
        restore_seconds=fault.restore_seconds,
        unmeasured={} if measured else {"downtime": unmeasured(workload)},
    )
    timing_report.add(record)
    (tmp_path / "timing.json").write_text(json.dumps(asdict(record), indent=1))
    allure_glue.attach_file(tmp_path / "timeline.svg", "timeline chart")
    allure_glue.attach_file(tmp_path / "timing.json", "timing")
    allure_glue.attach_file(tmp_path / "verdict.json", "verdict")
    allure_glue.attach_text(before, "crm_mon before the fault", "xml")
    # From a node that stayed up: the target may still be booting.
    survivor = next((n for n in cluster.members() if n.name != target), None)
    allure_glue.attach_text(cluster.crm_mon_xml(via=survivor), "crm_mon after the heal", "xml")
    # The affected node's side of the story: its cluster journal since the
    # fault (when it could be read) and its serial console (boot after a fence).
    for path in sorted((tmp_path / "journal").glob("*.txt")):
        allure_glue.attach_file(path, f"journal of {path.name.split('.')[0]} since the fault")
    allure_glue.attach_tail(cluster.fleet.console_log(target), f"console of {target} (last lines)")
    with allure_glue.step(f"verdict: {'PASS' if verdict.passed else 'FAIL'}"):
        assert verdict.passed, verdict.message()
        broken = [str(v) for v in cluster_sampler.violations]
        assert not broken, (
            "FAIL: violated while the fault played out:\n  "
            + "\n  ".join(broken)
            + (f"\ntimeline (seconds from the fault):\n{verdict.excerpt}")
        )
