"""A fleet across several hypervisor hosts: the hosts, where each node runs,
and the addresses a host takes on the fleet's networks and on the underlay
that joins the hosts. Pure (no I/O), so placement and addressing are unit
tested without a hypervisor.

Each fleet network is one L2 segment stretched over every host: a bridge per
host with a VXLAN port (:mod:`dcnlab.fleet.libvirt.lab`). On network *i* host
*k* (1-based) has the address ``<network>.k`` (host 1's is the gateway, .1,
where the harness and the single-host fence listener have always been), so
a host can run a fence listener its own guests and every other host's reach.
Nodes start at ``.11`` (:class:`dcnlab.fleet.spec.AddressPlan`), which leaves
room for :data:`MAX_HOSTS` hosts.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import MAC_PREFIX, NetworkPlan

MAX_HOSTS = 8  # host addresses .1-.8 on each fleet network; nodes begin at .11
# VXLAN adds 50 bytes to each frame (outer Ethernet 14, IPv4 20, UDP 8,
# VXLAN 8): an underlay at 1550 carries the guests' 1500 whole
# (docs/multihost.md, from RFC 7348 section 5).
VXLAN_OVERHEAD = 50
GUEST_MTU = 1500
UNDERLAY_MTU = GUEST_MTU + VXLAN_OVERHEAD
VXLAN_PORT = 4789  # IANA's VXLAN port (RFC 7348)
DEFAULT_LAB_UNDERLAY = "172.30.0.0/24"
HARNESS_UNDERLAY_HOST = 254  # the harness's own address on a lab underlay
HOST_MAC_PREFIX = "52:54:00:dd"  # a host's bridge on a stretched network (nodes use 52:54:00:dc)


@dataclass(frozen=True)
class HostPlan:
    """One hypervisor host of a fleet. ``index`` is 1-based and gives the host's
    address on every fleet network; ``underlay`` its address towards the other
    hosts; ``capacity`` the most nodes it takes (None: no limit)."""

    name: str
    index: int
    underlay: ipaddress.IPv4Address
    capacity: int | None = None


def lab_hosts(count: int, underlay: str = DEFAULT_LAB_UNDERLAY, fleet_subnet: str | None = None) -> list[HostPlan]:
    """``count`` lab hosts ``h1``..``hN`` on ``underlay``, host k at its ``.k``."""
    if not 1 <= count <= MAX_HOSTS:
        raise ConfigError(f"--lab-hosts {count}: use 1 to {MAX_HOSTS} hosts")
    net = underlay_network(underlay, fleet_subnet)
    return [HostPlan(f"h{k}", k, net.network_address + k) for k in range(1, count + 1)]


def underlay_network(underlay: str, fleet_subnet: str | None = None) -> ipaddress.IPv4Network:
    """The underlay, checked: IPv4, private, room for the hosts and the
    harness, and apart from the fleet's own subnet (a host routes both)."""
    try:
        net = ipaddress.ip_network(underlay)
    except ValueError as err:
        raise ConfigError(f"underlay {underlay!r} is not an IPv4 network like {DEFAULT_LAB_UNDERLAY}") from err
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 24 or not net.is_private:
        raise ConfigError(f"underlay {underlay!r} must be a private IPv4 network of at least /24")
    if fleet_subnet is not None and net.overlaps(ipaddress.ip_network(fleet_subnet)):
        raise ConfigError(
            f"underlay {underlay} overlaps the fleet's subnet {fleet_subnet}: a host routes both, "
            "so choose an underlay outside it"
        )
    return net


def host_address(net: NetworkPlan, host: HostPlan) -> ipaddress.IPv4Address:
    """``host``'s address on fleet network ``net`` (host 1's is the gateway)."""
    return net.cidr.network_address + host.index


def host_bridge_mac(network: int, host: HostPlan) -> str:
    """The MAC of ``host``'s bridge on fleet network ``network``: host 1 keeps the
    gateway's (the single-host plan's, which saved guests remember); every other
    host gets its own, outside the nodes' range."""
    if host.index == 1:
        return f"{MAC_PREFIX}:{network:02x}:00"  # AddressPlan.network's gateway MAC
    return f"{HOST_MAC_PREFIX}:{network:02x}:{host.index:02x}"


def host_network(net: NetworkPlan, host: HostPlan) -> NetworkPlan:
    """``net`` as ``host`` creates it: the same name, bridge and segment, with
    the host's own address and bridge MAC."""
    return replace(net, gateway=host_address(net, host), mac=host_bridge_mac(net.index, host))


def vni(fleet: str, network: int) -> int:
    """The VXLAN network identifier of ``fleet``'s network ``network``: 24 bits,
    stable, and apart for two fleets on one underlay (the fleet name's hash
    above, the network index in the low 3 bits)."""
    digest = int(hashlib.sha256(fleet.encode()).hexdigest()[:6], 16) >> 3
    value = (digest << 3) | network
    return value or 8  # VNI 0 is legal but easy to mistake for "unset"


def place(
    nodes: Sequence[str],
    hosts: Sequence[HostPlan],
    pinned: Mapping[str, str] | None = None,
    already: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each of ``nodes`` on a host: pinned ones where ``pinned`` says, the
    others spread (the host with the fewest nodes, counting ``already`` placed
    ones, lowest index first), within each host's capacity."""
    if not hosts:
        raise ConfigError("a fleet needs at least one host")
    by_name = {h.name: h for h in hosts}
    pinned = dict(pinned or {})
    placed = dict(already or {})
    load = {h.name: 0 for h in hosts}
    for host in placed.values():
        if host in load:
            load[host] += 1
    for node, host in pinned.items():
        if host not in by_name:
            raise ConfigError(f"node {node} is pinned to host {host!r}, which is not one of {', '.join(by_name)}")
    out: dict[str, str] = {}

    def take(node: str, host: HostPlan) -> None:
        if host.capacity is not None and load[host.name] >= host.capacity:
            raise ConfigError(
                f"host {host.name} takes at most {host.capacity} node(s) and is full: cannot place {node} there; "
                "raise its capacity in the hosts file or add a host"
            )
        load[host.name] += 1
        out[node] = host.name

    for node in nodes:
        if node in pinned:
            take(node, by_name[pinned[node]])
    for node in nodes:
        if node in pinned:
            continue
        free = [h for h in hosts if h.capacity is None or load[h.name] < h.capacity]
        if not free:
            total = sum(h.capacity or 0 for h in hosts)
            raise ConfigError(
                f"the hosts take {total} node(s) in all and are full: cannot place {node}; "
                "raise a capacity in the hosts file or add a host"
            )
        take(node, min(free, key=lambda h: (load[h.name], h.index)))
    return out


def nodes_on(placement: Mapping[str, str], host: str) -> list[str]:
    """The nodes ``placement`` puts on ``host``, in placement order."""
    return [node for node, where in placement.items() if where == host]
