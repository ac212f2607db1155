"""A fake provider (dcnlab.fleet.provider) for unit tests, and a real Fleet on it.

The fake holds each machine's power state and link states and answers as an
engine would; it refuses every call it has no reason to get (a machine it was
not told about, a power action that is invalid in the machine's state, a link
it does not have) by failing the test, and records the calls it did get.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import libvirt
import pytest

from dcnlab.core.errors import ClusterError, CommandError, HypervisorError, ProvisionError
from dcnlab.core.owner import RunRecord
from dcnlab.core.proc import Result
from dcnlab.fleet.accel import Accel
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.fleet.provider import CAPABILITIES, MachineSpec, Nic, Owner, PowerAction
from dcnlab.fleet.spec import FleetSpec, NetworkPlan
from dcnlab.image.builder import BuiltImage

# Valid from-states of each action, and the state it leaves (None: unchanged).
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "on": (frozenset({"shut-off", "crashed", "running"}), "running"),
    "off": (frozenset({"running", "paused", "blocked", "shutting-down", "shut-off", "crashed"}), "shut-off"),
    "reset": (frozenset({"running", "blocked"}), None),
    "shutdown": (frozenset({"running", "blocked"}), "shutting-down"),
    "suspend": (frozenset({"running", "blocked"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
}


class Refused(AssertionError):
    """A call the fake had no reason to get."""


class FakeProvider:
    def __init__(
        self,
        machines: dict[str, list[str]],
        capabilities: frozenset[str] = frozenset(CAPABILITIES),
        owner: Owner | None = None,
    ) -> None:
        """``machines``: domain name -> its NICs' MACs; each starts running, every link
        up, labelled ``owner``."""
        self.capabilities = capabilities
        self.states = dict.fromkeys(machines, "running")
        self.links = {(d, mac.lower()): True for d, macs in machines.items() for mac in macs}
        self.owners: dict[str, Owner | None] = dict.fromkeys(machines, owner)
        self.networks: dict[str, Owner] = {}
        self.defined: list[MachineSpec] = []
        self.calls: list[tuple[str, ...]] = []
        self.blocked: list[tuple[tuple[Nic, ...], tuple[Nic, ...]]] = []
        self.fail_next: HypervisorError | None = None  # the next action (power, set_link) fails so

    def _known(self, domain: str) -> None:
        if domain not in self.states:
            raise Refused(f"call for a machine the fake was not given: {domain}")

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err

    def reach(self) -> None:
        self.calls.append(("reach",))
        self._maybe_fail()

    def create_network(self, net: NetworkPlan, owner: Owner) -> None:
        self.calls.append(("create_network", net.name))
        self._maybe_fail()
        if net.name in self.networks:
            raise Refused(f"network {net.name} created twice")
        self.networks[net.name] = owner

    def define(self, machine: MachineSpec) -> None:
        domain = machine.plan.domain
        self.calls.append(("define", domain))
        self._maybe_fail()
        if domain in self.states:
            raise Refused(f"define of {domain}, which exists")
        missing = {nic.network for nic in machine.plan.nics} - set(machine.networks)
        if missing or any(n.name not in self.networks for n in machine.networks.values()):
            raise Refused(f"define of {domain} on networks never created")
        self.states[domain] = "shut-off"
        self.owners[domain] = machine.owner
        self.links.update({(domain, nic.mac.lower()): True for nic in machine.plan.nics})
        self.defined.append(machine)

    def owner(self, domain: str) -> Owner | None:
        return self.owners.get(domain)

    def _drop(self, domain: str) -> None:
        del self.states[domain], self.owners[domain]
        for key in [k for k in self.links if k[0] == domain]:
            del self.links[key]

    def undefine(self, domain: str, owner: Owner) -> None:
        self.calls.append(("undefine", domain))
        self._maybe_fail()
        if domain not in self.states:
            return
        found = self.owners[domain]
        if found is None or found.run_id != owner.run_id:
            raise ProvisionError(f"domain {domain} is not owned by run {owner.run_id}; leaving it alone")
        self._drop(domain)

    def remove_owned(self, owner: Owner) -> list[str]:
        self.calls.append(("remove_owned", owner.run_id))
        self._maybe_fail()
        removed = []
        for domain, found in list(self.owners.items()):
            if found is not None and found.run_id == owner.run_id:
                self._drop(domain)
                removed.append(f"domain {domain}")
        for name, found in list(self.networks.items()):
            if found.run_id == owner.run_id:
                del self.networks[name]
                removed.append(f"network {name}")
        return removed

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

    def block(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        for domain, mac in [*side_a, *side_b]:
            if (domain, mac.lower()) not in self.links:
                raise Refused(f"{domain} has no NIC {mac}")
        self.calls.append(("block", ",".join(m for _d, m in side_a), ",".join(m for _d, m in side_b)))
        self._maybe_fail()
        self.blocked.append((tuple(side_a), tuple(side_b)))

    def unblock(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        self.calls.append(("unblock", ",".join(m for _d, m in side_a), ",".join(m for _d, m in side_b)))
        self._maybe_fail()
        if (tuple(side_a), tuple(side_b)) not in self.blocked:
            raise Refused(f"unblock of what was never blocked: {side_a} | {side_b}")
        self.blocked.remove((tuple(side_a), tuple(side_b)))

    def save(self, domain: str, dest: Path) -> None:
        self._known(domain)
        self.calls.append(("save", domain, str(dest)))
        self._maybe_fail()
        if self.states[domain] not in ("running", "paused"):
            raise Refused(f"save of {domain} while it is {self.states[domain]}")
        dest.write_text(f"saved {domain} {self.states[domain]}\n")
        self.states[domain] = "shut-off"

    def restore(self, domain: str, src: Path, *, as_defined: bool) -> None:
        self._known(domain)
        self.calls.append(("restore", domain, str(src), "as defined" if as_defined else "as saved"))
        self._maybe_fail()
        if self.states[domain] != "shut-off" or not src.exists():
            raise Refused(f"restore of {domain} ({self.states[domain]}) from {src}")
        self.states[domain] = "paused"

    def uuid(self, domain: str) -> str:
        self._known(domain)
        return f"00000000-0000-4000-8000-{abs(hash(domain)) % 10**12:012d}"

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
    provider = FakeProvider(
        {n.domain: [nic.mac for nic in n.plan.nics] for n in fleet.nodes.values()}, capabilities, fleet.owner
    )
    provider.networks = {fleet.plan.network(i).name: fleet.owner for i in range(networks)}
    fleet.machines = provider
    fleet.created = True
    return fleet, provider


class FakeGuests:
    """The guests' side of a fleet on a :class:`FakeProvider`: which nodes run their
    cluster stack, and answers to the commands the heals send. Any other command is
    refused. A node whose machine is not running answers nothing (a CommandError, as
    an unreachable node gives)."""

    def __init__(self, fleet: Fleet, provider: FakeProvider) -> None:
        self.fleet = fleet
        self.provider = provider
        self.stack = set(fleet.nodes)  # nodes whose corosync and pacemaker run
        self.commands: list[tuple[str, str]] = []

    def running(self, name: str) -> bool:
        return self.provider.states[self.fleet.node(name).domain] in ("running", "blocked")

    def run(self, name: str, command: str | Sequence[str], **_kw: object) -> Result:
        text = command if isinstance(command, str) else " ".join(command)
        self.commands.append((name, text))
        if not self.running(name):
            result = Result(text, 255, "", f"{name} does not answer", 0.0, where=name)
            raise CommandError(f"{name}: {text}: the node does not answer", result)
        if text == "systemctl is-active corosync pacemaker":
            up = "active" if name in self.stack else "inactive"
            return Result(text, 0 if up == "active" else 3, f"{up}\n{up}\n", "", 0.0, where=name)
        if text.startswith(("crm_resource --cleanup", "pkill ", "systemctl kill ", "crm_resource --fail ")):
            return Result(text, 0, "", "", 0.0, where=name)
        raise Refused(f"{name}: a command the fake guests had no reason to get: {text}")

    def wait_ssh(self, node: Node, _deadline: object, _t0: float) -> None:
        if not self.running(node.name):
            raise ProvisionError(f"{node.name} is {self.provider.states[node.domain]}, not running")

    def attach(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Route the fleet's node commands and SSH waits here."""
        for node in self.fleet.nodes.values():
            monkeypatch.setattr(node, "run", functools.partial(self.run, node.name))
        monkeypatch.setattr(self.fleet, "_wait_ssh", self.wait_ssh)


