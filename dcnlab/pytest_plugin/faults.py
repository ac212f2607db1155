"""pytest glue for faults and their observers.

Fixtures (all function-scoped; observers are armed before any fault):

- ``timeline``: the test's :class:`~dcnlab.observe.timeline.Recorder`. At teardown
  it is written to ``timeline.json`` in the test's tmp dir, shown as a report
  section and attached to Allure when Allure is on.
- ``cluster_sampler``: a started :class:`~dcnlab.observe.sampler.ClusterSampler`.
- ``probes``: a started :class:`~dcnlab.observe.probe.ClientProbe` against every
  certified workload's ``client:`` endpoint in the spec (none: it probes
  nothing); it names who answered by MAC. ``probes.record(timeline)`` stops
  it and puts the client events on the timeline (teardown does it otherwise).
- ``fault``: a :class:`~dcnlab.faults.injector.FaultInjector`; ``fault(PowerOff("dcn1"))`` injects.
  Teardown heals every fault (in reverse order), collects what cut-off nodes
  recorded, waits until the cluster is healthy again when the next test takes
  it as it is (else leaves the faulted nodes down when nothing uses them before
  the cluster is renewed: docs/ready-cache.md), and keeps the nodes'
  console logs and journals. ``fault.skip_the_return(why)`` before the heal
  skips that wait when the session has a ready state: the next test gets a
  cluster restored from it (for cases that do not certify the node's return).
- ``case_report``: writes what a failover run leaves for a reviewer from its
  :class:`~dcnlab.certify.failover.FailoverResult` s (one per workload it
  judges): ``verdict.json``, ``timeline.svg`` and ``timing.json`` in the case's
  tmp dir (``verdict-WORKLOAD.json``... for several), each verdict as a
  report section, its record in the run's timing report, and the Allure
  parameters and attachments. ``case_report.step`` names a case's phases as Allure steps.

They act on ``fault_cluster``, the session ``cluster`` by default: override
``fault_cluster`` in a module or class to aim them at another cluster (a
deliberately broken one, say) without booting the session fleet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from dcnlab.certify.failover import FailoverResult
from dcnlab.certify.workloads import endpoints, unmeasured
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.core.errors import DcnlabError, FaultError
from dcnlab.faults.injector import CertifiedReturns, FaultInjector
from dcnlab.observe.probe import ClientProbe, ProbeSettings
from dcnlab.observe.sampler import ClusterSampler
from dcnlab.observe.timeline import Recorder
from dcnlab.pytest_plugin import allure_glue
from dcnlab.pytest_plugin.plugin import (
    FAULT_PHASES,
    next_fleet_user_renews,
    next_test_reuses_the_cluster,
    tests_after,
    xdist_worker,
)
from dcnlab.ready.session import SessionCluster
from dcnlab.report.chart import chart_of, client_spans
from dcnlab.report.environment import environment_of
from dcnlab.report.timing import CaseRecord, RunReport

# Seconds (before the accelerator's scale) a case's client probe may run.
PROBE_LIMIT = 900.0


@pytest.fixture
def fault_cluster(cluster: Cluster) -> Cluster:
    """The cluster the fault fixtures act on: the session ``cluster``. A
    direct dependency, so tests using it are known to need the session fleet
    (tests/integration/conftest.py orders them after those with their own)."""
    return cluster


@pytest.fixture
def timeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    path = tmp_path / "timeline.json"
    recorder.dump(path)
    table = recorder.table()
    request.node.add_report_section("teardown", "timeline", f"{table}\n(saved in {path})")
    allure_glue.attach_file(path)


@pytest.fixture
def cluster_sampler(fault_cluster: Cluster, timeline: Recorder, tmp_path: Path) -> Iterator[ClusterSampler]:
    sampler = ClusterSampler(fault_cluster.fleet, fault_cluster.spec, timeline, raw_log=tmp_path / "samples.jsonl")
    with allure_glue.step("arm observers: cluster sampler (crm_mon and corosync on every node)"):
        sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
        if sampler.error is not None:
            raise FaultError(f"the cluster sampler failed: {sampler.error}") from sampler.error


@pytest.fixture
def probes(fault_cluster: Cluster, timeline: Recorder, tmp_path: Path) -> Iterator[ClientProbe]:
    fleet = fault_cluster.fleet
    probe = ClientProbe(
        fleet.hv.netns,
        endpoints(fault_cluster.spec, fleet.plan),
        tmp_path / "probe.jsonl",
        # A case watches its fault, then its heal (a node boots and rejoins):
        # under emulation that can take a quarter of an hour.
        ProbeSettings(max_duration=PROBE_LIMIT * fleet.accel.scale),
        macs=fleet.plan.mac_owners(fleet.spec.networks),
    )
    names = ", ".join(e.name for e in probe.endpoints) or "none: no workload declares a client"
    with allure_glue.step(f"arm observers: client probes ({names})"):
        probe.start()
    try:
        yield probe
    finally:
        result = probe.record(timeline)
        summary = tmp_path / "availability.json"
        summary.write_text(json.dumps({k: v.to_dict() for k, v in result.items()}, indent=1))
        allure_glue.attach_file(summary)


@pytest.fixture(scope="session")
def certified_returns(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> CertifiedReturns:
    """Which case certified each workload's return after a fenced node loss,
    for the whole run: the pytest-xdist workers share it through a file in
    the run's base temporary directory (the parent of each worker's own, as
    xdist documents for work done once per run)."""
    if xdist_worker(pytestconfig):
        return CertifiedReturns(tmp_path_factory.getbasetemp().parent / "dcnlab-certified-returns.json")
    return CertifiedReturns()


@pytest.fixture
def fault(
    fault_cluster: Cluster,
    timeline: Recorder,
    cluster_sampler: ClusterSampler,
    probes: ClientProbe,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[FaultInjector]:
    """Inject faults with ``fault(SomeFault(...))``; all are healed, and the
    cluster is healthy again, before the next test."""
    # The session's cluster can be replaced by one restored from its
    # ready-state entry (skip_the_return); another cluster cannot.
    session = None
    if "session_cluster" in request.fixturenames:
        sc: SessionCluster = request.getfixturevalue("session_cluster")
        session = sc if sc.state is not None and sc.current is fault_cluster else None
    injector = FaultInjector(
        fault_cluster,
        timeline,
        cluster_sampler,
        tmp_path / "logs",
        renewable=session is not None,
        returns_certified=request.getfixturevalue("certified_returns") if session is not None else None,
    )
    # Every fault is healed; waiting until the cluster is healthy again is for
    # the tests that follow. When none of them uses a cluster, the session is
    # about to tear the fleet down, and after a destructive test, or before
    # one, the next test gets a fresh cluster: under TCG that wait costs
    # minutes (162 s after a power-off in a CI dry run).
    following, complete = tests_after(request.node)
    reused = next_test_reuses_the_cluster(request.node, following, complete)
    injector.wait_healthy = reused
    # A node whose return is skipped may stay down when the next test on the
    # fleet takes the cluster (renewed first) or there is none.
    injector.nodes_replaced_next = next_fleet_user_renews(following, complete)
    try:
        yield injector
    finally:
        try:
            injector.heal_after_test(next_takes_cluster=reused)
        finally:
            request.node.stash[FAULT_PHASES] = injector.phases
            if session is not None and injector.renewal:
                session.spoiled = session.spoiled or injector.renewal
            try:
                missing = injector.collect_artifacts()
            except DcnlabError as err:
                missing = [str(err)]
            if missing:
                request.node.add_report_section("teardown", "logs not collected", "\n".join(missing))


class CaseArtifacts:
    """What a failover case leaves for a reviewer (see ``case_report``)."""

    step = staticmethod(allure_glue.step)

    def __init__(
        self,
        cluster: Cluster,
        report: RunReport,
        injector: FaultInjector,
        request: pytest.FixtureRequest,
        repeat: int,
        case_dir: Path,
    ) -> None:
        self.cluster = cluster
        self.report = report
        self.injector = injector
        self.request = request
        self.repeat = repeat
        self.dir = case_dir

    def __call__(self, results: Sequence[FailoverResult], suite: str = "failover") -> None:
        """Write what a run leaves: per judged workload its verdict, chart and
        timing record (``verdict.json``..., ``verdict-WORKLOAD.json``... when
        the run judges several), and once the spec, crm_mon before and after,
        and the faulted node's journal and console."""
        if not results:
            return
        cluster = self.cluster
        first = results[0]
        target = first.target
        spec_path = Path(str(cluster.spec.path))
        allure_glue.parameter("image", f"{cluster.fleet.image.recipe} {cluster.fleet.image.digest}")
        allure_glue.parameter("spec", spec_path.name)
        allure_glue.attach_file(spec_path, "cluster spec")
        several = len(results) > 1
        for result in results:
            self._one(result, suite, f"-{result.case.workload.id}" if several else "")
        allure_glue.attach_text(first.crm_before, "crm_mon before the fault", "xml")
        # From a node that stayed up: the target may still be booting.
        allure_glue.attach_text(cluster.crm_mon_xml(last_resort=target), "crm_mon after the heal", "xml")
        # The affected node's side of the story: its cluster journal since the
        # fault (when it could be read) and its serial console (boot after a fence).
        for path in sorted((self.dir / "journal").glob("*.txt")):
            allure_glue.attach_file(path, f"journal of {path.name.split('.')[0]} since the fault")
        allure_glue.attach_tail(cluster.fleet.console_log(target), f"console of {target} (last lines)")

    def record(self, name: str, data: dict[str, Any]) -> None:
        """Keep ``data`` as ``NAME.json`` in the case's directory and attach it
        to the Allure result: a case's verdict outside the failover suite."""
        text = json.dumps(data, indent=1)
        (self.dir / f"{name}.json").write_text(text)
        allure_glue.attach_text(text, name, "json")

    def _one(self, result: FailoverResult, suite: str, part: str) -> None:
        cluster, case, verdict, timings = self.cluster, result.case, result.verdict, result.timings
        workload, target, injected = case.workload, result.target, result.injected
        of = f" of {workload.id}" if part else ""
        if not result.measured:
            allure_glue.parameter(f"client downtime{of}", f"not measured: {unmeasured(workload)}")
        text = json.dumps(
            {
                **verdict.to_dict(),
                "why": case.expectation.why if case.expectation else "",
                "timings": timings.to_dict(),
            },
            indent=1,
        )
        (self.dir / f"verdict{part}.json").write_text(text)
        chart = chart_of(
            f"{case.fault} on {target}: {workload.id}",
            result.events,
            injected,
            {name: client_spans(av, injected.t) for name, av in result.availability.items()},
            sorted(cluster.fleet.nodes),
            timings=timings,
        )
        (self.dir / f"timeline{part}.svg").write_text(chart.svg())
        self.request.node.add_report_section("call", f"verdict{of}", verdict.message())
        record = CaseRecord.from_verdict(
            test=self.request.node.nodeid,
            suite=suite,
            verdict=verdict,
            timings=timings,
            events=result.events,
            fault_t=injected.t,
            workload=workload.id,
            repeat=self.repeat,
            restore_seconds=self.injector.restore_seconds,
            unmeasured={} if result.measured else {"downtime": unmeasured(workload)},
        )
        self.report.add(record)
        (self.dir / f"timing{part}.json").write_text(json.dumps(asdict(record), indent=1))
        allure_glue.attach_file(self.dir / f"timeline{part}.svg", f"timeline chart{of}")
        allure_glue.attach_file(self.dir / f"timing{part}.json", f"timing{of}")
        allure_glue.attach_file(self.dir / f"verdict{part}.json", f"verdict{of}")


@pytest.fixture
def case_report(
    fault_cluster: Cluster,
    fault: FaultInjector,
    timing_report: RunReport,
    dcn_repeat: int,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> CaseArtifacts:
    """Writes a failover case's artifacts from its result (see the module's docstring)."""
    if timing_report.environment is None:
        # Before the fault (this fixture is set up before the test body runs):
        # afterwards a node may be off or still booting.
        timing_report.environment = environment_of(fault_cluster.fleet, fault_cluster.spec)
    return CaseArtifacts(fault_cluster, timing_report, fault, request, dcn_repeat, tmp_path)
