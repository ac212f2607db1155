"""The fault fixture's injector without VMs: skipping the node's return when
the next test can get a restored cluster, and the clock of where a case's
time went. A stand-in cluster with no fleet: any call that would reach a
VM (waiting for health, a node watch) fails the test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dcnlab.faults.base import Fault
from dcnlab.faults.injector import CertifiedReturns, FaultInjector
from dcnlab.observe.timeline import ClockAnchor, Recorder


class Noted(Fault):
    kind = "noted"

    def __init__(self) -> None:
        super().__init__("dcn1")
        self.calls: list[str] = []

    def _inject(self, ctx: Any) -> None:
        self.calls.append("inject")

    def _heal(self, ctx: Any) -> None:
        self.calls.append("heal")


def injector(tmp_path: Path, *, renewable: bool) -> FaultInjector:
    cluster = SimpleNamespace(fleet=None)  # no fleet: a wait for health would fail
    sampler = SimpleNamespace(replay_with=lambda views: pytest.fail("no node was watched"))
    return FaultInjector(
        cluster,  # type: ignore[arg-type]
        Recorder(ClockAnchor(0.0, 0.0)),
        sampler,  # type: ignore[arg-type]
        tmp_path,
        renewable=renewable,
    )


def test_skipping_the_return_heals_without_waiting_for_health(tmp_path: Path) -> None:
    inj = injector(tmp_path, renewable=True)
    assert inj.skip_the_return("dcn1 not waited for after power-off")
    assert inj.renewal == "dcn1 not waited for after power-off"
    f = inj(Noted())
    inj.heal()  # would fail reaching for the cluster if it waited for health
    assert f.calls == ["inject", "heal"]
    assert inj.restore_seconds is None
    assert set(inj.phases) == {"fault", "heal", "health"}
    assert inj.phases["health"] == 0.0
    assert inj.phases["fault"] >= 0.0


def test_no_ready_state_no_shortcut(tmp_path: Path) -> None:
    inj = injector(tmp_path, renewable=False)
    assert not inj.skip_the_return("why")
    assert inj.wait_healthy
    assert inj.renewal == ""


def test_the_shortcut_may_be_chosen_once_the_fault_played_out(tmp_path: Path) -> None:
    # A case decides from what its fault did (was the node fenced?): the
    # heal reads the choice when it runs, not when the fault was injected.
    inj = injector(tmp_path, renewable=True)
    f = inj(Noted())
    assert inj.wait_healthy
    assert inj.skip_the_return("dcn1 not waited for after kill-controld")
    inj.heal()  # would fail reaching for the cluster if it waited for health
    assert f.calls == ["inject", "heal"]
    assert not inj.skip_the_return("too late: the heal has run")
    assert inj.renewal == "dcn1 not waited for after kill-controld"


@pytest.mark.parametrize("replaced_next", [True, False])
def test_a_skipped_return_leaves_nodes_down_only_when_nothing_uses_them_first(
    tmp_path: Path, replaced_next: bool
) -> None:
    inj = injector(tmp_path, renewable=True)
    inj.nodes_replaced_next = replaced_next
    assert inj.skip_the_return("why")
    assert inj.ctx.nodes_replaced is replaced_next


@pytest.mark.parametrize(
    ("next_takes_cluster", "replaced_next", "left_down"),
    [
        (False, True, True),  # the next cluster test gets a fresh one, nothing uses the fleet first
        (True, True, False),  # the next test takes the cluster as it is: bring the node back
        (False, False, False),  # a fleet test comes first and would meet the node down
    ],
)
def test_the_teardown_heal_leaves_nodes_down_only_when_they_are_replaced_next(
    tmp_path: Path, next_takes_cluster: bool, replaced_next: bool, left_down: bool
) -> None:
    inj = injector(tmp_path, renewable=True)
    inj.wait_healthy = False  # the stand-in has no cluster to wait for
    inj.nodes_replaced_next = replaced_next
    f = inj(Noted())
    inj.heal_after_test(next_takes_cluster=next_takes_cluster)
    assert f.calls == ["inject", "heal"]
    assert inj.ctx.nodes_replaced is left_down


def test_the_session_shares_its_record_of_certified_returns(tmp_path: Path) -> None:
    record = CertifiedReturns()
    inj = FaultInjector(
        SimpleNamespace(fleet=None),  # type: ignore[arg-type]
        Recorder(ClockAnchor(0.0, 0.0)),
        SimpleNamespace(),  # type: ignore[arg-type]
        tmp_path,
        renewable=True,
        returns_certified=record,
    )
    inj.returns_certified.record("web", "power-off-web")
    assert record.get("web") == "power-off-web"
    assert record.get("app") == ""


def test_certified_returns_are_shared_through_a_file(tmp_path: Path) -> None:
    # Two workers of one run: each its own object on the same file.
    path = tmp_path / "returns.json"
    gw0, gw1 = CertifiedReturns(path), CertifiedReturns(path)
    assert gw1.get("web") == ""
    gw0.record("web", "power-off-web")
    assert gw1.get("web") == "power-off-web"
    # The first case recorded for a workload stays, whoever records later.
    gw1.record("web", "hard-reset-web")
    gw1.record("app", "power-off-app")
    assert gw0.get("web") == gw1.get("web") == "power-off-web"
    assert gw0.get("app") == "power-off-app"
    assert json.loads(path.read_text()) == {"app": "power-off-app", "web": "power-off-web"}


def test_certified_returns_without_a_file_stay_in_the_process() -> None:
    mine = CertifiedReturns()
    mine.record("web", "power-off-web")
    mine.record("web", "hard-reset-web")
    assert mine.get("web") == "power-off-web"
    assert CertifiedReturns().get("web") == ""
