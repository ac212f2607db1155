"""libvirt XML for fleet networks and nodes, built with ElementTree (never by
string pasting) so names and paths cannot break the document."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from dcnlab.fleet.provider import BootSpec, MachineSpec, Owner
from dcnlab.fleet.spec import NetworkPlan, NodePlan

OWNER_NS = "urn:dcnlab:owner:1"
OWNER_PREFIX = "dcnlab"
# i440fx: what every node boots on.
MACHINE = "pc"


def network_xml(net: NetworkPlan) -> str:
    """An isolated network (no <forward>): a bridge whose only other member is
    the namespace-side gateway address; no DHCP, no DNS, hence no dnsmasq."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = net.name
    ET.SubElement(root, "bridge", name=net.bridge, stp="off", delay="0")
    # A fixed bridge MAC: a guest restored from a cached state (dcnlab.ready.store)
    # still holds the gateway in its ARP cache, which must stay right.
    ET.SubElement(root, "mac", address=net.mac)
    ET.SubElement(root, "dns", enable="no")
    ET.SubElement(root, "ip", address=str(net.gateway), prefix=str(net.cidr.prefixlen))
    return ET.tostring(root, encoding="unicode")


def owner_metadata(owner: Owner, node: str) -> ET.Element:
    ET.register_namespace(OWNER_PREFIX, OWNER_NS)
    meta = ET.Element("metadata")
    ET.SubElement(meta, f"{{{OWNER_NS}}}owner", run=owner.run_id, fleet=owner.fleet, node=node)
    return meta


def parse_owner(domain_xml: str) -> Owner | None:
    """The owner label of a domain, or None when the harness did not create it."""
    root = ET.fromstring(domain_xml)
    el = root.find(f"metadata/{{{OWNER_NS}}}owner")
    if el is None:
        return None
    return Owner(run_id=el.get("run", ""), fleet=el.get("fleet", ""))


def machine_xml(m: MachineSpec) -> str:
    """The domain of one :class:`MachineSpec`."""
    return domain_xml(
        m.plan,
        owner=m.owner,
        domain_type=m.domain_type,
        vcpus=m.vcpus,
        memory_mib=m.memory_mib,
        disk=m.disk,
        console_log=m.console_log,
        boot=m.boot,
        networks=m.networks,
        seed=m.seed,
        uuid=m.uuid,
        firmware=m.firmware,
        nvram=m.nvram,
        oem_strings=m.oem_strings,
    )


def domain_xml(
    node: NodePlan,
    *,
    owner: Owner,
    domain_type: str,
    vcpus: int,
    memory_mib: int,
    disk: Path,
    console_log: Path,
    boot: BootSpec,
    networks: Mapping[int, NetworkPlan],
    seed: Path | None = None,
    uuid: str | None = None,
    firmware: str = "bios",
    nvram: Path | None = None,
    oem_strings: Sequence[str] = (),
) -> str:
    """The domain of one node. ``seed``: a cloud-init NoCloud image (see
    :mod:`dcnlab.fleet.seed`) attached as a read-only virtio disk, for images that boot
    from their own disk and take their identity from cloud-init. ``uuid``: the
    domain's UUID (libvirt makes one up when None); a domain restored from a
    save image must have the saved one (dcnlab.ready.store). ``firmware``:
    ``bios`` (SeaBIOS) or ``uefi`` (OVMF, chosen by libvirt's firmware
    auto-selection without secure boot; its variables in ``nvram``, a file
    of the run that goes with the domain). ``oem_strings``: SMBIOS type 11
    strings (systemd credentials, dcnlab.fleet.credentials)."""
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = node.domain
    if uuid is not None:
        ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "title").text = f"dcnlab fleet {owner.fleet} node {node.name}"
    root.append(owner_metadata(owner, node.name))
    ET.SubElement(root, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(root, "vcpu").text = str(vcpus)
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine=MACHINE).text = "hvm"
    if firmware == "uefi":
        if nvram is None:
            raise ValueError("a UEFI domain needs its nvram path")
        os_el.set("firmware", "efi")
        # Secure boot wants q35 and SMM; the images certified here boot
        # without it, and the non-secure OVMF build supports i440fx.
        fw = ET.SubElement(os_el, "firmware")
        ET.SubElement(fw, "feature", enabled="no", name="secure-boot")
        ET.SubElement(fw, "feature", enabled="no", name="enrolled-keys")
        ET.SubElement(os_el, "nvram").text = str(nvram)
    elif firmware != "bios":
        raise ValueError(f"firmware {firmware!r}: bios or uefi")
    if oem_strings:
        ET.SubElement(os_el, "smbios", mode="sysinfo")
        sysinfo = ET.SubElement(root, "sysinfo", type="smbios")
        oem = ET.SubElement(sysinfo, "oemStrings")
        for text in oem_strings:
            ET.SubElement(oem, "entry").text = text
    if boot.kernel is not None:
        ET.SubElement(os_el, "kernel").text = str(boot.kernel)
        if boot.initrd is not None:
            ET.SubElement(os_el, "initrd").text = str(boot.initrd)
        ET.SubElement(os_el, "cmdline").text = boot.cmdline
    else:
        ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    if domain_type == "kvm":
        ET.SubElement(root, "cpu", mode="host-model")
    ET.SubElement(root, "clock", offset="utc")
    # A guest that powers itself off or crashes stays down: faults and fencing
    # decide when a node comes back, never libvirt on its own.
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    dev = ET.SubElement(root, "devices")
    d = ET.SubElement(dev, "disk", type="file", device="disk")
    ET.SubElement(d, "driver", name="qemu", type="qcow2", cache="unsafe", discard="unmap")
    ET.SubElement(d, "source", file=str(disk))
    ET.SubElement(d, "target", dev="vda", bus="virtio")
    if seed is not None:
        # A read-only virtio disk, not a CD-ROM: NoCloud finds its volume by label on
        # any block device, and every image with a virtio root has the driver. An IDE
        # CD-ROM on i440fx was never seen by the guest kernel under OVMF (docs/facts.md).
        cd = ET.SubElement(dev, "disk", type="file", device="disk")
        ET.SubElement(cd, "driver", name="qemu", type="raw")
        ET.SubElement(cd, "source", file=str(seed))
        ET.SubElement(cd, "target", dev="vdb", bus="virtio")
        ET.SubElement(cd, "readonly")
    for nic in node.nics:
        i = ET.SubElement(dev, "interface", type="network")
        ET.SubElement(i, "source", network=networks[nic.network].name)
        ET.SubElement(i, "mac", address=nic.mac)
        ET.SubElement(i, "target", dev=nic.tap)
        ET.SubElement(i, "model", type="virtio")
        # Fixed PCI slots make eth<i> <-> network i deterministic in the guest.
        ET.SubElement(
            i, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{nic.pci_slot:02x}", function="0x0"
        )
    serial = ET.SubElement(dev, "serial", type="pty")
    # The log is written by virtlogd on the host: it survives a fenced or crashed guest.
    ET.SubElement(serial, "log", file=str(console_log), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(dev, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    # Under TCG sshd and the kernel starve for entropy without a virtio RNG.
    rng = ET.SubElement(dev, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    ET.SubElement(dev, "controller", type="usb", model="none")
    ET.SubElement(dev, "memballoon", model="none")
    return ET.tostring(root, encoding="unicode")
