"""The provider seam (:mod:`dcnlab.fleet.provider`) on libvirt: machines are
domains, links are ``<interface><link state=.../>`` updated live."""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import libvirt

from dcnlab.core.errors import CommandError, HypervisorError, ProvisionError
from dcnlab.core.proc import run_local
from dcnlab.fleet.libvirt.domainxml import machine_xml, network_xml, parse_owner
from dcnlab.fleet.provider import CAPABILITIES, MachineSpec, Nic, Owner, PowerAction
from dcnlab.fleet.spec import NetworkPlan, network_prefix

STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut-off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


# A domain goes with its managed save, its snapshots' metadata and its UEFI
# variables file (libvirt refuses to undefine a domain with NVRAM otherwise).
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def link_state_xml(domain_xml: str, mac: str, state: str) -> str:
    """The ``<interface>`` element with ``mac`` from a domain's live XML, with
    ``<link state=STATE/>`` set, for ``virDomainUpdateDeviceFlags``."""
    if state not in ("up", "down"):
        raise ValueError(f"link state must be up or down, not {state!r}")
    root = ET.fromstring(domain_xml)
    for iface in root.findall("devices/interface"):
        el = iface.find("mac")
        if el is not None and el.get("address", "").lower() == mac.lower():
            link = iface.find("link")
            if link is None:
                link = ET.SubElement(iface, "link")
            link.set("state", state)
            return ET.tostring(iface, encoding="unicode")
    raise HypervisorError(f"the domain has no interface with MAC {mac}")


def link_state(domain_xml: str, mac: str) -> str:
    """``up`` or ``down``, as the live XML says (no ``<link>`` means up)."""
    root = ET.fromstring(domain_xml)
    for iface in root.findall("devices/interface"):
        el = iface.find("mac")
        if el is not None and el.get("address", "").lower() == mac.lower():
            link = iface.find("link")
            return "up" if link is None else link.get("state", "up")
    raise HypervisorError(f"the domain has no interface with MAC {mac}")


def partition_rules(side_a: Sequence[Sequence[str]], side_b: Sequence[Sequence[str]]) -> list[list[str]]:
    """ebtables rule specs (after ``-A``/``-D FORWARD``) that drop bridged
    frames between two sets of taps, per network: ``side_a[i]`` and
    ``side_b[i]`` are the taps of network *i* on each side."""
    rules = []
    for taps_a, taps_b in zip(side_a, side_b, strict=True):
        for a in taps_a:
            for b in taps_b:
                rules.append(["-i", a, "-o", b, "-j", "DROP"])
                rules.append(["-i", b, "-o", a, "-j", "DROP"])
    return rules


