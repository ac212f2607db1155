"""Every hypervisor-side fault's inject and heal, and the fleet's power verbs,
on a fake provider that refuses any call it had no reason to get."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fakes import FakeProvider, Refused, fleet_on_fake

from dcnlab.core.errors import FaultError, HypervisorError
from dcnlab.faults.base import Fault, FaultContext
from dcnlab.faults.hosts import HostLoss, HostPacketLoss, HostPartition
from dcnlab.faults.network import Isolate, NicDown, Partition
from dcnlab.faults.power import Freeze, GracefulShutdown, HardReset, PowerOff
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.provider import LINKS, PAUSE, POWER, NotApplicable
from dcnlab.observe.timeline import ClockAnchor, EventKind, Recorder


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Fleet, FakeProvider, FaultContext]:
    fleet, provider = fleet_on_fake(tmp_path)
    return fleet, provider, FaultContext(fleet, Recorder(ClockAnchor(0.0, 0.0)))


def domain(fleet: Fleet, node: str) -> str:
    return fleet.node(node).domain


def mac(fleet: Fleet, node: str, network: int) -> str:
    return fleet.node(node).plan.nics[network].mac.lower()


@pytest.mark.parametrize(
    ("fault", "action", "after"),
    [
        (PowerOff("dcn2"), "off", "shut-off"),
        (HardReset("dcn2"), "reset", "running"),
        (GracefulShutdown("dcn2"), "shutdown", "shutting-down"),
        (Freeze("dcn2"), "suspend", "paused"),
    ],
    ids=["power-off", "hard-reset", "shutdown", "freeze"],
)
def test_power_faults_inject_through_the_provider_only(
    fake: tuple[Fleet, FakeProvider, FaultContext], fault: Fault, action: str, after: str
) -> None:
    fleet, provider, ctx = fake
    event = fault.inject(ctx)
    assert provider.calls == [("power", domain(fleet, "dcn2"), action)]
    assert fleet.domain_state("dcn2") == after
    assert {fleet.domain_state(n) for n in ("dcn1", "dcn3")} == {"running"}
    assert event.kind is EventKind.FAULT_INJECTED
    assert event.node == "dcn2"


def test_nic_down_cuts_one_link_and_its_heal_plugs_it_back(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    fleet, provider, ctx = fake
    fault = NicDown("dcn1", 1)
    fault.inject(ctx)
    d = domain(fleet, "dcn1")
    assert provider.calls == [("set_link", d, mac(fleet, "dcn1", 1), "down")]
    assert not provider.link_up(d, mac(fleet, "dcn1", 1))
    assert provider.link_up(d, mac(fleet, "dcn1", 0))
    healed = fault.heal(ctx)
    assert healed is not None
    assert healed.kind is EventKind.FAULT_HEALED
    assert provider.calls[-1] == ("set_link", d, mac(fleet, "dcn1", 1), "up")
    assert all(provider.links.values())
    assert fault.heal(ctx) is healed  # once
    assert len(provider.calls) == 2


def test_isolate_cuts_every_link_of_one_node_and_heals_them(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    fleet, provider, ctx = fake
    fault = Isolate("dcn3")
    fault.inject(ctx)
    d = domain(fleet, "dcn3")
    assert [c for c in provider.calls if c[0] == "set_link"] == [
        ("set_link", d, mac(fleet, "dcn3", 0), "down"),
        ("set_link", d, mac(fleet, "dcn3", 1), "down"),
    ]
    assert [k for k, up in provider.links.items() if not up] == [(d, mac(fleet, "dcn3", 0)), (d, mac(fleet, "dcn3", 1))]
    fault.heal(ctx)
    assert all(provider.links.values())


def test_a_link_heal_on_a_node_fenced_meanwhile_is_no_failure(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    # A fenced domain comes back with its defined links, all up: nothing to plug back.
    fleet, provider, ctx = fake
    fault = NicDown("dcn2", 0)
    fault.inject(ctx)
    provider.power(domain(fleet, "dcn2"), "off")
    assert fault.heal(ctx) is not None


def test_a_link_heal_that_fails_on_a_running_node_names_the_link(
    fake: tuple[Fleet, FakeProvider, FaultContext],
) -> None:
    _fleet, provider, ctx = fake
    fault = NicDown("dcn2", 1)
    fault.inject(ctx)
    provider.fail_next = HypervisorError("connection reset by peer")
    with pytest.raises(FaultError, match=r"cannot heal nic-down dcn2 eth1: cannot bring dcn2's links up: eth1: "):
        fault.heal(ctx)


def test_an_engine_error_on_inject_is_a_fault_error_naming_the_fault(
    fake: tuple[Fleet, FakeProvider, FaultContext],
) -> None:
    _fleet, provider, ctx = fake
    provider.fail_next = HypervisorError("domain is locked")
    with pytest.raises(FaultError, match="cannot inject power-off dcn1: domain is locked"):
        PowerOff("dcn1").inject(ctx)


@pytest.mark.parametrize(
    ("fault", "offered", "needed"),
    [
        (NicDown("dcn1", 0), frozenset({POWER, PAUSE}), LINKS),
        (Isolate("dcn1"), frozenset({POWER}), LINKS),
        (Freeze("dcn1"), frozenset({POWER, LINKS}), PAUSE),
        (PowerOff("dcn1"), frozenset({LINKS}), POWER),
    ],
    ids=["nic-down", "isolate", "freeze", "power-off"],
)
def test_a_fault_the_engine_cannot_do_is_not_applicable_and_nothing_is_called(
    tmp_path: Path, fault: Fault, offered: frozenset[str], needed: str
) -> None:
    fleet, provider = fleet_on_fake(tmp_path, capabilities=offered)
    ctx = FaultContext(fleet, Recorder(ClockAnchor(0.0, 0.0)))
    with pytest.raises(NotApplicable, match=f"needs the engine to offer '{needed}'"):
        fault.inject(ctx)
    assert provider.calls == []


def test_the_fake_refuses_what_an_engine_would_not_do(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    _fleet, provider, ctx = fake
    Freeze("dcn1").inject(ctx)
    with pytest.raises(Refused, match=r"suspend of .* while it is paused"):
        Freeze("dcn1").inject(ctx)
    with pytest.raises(Refused, match="not given"):
        provider.power("dcnlab-elsewhere", "off")


def test_fleet_power_verbs_go_through_the_provider(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    fleet, provider, _ctx = fake
    fleet.power_off("dcn1")
    fleet.power_off("dcn1")  # already off: nothing more to do, no error
    assert fleet.domain_state("dcn1") == "shut-off"
    assert fleet.suspend_all() == ["dcn2", "dcn3"]
    assert {fleet.domain_state(n) for n in ("dcn2", "dcn3")} == {"paused"}
    fleet.ensure_running()
    assert {fleet.domain_state(n) for n in ("dcn2", "dcn3")} == {"running"}
    assert fleet.domain_state("dcn1") == "shut-off"  # ensure_running resumes, it does not power on
    assert [c[2] for c in provider.calls] == ["off", "off", "suspend", "suspend", "resume", "resume"]


def test_a_partition_blocks_each_network_between_the_sides_and_its_heal_unblocks_them(
    fake: tuple[Fleet, FakeProvider, FaultContext],
) -> None:
    fleet, provider, ctx = fake
    fault = Partition(["dcn1"])
    fault.inject(ctx)

    def nic(node: str, net: int) -> tuple[str, str]:
        return (domain(fleet, node), fleet.node(node).plan.nics[net].mac)

    assert provider.blocked == [((nic("dcn1", net),), (nic("dcn2", net), nic("dcn3", net))) for net in (0, 1)]
    fault.heal(ctx)
    assert provider.blocked == []
    assert [c[0] for c in provider.calls] == ["block", "block", "unblock", "unblock"]


def test_a_partition_that_fails_half_way_heals_what_it_blocked(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    _fleet, provider, ctx = fake
    fault = Partition(["dcn1", "dcn2"], ["dcn3"])
    before = ([("dcnlab-dcn1", "52:54:00:dc:00:01")], [("dcnlab-dcn3", "52:54:00:dc:00:03")])
    provider.block(*before)  # blocked beforehand: the heal must leave it
    provider.calls.clear()
    original = provider.block

    def second_fails(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> None:
        if len([c for c in provider.calls if c[0] == "block"]) == 1:
            provider.fail_next = HypervisorError("ebtables: no such table")
        original(a, b)

    provider.block = second_fails  # type: ignore[method-assign]
    with pytest.raises(
        FaultError, match=re.escape("cannot inject partition dcn1,dcn2 | dcn3: ebtables: no such table")
    ):
        fault.inject(ctx)
    fault.heal(ctx)
    assert [c[0] for c in provider.calls] == ["block", "block", "unblock"]
    assert provider.blocked == [(tuple(before[0]), tuple(before[1]))]  # only the one made beforehand


def test_a_partition_names_sides_the_fleet_has(fake: tuple[Fleet, FakeProvider, FaultContext]) -> None:
    _fleet, provider, ctx = fake
    with pytest.raises(FaultError, match="partition names nodes the fleet does not have: dcn9"):
        Partition(["dcn9"]).inject(ctx)
    assert provider.calls == []


@pytest.mark.parametrize("fault", [PowerOff("dcn2"), Freeze("dcn2")], ids=["power-off", "freeze"])
def test_a_node_about_to_be_replaced_is_left_down_by_the_heal(
    fake: tuple[Fleet, FakeProvider, FaultContext], fault: Fault
) -> None:
    # Its boot and rejoin would be thrown away: the next test gets restored nodes.
    fleet, provider, ctx = fake
    ctx.nodes_replaced = True
    fault.inject(ctx)
    before = list(provider.calls)
    healed = fault.heal(ctx)
    assert healed is not None
    assert healed.kind is EventKind.FAULT_HEALED
    assert provider.calls == before  # no power on, no resume
    assert fleet.domain_state("dcn2") in ("shut-off", "paused")
    notes = [e for e in ctx.recorder.events() if e.kind is EventKind.NOTE]
    assert [e.detail for e in notes] == ["left down: the next test gets restored nodes"]


@pytest.mark.parametrize("fault", [HostPartition("h2"), HostLoss("h2"), HostPacketLoss("h2", 10)], ids=lambda f: f.kind)
def test_host_faults_are_not_applicable_on_one_host_and_touch_nothing(
    fake: tuple[Fleet, FakeProvider, FaultContext], fault: Fault
) -> None:
    _fleet, provider, ctx = fake
    with pytest.raises(NotApplicable, match=r"needs a fleet over several hosts \(--dcn-lab-hosts 2 or more\)"):
        fault.inject(ctx)
    assert provider.calls == []
