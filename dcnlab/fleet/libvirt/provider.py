"""The provider seam (:mod:`dcnlab.fleet.provider`) on libvirt: machines are
domains, links are ``<interface><link state=.../>`` updated live."""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from dcnlab.core.errors import HypervisorError
from dcnlab.fleet.provider import CAPABILITIES, PowerAction

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


class LibvirtProvider:
    """Machines and links through one libvirt connection of its own, opened by
    ``connect`` on first use and opened again when it died (a broken connection
    says nothing about the domains)."""

    capabilities = frozenset(CAPABILITIES)

    def __init__(self, connect: Callable[[], libvirt.virConnect]) -> None:
        self._connect = connect
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

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

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            # Closing a dead connection: nothing is left to release.
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
