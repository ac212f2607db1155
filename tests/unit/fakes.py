"""A fake provider (dcnlab.fleet.provider) for unit tests, and a real Fleet on it.

The fake holds each machine's power state and link states and answers as an
engine would; it refuses every call it has no reason to get (a machine it was
not told about, a power action that is invalid in the machine's state, a link
it does not have) by failing the test, and records the calls it did get.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import libvirt

from dcnlab.core.errors import HypervisorError
from dcnlab.core.owner import RunRecord
from dcnlab.fleet.accel import Accel
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.provider import CAPABILITIES, PowerAction
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage

# Valid from-states of each action, and the state it leaves (None: unchanged).
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "on": (frozenset({"shut-off", "crashed", "running"}), "running"),
    "off": (frozenset({"running", "paused", "blocked", "shut-off", "crashed"}), "shut-off"),
    "reset": (frozenset({"running", "blocked"}), None),
    "shutdown": (frozenset({"running", "blocked"}), "shutting-down"),
    "suspend": (frozenset({"running", "blocked"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
}


class Refused(AssertionError):
    """A call the fake had no reason to get."""


class FakeProvider:
    def __init__(self, machines: dict[str, list[str]], capabilities: frozenset[str] = frozenset(CAPABILITIES)) -> None:
        """``machines``: domain name -> its NICs' MACs; each starts running, every link up."""
        self.capabilities = capabilities
        self.states = dict.fromkeys(machines, "running")
        self.links = {(d, mac.lower()): True for d, macs in machines.items() for mac in macs}
        self.calls: list[tuple[str, ...]] = []
        self.fail_next: HypervisorError | None = None  # the engine's next answer is this error

    def _known(self, domain: str) -> None:
        if domain not in self.states:
            raise Refused(f"call for a machine the fake was not given: {domain}")

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err

    def power(self, domain: str, action: PowerAction) -> None:
        self._known(domain)
        self.calls.append(("power", domain, action))
        self._maybe_fail()
        valid, after = TRANSITIONS[action]
        if self.states[domain] not in valid:
            raise Refused(f"{action} of {domain} while it is {self.states[domain]}")
        if after is not None:
            self.states[domain] = after
        if action == "off":
            # A machine powered on again comes back with its defined links: all up.
            for key in self.links:
                if key[0] == domain:
                    self.links[key] = True

    def state(self, domain: str) -> str:
        if domain not in self.states:
            return "absent"
        self._maybe_fail()
        return self.states[domain]

    def set_link(self, domain: str, mac: str, up: bool) -> None:
        self._known(domain)
        self.calls.append(("set_link", domain, mac.lower(), "up" if up else "down"))
        self._maybe_fail()
        if (domain, mac.lower()) not in self.links:
            raise Refused(f"{domain} has no NIC {mac}")
        if self.states[domain] not in ("running", "paused", "blocked"):
            raise HypervisorError(f"domain {domain} is not running")
        self.links[(domain, mac.lower())] = up

    def link_up(self, domain: str, mac: str) -> bool:
        self._known(domain)
        return self.links[(domain, mac.lower())]

    def close(self) -> None:
        self.calls.append(("close",))


class FakeHypervisor:
    uri = "fake:///"
    netns = "dcnlab-fake"

    def connect(self) -> libvirt.virConnect:
        raise Refused("the fleet asked the fake hypervisor for a libvirt connection")


def fleet_on_fake(
    tmp_path: Path, nodes: int = 3, networks: int = 2, capabilities: frozenset[str] = frozenset(CAPABILITIES)
) -> tuple[Fleet, FakeProvider]:
    """A real :class:`Fleet` (plans, nodes, names) whose machines are a :class:`FakeProvider`."""
    spec = FleetSpec(name="fk", nodes=nodes, networks=networks)
    record = RunRecord.new(spec.name, uri="", embedded=True, netns="dcnlab-fk", spec=asdict(spec), image={})
    record.nodes = list(range(1, nodes + 1))
    image = BuiltImage(
        recipe="fake",
        digest="0" * 16,
        disk=tmp_path / "disk.qcow2",
        kernel=None,
        initrd=None,
        cmdline="",
        built_seconds=0.0,
    )
    fleet = Fleet(record, tmp_path, FakeHypervisor(), image, Accel("tcg", "fake"), lambda _line: None)
    provider = FakeProvider({n.domain: [nic.mac for nic in n.plan.nics] for n in fleet.nodes.values()}, capabilities)
    fleet.machines = provider
    return fleet, provider