class FakeClusterState:
    def __init__(self, online: list[str], where: dict[str, list[str]]) -> None:
        self._online = online
        self._where = where

    def online_nodes(self) -> list[str]:
        return self._online

    def where(self, resource: str) -> list[str]:
        return self._where.get(resource, [])


class FakeCluster:
    """What the heals ask of a :class:`~dcnlab.cluster.bootstrap.Cluster`: start a
    node's stack, the online members, a cleanup, convergence. ``not_converged``
    rounds of :meth:`wait_converged` fail before one passes (-1: never)."""

    def __init__(self, fleet: Fleet, guests: FakeGuests, scale: float = 0.01) -> None:
        self.fleet = fleet
        self.guests = guests
        self.scale = scale
        self.not_converged = 0
        self.converged_calls = 0
        self.where: dict[str, list[str]] = {}

    def start_stack(self, node: Node) -> None:
        if not self.guests.running(node.name):
            raise Refused(f"start_stack on {node.name}, whose machine is not running")
        self.guests.stack.add(node.name)

    def members(self) -> list[Node]:
        return [n for n in self.fleet.nodes.values() if self.guests.running(n.name) and n.name in self.guests.stack]

    def state(self) -> FakeClusterState:
        return FakeClusterState(sorted(n.name for n in self.members()), self.where)

    def wait_converged(self, timeout: float | None = None) -> FakeClusterState:
        self.converged_calls += 1
        if self.not_converged != 0:
            self.not_converged -= 1
            raise ClusterError("not converged: dcn2 has failed actions")
        return self.state()
