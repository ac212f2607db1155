"""The fault injector: faults on one cluster, every one healed, the cluster
healthy again afterwards, and what cut-off nodes saw merged back in. The
``fault`` fixture (:mod:`dcnlab.pytest_plugin.faults`) hands one to a test;
a script without pytest uses it the same way."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.invariants import View, Violation
from dcnlab.core.errors import FaultError
from dcnlab.faults.base import Fault, FaultContext, Injected, injected
from dcnlab.observe.artifacts import collect_logs
from dcnlab.observe.sampler import ClusterSampler, NodeWatch
from dcnlab.observe.timeline import EventKind, Recorder


class CertifiedReturns:
    """Which case certified each workload's return after a fenced node loss
    (the node powered on, booted, rejoined) in this run, so that later cases
    of the workload can skip the same return and name that case
    (:func:`dcnlab.certify.failover.run_failover`).

    With ``path`` the record is the run's, not only this process's: the
    pytest-xdist workers of one run share the file (under the run's base
    temporary directory), each on its own fleet with a cluster of the same
    spec and image. The first case recorded for a workload stays."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._mine: dict[str, str] = {}

    def get(self, workload: str) -> str:
        """The case that certified ``workload``'s return, "" when none has."""
        if workload in self._mine:
            return self._mine[workload]
        return self._shared().get(workload, "")

    def record(self, workload: str, case: str) -> None:
        if self.path is None:
            self._mine.setdefault(workload, case)
            return
        # Read, add and write under one exclusive lock: two workers recording
        # different workloads at once must not lose either.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            text = f.read()
            known: dict[str, str] = json.loads(text) if text.strip() else {}
            known.setdefault(workload, case)
            f.seek(0)
            f.truncate()
            f.write(json.dumps(known, indent=1, sort_keys=True))
        self._mine[workload] = known[workload]

    def _shared(self) -> dict[str, str]:
        if self.path is None or not self.path.exists():
            return {}
        with self.path.open() as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            text = f.read()
        return dict(json.loads(text)) if text.strip() else {}


class FaultInjector:
    """Injects faults into one cluster and undoes them all.

    ``watch=True`` first arms a :class:`NodeWatch` on the faulted node (for
    faults that cut it off from the harness); its views are collected after
    the heal and merged with the sampler's to re-check the invariants:
    :meth:`heal` returns the violations only that merge could see, and puts
    them on the timeline.

    ``wait_healthy`` (set before the heal): after the heal, wait until the
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
        returns_certified: CertifiedReturns | None = None,
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
        self._healed = False
        self.renewal = ""
        # Whether a skipped return may leave the faulted nodes down: no test
        # uses the fleet before the renewal replaces them (the fault fixture knows).
        self.nodes_replaced_next = False
        self._nodes: set[str] = set()  # the nodes faults were injected on
        # Which case of the run certified each workload's return after a node
        # loss: shared by the injectors of the session's clusters (the fault
        # fixture), so a later case of the same workload can skip the same
        # return and name that case.
        self.returns_certified = returns_certified if returns_certified is not None else CertifiedReturns()

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
        # Whether it does is read when it heals: a case may decide from what
        # the fault played out to (skip_the_return).
        first = not self.faults

        def wait() -> bool:
            return first and self.wait_healthy

        if self._first_at is None:
            self._first_at = time.monotonic()
        if fault.node is not None:
            self._nodes.add(fault.node)
        result = self._stack.enter_context(injected(fault, self.ctx, wait_healthy=wait, on_healed=collect))
        if not self.faults:
            self._first = result
        self.faults.append(fault)
        return fault

    @property
    def renewable(self) -> bool:
        """Whether :meth:`skip_the_return` would skip: the session has a ready
        state to restore the next test's cluster from, and the heal has not run."""
        return self._renewable and not self._healed

    def skip_the_return(self, why: str) -> bool:
        """Heal without waiting for the faulted node to come back and the
        cluster to converge: the next test gets a cluster restored from the
        ready-state cache instead (14-15 s against a boot and a rejoin of a
        minute or more under TCG; its health check is the same). Call before
        the heal (a case may decide from what its fault played out to).
        Returns whether it will: only when the session has a ready state to
        restore. A case that certifies the return itself (a
        fail-back, a restart on rejoin) must keep the slow path."""
        if not self.renewable:
            return False
        self.wait_healthy = False
        self.renewal = why
        self.ctx.nodes_replaced = self.nodes_replaced_next
        return True

    def heal_after_test(self, next_takes_cluster: bool) -> list[Violation]:
        """The heal at the test's teardown. Nothing observes the return any
        more: when the next test does not take the cluster as it is (it gets a
        fresh one, or none follows) and nothing uses the fleet before the
        cluster is renewed, the faulted nodes stay down, since a boot and rejoin
        now would be thrown away. Otherwise as :meth:`heal`."""
        if self.faults and not next_takes_cluster and self.nodes_replaced_next:
            self.ctx.nodes_replaced = True
        return self.heal()

    def heal(self) -> list[Violation]:
        """Heal every fault now (the last injected first), wait until the
        cluster is healthy, and re-check the invariants with what watched
        nodes recorded. Idempotent; teardown calls it too."""
        if not self.faults:
            return self.late_violations
        stack, self._stack = self._stack, contextlib.ExitStack()
        self.faults = []
        self._healed = True
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
