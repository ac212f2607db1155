"""Markers shared by the certification suites: one per fault kind (power_off,
nic_cut, kill_workload...), one per certified workload of the session's spec
(its id: ``-m web``), smoke (the quick set) and node_loss (a node is fenced
and rebooted: minutes per case under TCG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcnlab.certify.workloads import workload_marker, workloads
from dcnlab.cluster.thresholds import FAULT_KINDS
from dcnlab.pytest_plugin.plugin import session_spec


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smoke: the quick set, run by CI")
    config.addinivalue_line("markers", "certification: every case of suites/ (set by suites/conftest.py)")
    config.addinivalue_line("markers", "node_loss: the faulted node is lost and fenced (minutes per case under TCG)")
    config.addinivalue_line("markers", "grow_shrink: nodes join and leave the running cluster")
    for kind in FAULT_KINDS:
        config.addinivalue_line("markers", f"{kind.replace('-', '_')}: the {kind} fault")
    # Registered before collection, so --strict-markers accepts the spec's own ids.
    for w in workloads(session_spec(config)):
        if workload_marker(w.id):
            config.addinivalue_line("markers", f"{w.id}: cases on workload {w.id} ({w.kind})")


@pytest.fixture(autouse=True)
def _repeated(dcn_repeat: int) -> int:
    """Puts ``dcn_repeat`` into every case's fixtures, so ``--dcn-repeat N``
    repeats every certification case (bench/flakiness.py), not only those
    that ask for it to label their timings."""
    return dcn_repeat


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every certification case carries `certification`, so one session can
    # run the harness's own tests and the suites' smoke set on one fleet and
    # one cluster: `pytest tests suites -m "not certification or smoke"`
    # (./dev test).
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.certification)
    # The image preflight starts and stops the workload's own service on every
    # node: it must see the fleet before the session's cluster exists and
    # Pacemaker owns those services. Stable: the order is otherwise kept.
    items.sort(key=lambda item: "cluster" in getattr(item, "fixturenames", ()))
