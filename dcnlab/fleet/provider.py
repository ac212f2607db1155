"""The provider seam: what the rest of dcnlab asks of the engine that runs a
fleet's machines, and nothing about how. libvirt implements it
(:mod:`dcnlab.fleet.libvirt.provider`); a second engine (other hosts, KubeVirt)
implements the same Protocols, and unit tests use a fake that refuses any call
they did not expect (``tests/unit/fakes.py``).

Machines are named by their domain names (:attr:`NodePlan.domain`), NICs by
their MAC addresses, networks by :class:`NetworkPlan`: all the fleet's plan, so
no engine object leaks out. Every object a provider creates carries its
:class:`Owner` label, by which a teardown or ``dcnlab gc`` finds it again.
Every operation raises :class:`~dcnlab.core.errors.HypervisorError` on failure.

An engine that cannot do something says so in :attr:`Provider.capabilities`;
a fault that needs a missing capability is reported as not applicable
(:func:`require`), never carried out some weaker way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from dcnlab.core.errors import DcnlabError
from dcnlab.fleet.spec import NetworkPlan, NodePlan

# A machine's NIC: its domain and its MAC (MACs repeat across fleets on one host).
Nic = tuple[str, str]
PowerAction = Literal["on", "off", "reset", "shutdown", "suspend", "resume"]
# What Machines.state answers: the words Fleet.domain_state has always used.
POWER_STATES = (
    "running",
    "blocked",
    "paused",
    "shutting-down",
    "shut-off",
    "crashed",
    "suspended",
    "nostate",
    "absent",  # the engine knows no such machine
)
# Capabilities a provider may offer.
POWER = "power"  # on, off (no shutdown in the guest), reset, ACPI shutdown
PAUSE = "pause"  # suspend and resume the vCPUs
LINKS = "links"  # a NIC's link down and up, live
PARTITION = "partition"  # frames between two sets of NICs dropped, and let through again
SNAPSHOTS = "snapshots"  # a running machine saved to a file, and restored from it
CAPABILITIES = (POWER, PAUSE, LINKS, PARTITION, SNAPSHOTS)


@dataclass(frozen=True)
class FenceEndpoint:
    """Where guests send fence requests (the engine's side of fence_virt), and
    the key they sign them with."""

    address: str
    port: int
    key: bytes = field(repr=False)
    host: str = ""  # the host whose machines it fences ("": the fleet's one host)


@dataclass(frozen=True)
class Owner:
    """The label every object the harness creates in an engine carries."""

    run_id: str
    fleet: str


@dataclass(frozen=True)
class BootSpec:
    """How a node boots: direct kernel boot when ``kernel`` is set, else from disk."""

    kernel: Path | None
    initrd: Path | None
    cmdline: str


@dataclass(frozen=True)
class MachineSpec:
    """Everything an engine needs to define one node's machine.

    ``seed``: a cloud-init NoCloud image (:mod:`dcnlab.fleet.seed`) attached as a
    read-only disk, for images that take their identity from cloud-init. ``uuid``:
    the machine's UUID (the engine makes one up when None); a machine restored from
    a saved state must have the saved one (:mod:`dcnlab.ready.store`). ``firmware``:
    ``bios`` or ``uefi``, its variables in ``nvram``, a file of the run that goes
    with the machine. ``oem_strings``: SMBIOS type 11 strings (systemd credentials,
    :mod:`dcnlab.fleet.credentials`). ``host``: which of the fleet's hosts runs
    it ("" on a fleet of one host)."""

    plan: NodePlan
    owner: Owner
    domain_type: str
    vcpus: int
    memory_mib: int
    disk: Path
    console_log: Path
    boot: BootSpec
    networks: Mapping[int, NetworkPlan]
    seed: Path | None = None
    uuid: str | None = None
    firmware: str = "bios"
    nvram: Path | None = None
    oem_strings: tuple[str, ...] = ()
    host: str = ""


class NotApplicable(DcnlabError):
    """The fault or step needs something this engine cannot do."""


class Inventory(Protocol):
    """Creating and removing the fleet's networks and machines."""

    def reach(self) -> None:
        """Open the engine connection now, creating nothing: an engine that cannot
        be reached fails here, before the fleet has anything to remove."""
        ...

    def create_network(self, net: NetworkPlan, owner: Owner) -> None:
        """Create and start one isolated fleet network (its bridge and gateway address)."""
        ...

    def define(self, machine: MachineSpec) -> None:
        """Define one machine, not started (:meth:`Machines.power` ``on`` starts it)."""
        ...

    def owner(self, domain: str) -> Owner | None:
        """The machine's owner label; None when there is no such machine or it has none."""
        ...

    def undefine(self, domain: str, owner: Owner) -> None:
        """Stop and remove one machine of ``owner`` (nothing when it does not exist);
        a machine with another owner or none is refused, never touched."""
        ...

    def remove_owned(self, owner: Owner) -> list[str]:
        """Stop and remove every machine and network of ``owner``'s run; return what went."""
        ...


class Machines(Protocol):
    """Power and state of the fleet's machines."""

    def power(self, domain: str, action: PowerAction) -> None:
        """``on`` starts a machine that is off; ``off`` cuts its power (no shutdown runs
        in the guest); ``reset`` is the reset button; ``shutdown`` the ACPI power button;
        ``suspend``/``resume`` stop and restart its vCPUs."""
        ...

    def state(self, domain: str) -> str:
        """One of :data:`POWER_STATES`."""
        ...


class Links(Protocol):
    """The link state of the machines' NICs, as a cable pulled or plugged back."""

    def set_link(self, domain: str, mac: str, up: bool) -> None:
        """Set the link and check that it took."""
        ...

    def link_up(self, domain: str, mac: str) -> bool: ...

    def block(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        """Drop every frame between each NIC of ``side_a`` and each of ``side_b``
        (NICs on one network), both ways; frames to and from anything else pass."""
        ...

    def unblock(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        """Undo exactly one :meth:`block` of the same sides."""
        ...


class Snapshots(Protocol):
    """A running machine's whole state in a file, and back (the cluster-ready
    cache, :mod:`dcnlab.ready`): optional, used only where offered."""

    def save(self, domain: str, dest: Path) -> None:
        """Write the machine's state to ``dest``; the machine stops."""
        ...

    def restore(self, domain: str, src: Path, *, as_defined: bool) -> None:
        """Run the machine again, paused, from ``src``. ``as_defined``: with the
        machine's definition as it is now (another fleet's names and paths, the
        saved identity), not the one written in ``src``."""
        ...

    def uuid(self, domain: str) -> str: ...


class Provider(Inventory, Machines, Links, Snapshots, Protocol):
    """One engine's networks, machines, links and snapshots, with what it can do."""

    capabilities: frozenset[str]

    def close(self) -> None:
        """Release the engine connection (the provider reconnects if used again)."""
        ...


def require(provider: Provider, capability: str, what: str) -> None:
    """Raise :class:`NotApplicable` naming ``what`` when ``provider`` lacks ``capability``."""
    if capability not in provider.capabilities:
        offered = ", ".join(sorted(provider.capabilities)) or "nothing"
        raise NotApplicable(
            f"{what} needs the engine to offer {capability!r}; {type(provider).__name__} offers {offered}"
        )
