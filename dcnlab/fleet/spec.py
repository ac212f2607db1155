"""What a fleet is: a frozen, validated description and its address plan.

Everything here is pure (no I/O), so naming, addressing and MAC rules are unit
tested without a hypervisor. Validation happens before anything is created.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from dcnlab.core.errors import ConfigError
from dcnlab.image.firmware import FIRMWARE_CHOICES
from dcnlab.image.identity import IDENTITY_CHOICES

FLEET_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
MAX_NODES = 32
MAX_NETWORKS = 8
MAX_BOOT_TIMEOUT = 3 * 3600
MAC_PREFIX = "52:54:00:dc"  # QEMU's locally administered OUI, then "dc"
LOGIN_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
MIN_MEMORY_MIB = 768  # docs/facts.md: 512 MiB boots but leaves ~100 MB free once the cluster runs


def check_fleet_name(name: str) -> str:
    if not FLEET_NAME_RE.match(name):
        raise ConfigError(
            f"fleet name {name!r} is not valid: use 1-20 characters, a lowercase letter first, "
            "then lowercase letters, digits or '-' (it becomes part of namespace and domain names)"
        )
    return name


def fleet_tag(name: str) -> str:
    """A short stable tag for names that must fit 15 characters (taps, bridges)."""
    return "dc" + hashlib.sha256(name.encode()).hexdigest()[:4]


def network_prefix(fleet: str) -> str:
    """What every network name of ``fleet`` starts with: networks carry no owner
    label in libvirt 9.0, so a teardown knows a fleet's networks by name."""
    return f"dcnlab-{fleet}-n"


@dataclass(frozen=True)
class FleetSpec:
    """The shape of a fleet. Node indexes start at 1; networks at 0."""

    name: str
    nodes: int = 3
    networks: int = 2
    vcpus: int = 1
    memory_mib: int = 1024
    subnet: str = "10.77.0.0/16"
    # Seconds a boot may take to answer SSH; None: scaled from the accelerator
    # and the host's load (Fleet.boot_seconds).
    boot_timeout: float | None = None
    # Firmware of disk-booted images: auto (from the partition table), bios, uefi.
    firmware: str = "auto"
    # Identity channel of disk-booted images: auto (what the image says it
    # reads, else every channel), cloud-init or smbios.
    identity: str = "auto"
    # Who the harness logs in as: root (with the run's key), or a user baked
    # into the image, with the private key it accepts (dcnlab.image.identity.login).
    login_user: str = "root"
    login_key: str | None = None

    def __post_init__(self) -> None:
        check_fleet_name(self.name)
        if self.firmware not in FIRMWARE_CHOICES:
            raise ConfigError(f"--firmware {self.firmware}: choose one of {', '.join(FIRMWARE_CHOICES)}")
        if not LOGIN_USER_RE.match(self.login_user):
            raise ConfigError(
                f"--login-user {self.login_user!r} is not a user name: use a lowercase letter or '_' first, "
                "then up to 31 lowercase letters, digits, '_' or '-'"
            )
        if self.identity not in IDENTITY_CHOICES:
            raise ConfigError(f"--identity {self.identity}: choose one of {', '.join(IDENTITY_CHOICES)}")
        if self.boot_timeout is not None and not 1 <= self.boot_timeout <= MAX_BOOT_TIMEOUT:
            raise ConfigError(
                f"--boot-timeout {self.boot_timeout:g}: use 1 to {MAX_BOOT_TIMEOUT} seconds "
                "(or leave it out for the default)"
            )
        if not 1 <= self.nodes <= MAX_NODES:
            raise ConfigError(f"--nodes {self.nodes}: a fleet needs 1 to {MAX_NODES} nodes")
        if not 1 <= self.networks <= MAX_NETWORKS:
            raise ConfigError(f"--networks {self.networks}: a fleet needs 1 to {MAX_NETWORKS} networks")
        if not 1 <= self.vcpus <= 16:
            raise ConfigError(f"--vcpus {self.vcpus}: use 1 to 16 vCPUs per node")
        if self.memory_mib < MIN_MEMORY_MIB:
            raise ConfigError(
                f"--memory {self.memory_mib} MiB is too small: use at least {MIN_MEMORY_MIB} MiB "
                "(a node running the cluster stack needs it)"
            )
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as err:
            raise ConfigError(f"subnet {self.subnet!r} is not an IPv4 network like 10.77.0.0/16") from err
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 24 - (MAX_NETWORKS - 1).bit_length():
            raise ConfigError(f"subnet {self.subnet!r} must be IPv4 and at most /21 (one /24 per network)")
        if not net.is_private:
            raise ConfigError(f"subnet {self.subnet!r} must be a private range (fleet addresses stay in a namespace)")

    def plan(self, private_hypervisor: bool = False) -> AddressPlan:
        """The address plan; ``private_hypervisor``: the fleet has a libvirtd
        of its own (the embedded one), where domain names need no fleet name."""
        return AddressPlan(self.name, ipaddress.IPv4Network(self.subnet), private_hypervisor)


