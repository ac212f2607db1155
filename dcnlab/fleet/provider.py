"""The provider seam: what the rest of dcnlab asks of the engine that runs a
fleet's machines, and nothing about how. libvirt implements it
(:mod:`dcnlab.fleet.libvirt.provider`); a second engine (other hosts, KubeVirt)
implements the same Protocols, and unit tests use a fake that refuses any call
they did not expect (``tests/unit/fakes.py``).

Machines are named by their domain names (:attr:`NodePlan.domain`), NICs by
their MAC addresses: both are the fleet's plan, so no engine object leaks out.
Every operation raises :class:`~dcnlab.core.errors.HypervisorError` on failure.

An engine that cannot do something says so in :attr:`Provider.capabilities`;
a fault that needs a missing capability is reported as not applicable
(:func:`require`), never carried out some weaker way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from dcnlab.core.errors import DcnlabError

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


class NotApplicable(DcnlabError):
    """The fault or step needs something this engine cannot do."""


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


class Provider(Machines, Links, Snapshots, Protocol):
    """One engine's machines, links and snapshots, with what it can do."""

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
