"""Markers shared by the certification suites: one per fault kind (power_off,
nic_cut, kill_workload...), smoke (the quick set) and node_loss (a node is
fenced and rebooted: minutes per case under TCG). The marker of each certified
workload (its id: ``-m web``) is registered by the plugin as the case tables
name it (dcnlab/certify/cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcnlab.certify import FAULT_KINDS, FailoverRun
from dcnlab.certify.constraints import ColocationCase, covering_run


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SkipRepeats(), "dcnlab-suites-skip-repeats")
    config.addinivalue_line("markers", "smoke: the quick set, run by CI")
    config.addinivalue_line("markers", "certification: every case of suites/ (set by suites/conftest.py)")
    config.addinivalue_line("markers", "node_loss: the faulted node is lost and fenced (minutes per case under TCG)")
    config.addinivalue_line("markers", "grow_shrink: nodes join and leave the running cluster")
    for kind in FAULT_KINDS:
        config.addinivalue_line("markers", f"{kind.replace('-', '_')}: the {kind} fault")


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
    # (The grow/shrink cases, the longest, stay last: moved first, both
    # pytest-xdist workers booted and joined a spare at once, and the web
    # node of one cluster, starved, was fenced in the middle of a join.)
    items.sort(key=lambda item: "cluster" in getattr(item, "fixturenames", ()))


class _SkipRepeats:
    # Registered apart: it must see what runs, after -k and -m have
    # deselected, while the markers above must be on before they do.
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        _skip_what_failover_certifies(items)


def _param(item: pytest.Item, name: str) -> object:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


def _skip_what_failover_certifies(items: list[pytest.Item]) -> None:
    # A colocation case whose fault a failover run of this session injects on
    # the same node, judging the pair's dependent, would only repeat that
    # run: its sampler checks the colocation at every sample and its verdict
    # that the pair ended on one node (dcnlab/certify/constraints.py,
    # covering_run). Skipped, naming the run; alone, the suite runs it.
    named = [(r, item.name) for item in items if isinstance(r := _param(item, "run"), FailoverRun)]
    for item in items:
        case = _param(item, "together")
        if not isinstance(case, ColocationCase):
            continue
        run = covering_run(case, [r for r, _name in named])
        if run is not None:
            name = next(n for r, n in named if r is run)
            item.add_marker(
                pytest.mark.skip(
                    reason=f"certified in this session by {name}: the same {case.fault} on the node of "
                    f"{case.constraint.rsc} and {case.constraint.with_rsc}, the colocation checked at every "
                    "sample and in its verdict"
                )
            )
