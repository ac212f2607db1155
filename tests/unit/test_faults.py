from typing import Any, ClassVar

import pytest
from domxml import small_domain_xml

from dcnlab.core.errors import ConfigError, FaultError, HypervisorError
from dcnlab.faults.base import Fault, FaultContext, injected
from dcnlab.faults.network import Partition
from dcnlab.faults.process import KillProcess, kill_argv
from dcnlab.fleet.libvirt.provider import link_state, link_state_xml, partition_rules
from dcnlab.fleet.spec import FleetSpec
from dcnlab.observe.timeline import ClockAnchor, EventKind, Recorder


def node_xml() -> str:
    return small_domain_xml("t1", 2, "t1-x")


def test_link_state_xml_names_one_interface() -> None:
    xml = node_xml()
    plan = FleetSpec(name="t1").plan().node(2, 2)
    mac = plan.nics[1].mac
    assert link_state(xml, mac) == "up"
    iface = link_state_xml(xml, mac.upper(), "down")
    assert iface.startswith("<interface")
    assert f'address="{mac}"' in iface
    assert '<link state="down" />' in iface
    assert plan.nics[1].tap in iface  # the rest of the device is kept as it is
    assert (
        link_state(iface.replace("<interface", "<domain><devices><interface", 1) + "</devices></domain>", mac) == "down"
    )
    again = link_state_xml(
        iface.replace("<interface", "<domain><devices><interface", 1) + "</devices></domain>", mac, "up"
    )
    assert again.count("<link ") == 1
    assert 'state="up"' in again
    with pytest.raises(HypervisorError, match="no interface"):
        link_state_xml(xml, "52:54:00:00:00:00", "down")
    with pytest.raises(ValueError, match="up or down"):
        link_state_xml(xml, mac, "sideways")


def test_partition_rules_cut_only_across_sides() -> None:
    rules = partition_rules([["a1n0"], ["a1n1"]], [["b2n0", "b3n0"], ["b2n1", "b3n1"]])
    assert len(rules) == 8  # 1 x 2 taps per network, both directions, 2 networks
    assert ["-i", "a1n0", "-o", "b2n0", "-j", "DROP"] in rules
    assert ["-i", "b3n1", "-o", "a1n1", "-j", "DROP"] in rules
    assert not any(r[1].startswith("b") and r[3].startswith("b") for r in rules)


def test_kill_argv() -> None:
    assert kill_argv(process="pacemaker-controld") == ["pkill", "--signal", "KILL", "--exact", "pacemaker-contr"]
    assert kill_argv(process="corosync", signal="SIGSTOP")[2] == "STOP"
    assert kill_argv(unit="dcn-http", signal="term") == [
        "systemctl", "kill", "--signal=SIGTERM", "--kill-whom=main", "dcn-http",
    ]  # fmt: skip
    assert kill_argv(container="app") == ["podman", "kill", "--signal", "KILL", "app"]
    with pytest.raises(ConfigError, match="exactly one"):
        kill_argv(process="a", unit="b")
    with pytest.raises(ConfigError, match="unknown signal"):
        kill_argv(process="a", signal="NOPE")
    assert KillProcess("dcn1", "corosync").name == "kill -KILL corosync on dcn1"


def test_partition_names_and_checks_sides() -> None:
    assert Partition(["dcn1"]).name == "partition dcn1 | the rest"
    p = Partition(["dcn1"], ["dcn1", "dcn2"])

    class Fleet:
        nodes: ClassVar[dict[str, None]] = {"dcn1": None, "dcn2": None, "dcn3": None}

    class Ctx:
        fleet = Fleet()

    with pytest.raises(ConfigError, match="disjoint"):
        p._sides(Ctx())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dcn9"):
        Partition(["dcn9"])._sides(Ctx())  # type: ignore[arg-type]


class Flaky(Fault):
    kind = "flaky"

    def __init__(self, fail_inject: bool = False, fail_heal: bool = False) -> None:
        super().__init__("dcn1")
        self.fail_inject, self.fail_heal = fail_inject, fail_heal
        self.calls: list[str] = []

    def _inject(self, ctx: Any) -> None:
        self.calls.append("inject")
        if self.fail_inject:
            raise FaultError("half done")

    def _heal(self, ctx: Any) -> None:
        self.calls.append("heal")
        if self.fail_heal:
            raise FaultError("stuck")


def ctx() -> FaultContext:
    return FaultContext(fleet=None, recorder=Recorder(ClockAnchor(0.0, 0.0)))  # type: ignore[arg-type]


def test_a_fault_records_its_own_times_and_heals_once() -> None:
    c = ctx()
    f = Flaky()
    assert f.heal(c) is None
    assert f.calls == []
    event = f.inject(c)
    assert event.kind is EventKind.FAULT_INJECTED
    assert event.earliest is not None
    assert event.earliest <= event.t
    assert event.source == "fault:flaky dcn1"
    assert event.node == "dcn1"
    with pytest.raises(FaultError, match="already injected"):
        f.inject(c)
    healed = f.heal(c)
    assert healed is not None
    assert healed.kind is EventKind.FAULT_HEALED
    assert f.heal(c) is healed
    assert f.calls == ["inject", "heal"]


def test_injected_heals_whatever_happens() -> None:
    c = ctx()
    f = Flaky()
    with pytest.raises(RuntimeError), injected(f, c, wait_healthy=lambda: False):
        raise RuntimeError("the test failed")
    assert f.calls == ["inject", "heal"]
    # A partial injection is healed too.
    g = Flaky(fail_inject=True)
    with pytest.raises(FaultError, match="cannot inject"), injected(g, c, wait_healthy=lambda: False):
        pass
    assert g.calls == ["inject", "heal"]
    # A failed heal is reported, after the hook still ran.
    h = Flaky(fail_heal=True)
    ran = []
    with (
        pytest.raises(FaultError, match="stuck"),
        injected(h, c, wait_healthy=lambda: False, on_healed=lambda: ran.append(1)),
    ):
        pass
    assert ran == [1]
    assert any("heal failed" in e.detail for e in c.recorder.events(EventKind.NOTE))