@dataclass(frozen=True)
class NetworkPlan:
    index: int
    name: str  # libvirt network name
    bridge: str
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address  # the namespace side of the bridge
    mac: str  # the bridge's (the gateway's) MAC


@dataclass(frozen=True)
class NicPlan:
    network: int
    guest_dev: str  # eth0, eth1... (net.ifnames=0, PCI slot order)
    mac: str
    tap: str
    address: ipaddress.IPv4Address
    pci_slot: int


@dataclass(frozen=True)
class NodePlan:
    index: int
    name: str  # hostname and cluster node name
    domain: str  # libvirt domain name (unique per hypervisor)
    nics: tuple[NicPlan, ...] = field(default_factory=tuple)

    def address(self, network: int = 0) -> str:
        return str(self.nics[network].address)


@dataclass(frozen=True)
class AddressPlan:
    """Deterministic names, MACs and addresses: node k on network i is always
    ``<subnet>.i.(10+k)`` with MAC ``52:54:00:dc:<i>:<k>`` on guest ``eth<i>``,
    and the gateway ``<subnet>.i.1`` has MAC ``52:54:00:dc:<i>:00``.

    Addresses and MACs do not depend on the fleet's name: every fleet has its
    own bridges (in its own namespace), and a guest saved in one fleet
    (dcnlab.ready.store) keeps its MAC, a part of its ABI, when another fleet
    restores it. Networks, bridges and taps carry the fleet's name; domains
    carry it only on a shared hypervisor: on a private one (the embedded
    libvirtd) a domain is ``dcnlab-dcn<k>`` whatever the fleet, because
    libvirt checks a restored domain's name against the saved one."""

    fleet: str
    subnet: ipaddress.IPv4Network
    private_hypervisor: bool = False

    FIRST_HOST = 10
    FIRST_NIC_SLOT = 3  # PCI slots 0-2 are the host bridge, ISA bridge and VGA-less gap

    def network(self, index: int) -> NetworkPlan:
        base = int(self.subnet.network_address) + (index << 8)
        cidr = ipaddress.IPv4Network((base, 24))
        return NetworkPlan(
            index=index,
            name=f"{network_prefix(self.fleet)}{index}",
            bridge=f"{fleet_tag(self.fleet)}br{index}",
            cidr=cidr,
            gateway=cidr.network_address + 1,
            mac=f"{MAC_PREFIX}:{index:02x}:00",
        )

    def mac_owners(self, networks: int, nodes: int = MAX_NODES) -> dict[str, str]:
        """Every MAC the plan can give a node (spares included), and its node."""
        return {f"{MAC_PREFIX}:{i:02x}:{k:02x}": f"dcn{k}" for k in range(1, nodes + 1) for i in range(networks)}

    def node(self, index: int, networks: int) -> NodePlan:
        if not 1 <= index <= 255 - self.FIRST_HOST - 1:
            raise ConfigError(f"node index {index} is outside the address plan (1..244)")
        name = f"dcn{index}"
        nics = tuple(
            NicPlan(
                network=i,
                guest_dev=f"eth{i}",
                mac=f"{MAC_PREFIX}:{i:02x}:{index:02x}",
                tap=f"{fleet_tag(self.fleet)}{index}n{i}",
                address=self.network(i).cidr.network_address + self.FIRST_HOST + index,
                pci_slot=self.FIRST_NIC_SLOT + i,
            )
            for i in range(networks)
        )
        domain = f"dcnlab-{name}" if self.private_hypervisor else f"dcnlab-{self.fleet}-{name}"
        return NodePlan(index=index, name=name, domain=domain, nics=nics)
