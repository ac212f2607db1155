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
- ``fault``: a :class:`FaultInjector`; ``fault(PowerOff("dcn1"))`` injects.
  Teardown heals every fault (in reverse order), collects what cut-off nodes
  recorded, waits until the cluster is healthy again, and keeps the nodes'
  console logs and journals. ``fault.skip_the_return(why)`` before the fault
  skips that wait when the session has a ready state: the next test gets a
  cluster restored from it (for cases that do not certify the node's return).

They act on ``fault_cluster``, the session ``cluster`` by default: override
``fault_cluster`` in a module or class to aim them at another cluster (a
deliberately broken one, say) without booting the session fleet.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcnlab.certify.workloads import endpoints
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.invariants import View, Violation
from dcnlab.core.errors import DcnlabError, FaultError
from dcnlab.faults.faults import Fault, FaultContext, Injected, injected
from dcnlab.observe.artifacts import collect_logs
from dcnlab.observe.probe import ClientProbe, ProbeSettings
from dcnlab.observe.sampler import ClusterSampler, NodeWatch
from dcnlab.observe.timeline import EventKind, Recorder
from dcnlab.pytest_plugin import allure_glue
from dcnlab.pytest_plugin.plugin import FAULT_PHASES, SessionCluster, next_test_reuses_the_cluster

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


class FaultInjector:
    """Injects faults into one cluster and undoes them all.

    ``watch=True`` first arms a :class:`NodeWatch` on the faulted node (for
    faults that cut it off from the harness); its views are collected after
    the heal and merged with the sampler's to re-check the invariants:
    :meth:`heal` returns the violations only that merge could see, and puts
    them on the timeline.

    ``wait_healthy`` (set before injecting): after the heal, wait until the
    cluster has converged again. Turn it off only for a throwaway cluster
    (a deliberately broken one the test tears down anyway).
    """

    def __init__(
        self,
        cluster: Cluster,
        recorder: Recorder,
        sampler: ClusterSampler,
        artifacts: Path,
        *,
        renewable: bool = False,
    ) -> None:
        self.ctx = FaultContext.of(cluster, recorder)
        self.sampler = sampler
        self.artifacts = artifacts
        self.faults: list[Fault] = []
        self.late_violations: list[Violation] = []
        self.restore_seconds: float | None = None
        self._stack = contextlib.ExitStack()
        self._watched: list[View] = []
        self._first: Injected | None = None
        self.wait_healthy = True
        self._armed_wall = time.time()
        # Where the test's time went (CasePhases): the first fault's
        # monotonic time, then how long it played out, healed and recovered.
        self._first_at: float | None = None
        self.phases: dict[str, float] = {}
        # Whether the next test can get a cluster restored from the
        # ready-state cache, and why it will (skip_the_return).
        self._renewable = renewable
        self.renewal = ""
        self._nodes: set[str] = set()  # the nodes faults were injected on

    def __call__(self, fault: Fault, *, watch: bool = False) -> Fault:
        watcher = None
        if watch:
            if fault.node is None:
                raise FaultError(f"{fault.name} names no node to watch")
            watcher = NodeWatch(self.ctx.fleet.node(fault.node), self.ctx.recorder).start()

        def collect() -> None:
            if watcher is not None:
                self._watched.extend(watcher.collect())

        # Only the first fault waits for health: it heals last (ExitStack order).
        wait = self.wait_healthy and not self.faults
        if self._first_at is None:
            self._first_at = time.monotonic()
        if fault.node is not None:
            self._nodes.add(fault.node)
        result = self._stack.enter_context(injected(fault, self.ctx, wait_healthy=wait, on_healed=collect))
        if not self.faults:
            self._first = result
        self.faults.append(fault)
        return fault

    def skip_the_return(self, why: str) -> bool:
        """Heal without waiting for the faulted node to come back and the
        cluster to converge: the next test gets a cluster restored from the
        ready-state cache instead (14-15 s against a boot and a rejoin of a
        minute or more under TCG; its health check is the same). Call before
        injecting. Returns whether it will: only when the session has a
        ready state to restore. A case that certifies the return itself (a
        fail-back, a restart on rejoin) must keep the slow path."""
        if not self._renewable or self.faults:
            return False
        self.wait_healthy = False
        self.renewal = why
        return True

    def heal(self) -> list[Violation]:
        """Heal every fault now (the last injected first), wait until the
        cluster is healthy, and re-check the invariants with what watched
        nodes recorded. Idempotent; teardown calls it too."""
        if not self.faults:
            return self.late_violations
        stack, self._stack = self._stack, contextlib.ExitStack()
        self.faults = []
        started = time.monotonic()
        try:
            stack.close()
        finally:
            if self._first is not None:
                self.restore_seconds = self._first.restore_seconds
            if self._first_at is not None and not self.phases:
                health = self._first.waited if self._first is not None else 0.0
                self.phases = {
                    "fault": started - self._first_at,
                    "heal": max(0.0, time.monotonic() - started - health),
                    "health": health,
                }
        if self._watched:
            self.late_violations = self.sampler.replay_with(self._watched)
            seen: set[tuple[str, str, str | None, tuple[str, ...]]] = set()
            for v in self.late_violations:
                if v.key not in seen:
                    seen.add(v.key)
                    self.ctx.recorder.record(
                        EventKind.INVARIANT_VIOLATED,
                        "invariants:replay",
                        node=",".join(v.nodes),
                        resource=v.resource,
                        detail=v.detail,
                        t=v.t,
                    )
        return self.late_violations

    def collect_artifacts(self) -> list[str]:
        # Nodes whose return was skipped are booting: SSH would wait for them.
        booting = self._nodes if self.renewal else set()
        return collect_logs(self.ctx.fleet, self.artifacts, self._armed_wall, booting=booting)


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
    injector = FaultInjector(fault_cluster, timeline, cluster_sampler, tmp_path / "logs", renewable=session is not None)
    # Every fault is healed; waiting until the cluster is healthy again is for
    # the tests that follow. When none of them uses a cluster, the session is
    # about to tear the fleet down, and after a destructive test, or before
    # one, the next test gets a fresh cluster: under TCG that wait costs
    # minutes (162 s after a power-off in a CI dry run).
    injector.wait_healthy = next_test_reuses_the_cluster(request.session.items, request.node)
    try:
        yield injector
    finally:
        try:
            injector.heal()
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