class LibvirtProvider:
    """Machines and links through one libvirt connection of its own, opened by
    ``connect`` on first use and opened again when it died (a broken connection
    says nothing about the domains)."""

    capabilities = frozenset(CAPABILITIES)

    def __init__(self, connect: Callable[[], libvirt.virConnect], netns: str | None = None) -> None:
        """``netns``: the namespace the fleet's bridges are in (None: this one)."""
        self._connect = connect
        self._netns = netns
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        # The ebtables rules each block added, so that unblock removes exactly those.
        self._blocks: dict[tuple[tuple[Nic, ...], tuple[Nic, ...]], list[list[str]]] = {}

    def _conn_alive(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                self._conn = self._connect()
            return self._conn

    def _domain(self, domain: str) -> libvirt.virDomain:
        try:
            return self._conn_alive().lookupByName(domain)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"domain {domain}: {err}") from err

    # -- inventory ------------------------------------------------------------

    def reach(self) -> None:
        self._conn_alive()

    def create_network(self, net: NetworkPlan, owner: Owner) -> None:
        # The owner is in the name (network_prefix): libvirt 9.0 networks carry no metadata.
        if not net.name.startswith(network_prefix(owner.fleet)):
            raise ValueError(f"network {net.name} is not named as fleet {owner.fleet}'s networks are")
        try:
            obj = self._conn_alive().networkDefineXML(network_xml(net))
            obj.create()
        except libvirt.libvirtError as err:
            raise ProvisionError(f"cannot create network {net.name} (bridge {net.bridge}): {err}") from err

    def define(self, machine: MachineSpec) -> None:
        try:
            self._conn_alive().defineXML(machine_xml(machine))
        except libvirt.libvirtError as err:
            raise ProvisionError(
                f"cannot define node {machine.plan.name} (domain {machine.plan.domain}): {err}"
            ) from err

    def owner(self, domain: str) -> Owner | None:
        try:
            dom = self._conn_alive().lookupByName(domain)
            return parse_owner(dom.XMLDesc(0))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorError(f"cannot read the owner of domain {domain}: {err}") from err

    def undefine(self, domain: str, owner: Owner) -> None:
        try:
            dom = self._conn_alive().lookupByName(domain)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            raise HypervisorError(f"cannot look up domain {domain}: {err}") from err
        found = parse_owner(dom.XMLDesc(0))
        if found is None or found.run_id != owner.run_id:
            raise ProvisionError(f"domain {domain} is not owned by run {owner.run_id}; leaving it alone")
        self._remove(dom)

    @staticmethod
    def _remove(dom: libvirt.virDomain) -> None:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(UNDEFINE_FLAGS)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot remove domain {dom.name()}: {err}") from err

    def remove_owned(self, owner: Owner) -> list[str]:
        conn = self._conn_alive()
        removed = []
        for dom in conn.listAllDomains():
            try:
                found = parse_owner(dom.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # vanished while we looked
            if found is not None and found.run_id == owner.run_id:
                self._remove(dom)
                removed.append(f"domain {dom.name()}")
        for net in conn.listAllNetworks():
            if net.name().startswith(network_prefix(owner.fleet)):
                try:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                except libvirt.libvirtError as err:
                    raise HypervisorError(f"cannot remove network {net.name()}: {err}") from err
                removed.append(f"network {net.name()}")
        return removed

    # -- machines ---------------------------------------------------------------

    def power(self, domain: str, action: PowerAction) -> None:
        dom = self._domain(domain)
        try:
            if action == "on":
                if not dom.isActive():
                    dom.create()
            elif action == "off":
                if dom.isActive():
                    dom.destroy()
            elif action == "reset":
                dom.reset(0)
            elif action == "shutdown":
                dom.shutdown()
            elif action == "suspend":
                dom.suspend()
            elif action == "resume":
                dom.resume()
            else:
                raise ValueError(f"unknown power action {action!r}")
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot {action} domain {domain}: {err}") from err

    def state(self, domain: str) -> str:
        failure: libvirt.libvirtError | None = None
        for _ in range(2):  # once more through a new connection if this one died
            try:
                state, _reason = self._conn_alive().lookupByName(domain).state()
                return STATE_NAMES.get(state, str(state))
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return "absent"
                failure = err
                if self._conn is not None and self._conn.isAlive():
                    break
        raise HypervisorError(f"cannot read the state of domain {domain}: {failure}") from failure

    def set_link(self, domain: str, mac: str, up: bool) -> None:
        want = "up" if up else "down"
        dom = self._domain(domain)
        try:
            dom.updateDeviceFlags(link_state_xml(dom.XMLDesc(0), mac, want), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            now = link_state(dom.XMLDesc(0), mac)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot set the link of {mac} on domain {domain} {want}: {err}") from err
        if now != want:
            raise HypervisorError(f"domain {domain}: the link of {mac} is {now} after setting it {want}")

    def link_up(self, domain: str, mac: str) -> bool:
        dom = self._domain(domain)
        try:
            return link_state(dom.XMLDesc(0), mac) == "up"
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot read the link of {mac} on domain {domain}: {err}") from err

    def taps(self, nics: Sequence[Nic]) -> list[str]:
        """The tap device of each NIC, from its domain's XML (the defined one when the
        domain is off: the tap's name is part of the definition)."""
        taps = []
        for domain, mac in nics:
            try:
                xml = self._domain(domain).XMLDesc(0)
            except libvirt.libvirtError as err:
                raise HypervisorError(f"cannot read the interfaces of domain {domain}: {err}") from err
            for iface in ET.fromstring(xml).findall("devices/interface"):
                m, target = iface.find("mac"), iface.find("target")
                if m is not None and target is not None and m.get("address", "").lower() == mac.lower():
                    taps.append(target.get("dev", ""))
                    break
            else:
                raise HypervisorError(f"domain {domain} has no NIC with MAC {mac}")
        return taps

    def save(self, domain: str, dest: Path) -> None:
        dom = self._domain(domain)
        try:
            dom.save(str(dest))
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot save domain {domain} to {dest}: {err}") from err

    def restore(self, domain: str, src: Path, *, as_defined: bool) -> None:
        try:
            # The defined domain's own XML: this fleet's names and paths, the
            # saved UUID and MACs (its ABI, which libvirt checks against the image).
            xml = self._domain(domain).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE) if as_defined else None
            self._conn_alive().restoreFlags(str(src), xml, libvirt.VIR_DOMAIN_SAVE_PAUSED)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot restore domain {domain} from {src}: {err}") from err

    def uuid(self, domain: str) -> str:
        return str(self._domain(domain).UUIDString())

    # ebtables (netfilter's bridge family) in the bridges' namespace: frames
    # bridged between the two sides' taps are dropped; frames to and from the
    # bridge itself are not forwarded frames, so the namespace reaches both.
    def ebtables(self, action: str, rule: list[str]) -> None:
        run_local(["ebtables", action, "FORWARD", *rule], netns=self._netns, timeout=30)

    def block(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        added: list[list[str]] = []
        try:
            for rule in partition_rules([self.taps(side_a)], [self.taps(side_b)]):
                self.ebtables("-A", rule)
                added.append(rule)
            self._blocks[(tuple(side_a), tuple(side_b))] = added
        except CommandError as err:
            # All or nothing: the caller heals only what block returned from.
            for rule in reversed(added):
                with contextlib.suppress(CommandError):
                    self.ebtables("-D", rule)
            raise HypervisorError(f"cannot block frames between {list(side_a)} and {list(side_b)}: {err}") from err

    def unblock(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        key = (tuple(side_a), tuple(side_b))
        # What this provider blocked; else (another handle blocked it) the same rules again.
        rules = self._blocks.get(key) or partition_rules([self.taps(side_a)], [self.taps(side_b)])
        errors = []
        for rule in list(rules):
            try:
                self.ebtables("-D", rule)
                rules.remove(rule)
            except CommandError as err:
                errors.append(str(err).splitlines()[0])
        if errors:
            self._blocks[key] = rules  # a second unblock removes only what is left
            raise HypervisorError("ebtables -D: " + "; ".join(errors))
        self._blocks.pop(key, None)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            # Closing a dead connection: nothing is left to release.
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
