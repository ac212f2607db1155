"""The heals of every fault family and the restore rounds, on a fake provider,
fake guests and a fake cluster that refuse any call they had no reason to get."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeCluster, FakeGuests, FakeProvider, fleet_on_fake

from dcnlab.core.errors import FaultError, HypervisorError
from dcnlab.faults.base import FaultContext, restore
from dcnlab.faults.power import Freeze, GracefulShutdown, HardReset, PowerOff
from dcnlab.faults.process import KillProcess, ResourceFailure
from dcnlab.fleet.fleet import Fleet
from dcnlab.observe.timeline import ClockAnchor, EventKind, Recorder

Setup = tuple[Fleet, FakeProvider, FakeGuests, FakeCluster, FaultContext]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    fleet, provider = fleet_on_fake(tmp_path)
    guests = FakeGuests(fleet, provider)
    guests.attach(monkeypatch)
    cluster = FakeCluster(fleet, guests)
    ctx = FaultContext(fleet, Recorder(ClockAnchor(0.0, 0.0)), cluster)
    return fleet, provider, guests, cluster, ctx


def dom(fleet: Fleet, node: str) -> str:
    return fleet.node(node).domain


def test_power_off_heals_by_powering_on_and_starting_the_stack(fake: Setup) -> None:
    fleet, provider, guests, _cluster, ctx = fake
    fault = PowerOff("dcn1")
    fault.inject(ctx)
    guests.stack.discard("dcn1")  # a powered-off node's stack is down; nothing starts it at boot
    fault.heal(ctx)
    assert provider.calls == [("power", dom(fleet, "dcn1"), "off"), ("power", dom(fleet, "dcn1"), "on")]
    assert fleet.domain_state("dcn1") == "running"
    assert "dcn1" in guests.stack


def test_freeze_heals_by_resuming(fake: Setup) -> None:
    fleet, provider, _guests, _cluster, ctx = fake
    fault = Freeze("dcn2")
    fault.inject(ctx)
    fault.heal(ctx)
    assert [c[2] for c in provider.calls] == ["suspend", "resume"]
    assert fleet.domain_state("dcn2") == "running"


def test_a_freeze_fenced_meanwhile_heals_by_powering_on(fake: Setup) -> None:
    fleet, provider, guests, _cluster, ctx = fake
    fault = Freeze("dcn2")
    fault.inject(ctx)
    provider.power(dom(fleet, "dcn2"), "off")  # the cluster fenced it
    guests.stack.discard("dcn2")
    fault.heal(ctx)
    assert [c[2] for c in provider.calls] == ["suspend", "off", "on"]
    assert "dcn2" in guests.stack


def test_a_shutdown_that_never_finishes_is_cut_then_powered_on(fake: Setup) -> None:
    fleet, provider, guests, _cluster, ctx = fake
    fault = GracefulShutdown("dcn3")
    fault.inject(ctx)  # the fake's machine stays shutting-down
    guests.stack.discard("dcn3")
    fault.heal(ctx)
    assert [c[2] for c in provider.calls] == ["shutdown", "off", "on"]
    assert fleet.domain_state("dcn3") == "running"


def test_a_hard_reset_heal_leaves_a_running_member_alone(fake: Setup) -> None:
    _fleet, provider, guests, _cluster, ctx = fake
    fault = HardReset("dcn1")
    fault.inject(ctx)
    fault.heal(ctx)
    assert [c[2] for c in provider.calls] == ["reset"]  # running, stack up: nothing to do
    assert guests.commands == [("dcn1", "systemctl is-active corosync pacemaker")]


def test_a_kill_runs_in_the_guest_and_its_heal_restarts_the_stack(fake: Setup) -> None:
    _fleet, provider, guests, _cluster, ctx = fake
    fault = KillProcess("dcn2", "corosync")
    fault.inject(ctx)
    assert guests.commands == [("dcn2", "pkill --signal KILL --exact corosync")]
    guests.stack.discard("dcn2")
    fault.heal(ctx)
    assert "dcn2" in guests.stack
    assert provider.calls == []  # the machine itself was never touched


def test_a_resource_failure_is_told_to_pacemaker_and_cleaned_up(fake: Setup) -> None:
    _fleet, _provider, guests, cluster, ctx = fake
    cluster.where["web"] = ["dcn3"]
    fault = ResourceFailure("web")
    fault.inject(ctx)
    assert fault.node == "dcn3"
    fault.heal(ctx)
    sent = [text for _node, text in guests.commands]
    assert sent == ["crm_resource --fail --resource web --node dcn3", "crm_resource --cleanup --resource web"]


def test_restore_brings_every_node_back_and_records_the_cluster_healthy(fake: Setup) -> None:
    fleet, provider, guests, cluster, ctx = fake
    provider.power(dom(fleet, "dcn1"), "off")
    provider.power(dom(fleet, "dcn2"), "suspend")
    guests.stack.discard("dcn1")
    provider.calls.clear()
    seconds = restore(ctx)
    assert seconds >= 0
    assert sorted(provider.calls) == sorted(
        [("power", dom(fleet, "dcn1"), "on"), ("power", dom(fleet, "dcn2"), "resume")]
    )
    assert {fleet.domain_state(n) for n in fleet.nodes} == {"running"}
    assert guests.stack == set(fleet.nodes)
    assert ("dcn1", "crm_resource --cleanup") in guests.commands
    assert cluster.converged_calls == 1
    healthy = [e for e in ctx.recorder.events() if e.kind is EventKind.CLUSTER_HEALTHY]
    assert len(healthy) == 1
    assert "rounds" not in healthy[0].detail


def test_restore_goes_another_round_when_the_cluster_is_not_healthy_yet(fake: Setup) -> None:
    _fleet, _provider, _guests, cluster, ctx = fake
    cluster.not_converged = 1
    restore(ctx)
    assert cluster.converged_calls == 2
    notes = [e.detail for e in ctx.recorder.events() if e.kind is EventKind.NOTE and e.source == "restore"]
    assert notes == ["round 1 not healthy yet: not converged: dcn2 has failed actions"]
    (healthy,) = [e for e in ctx.recorder.events() if e.kind is EventKind.CLUSTER_HEALTHY]
    assert healthy.detail.endswith("(2 rounds)")


def test_restore_gives_up_at_its_deadline_naming_the_rounds_and_the_last_problem(fake: Setup) -> None:
    _fleet, _provider, _guests, cluster, ctx = fake
    cluster.not_converged = -1  # never
    with pytest.raises(FaultError, match=r"did not become healthy after the heal \(\d+ rounds\): not converged"):
        restore(ctx, timeout=100.0)  # x scale 0.01: one second
    assert cluster.converged_calls >= 1


def test_restore_stops_at_once_when_a_node_cannot_be_started(fake: Setup) -> None:
    fleet, provider, _guests, cluster, ctx = fake
    provider.power(dom(fleet, "dcn3"), "off")
    provider.fail_next = HypervisorError("cannot create domain: out of memory")
    with pytest.raises(FaultError, match=r"cannot bring every node back: dcn3: .*out of memory"):
        restore(ctx)
    assert cluster.converged_calls == 0
