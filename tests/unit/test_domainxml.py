import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from dcnlab.fleet.libvirt.domainxml import domain_xml, network_xml, parse_owner
from dcnlab.fleet.provider import BootSpec, Owner
from dcnlab.fleet.spec import FleetSpec


def _xml(kernel: Path | None = Path("/img/vmlinuz"), **firmware: Any) -> str:
    plan = FleetSpec(name="t1").plan()
    return domain_xml(
        plan.node(1, networks=2),
        owner=Owner("t1-abc", "t1"),
        domain_type="qemu",
        vcpus=1,
        memory_mib=1024,
        disk=Path("/run/t1/disks/dcn1.qcow2"),
        console_log=Path("/run/t1/logs/dcn1.console.log"),
        boot=BootSpec(kernel, Path("/img/initrd.img") if kernel else None, "root=/dev/vda rw"),
        networks={i: plan.network(i) for i in range(2)},
        **firmware,
    )


def test_domain_carries_owner_label() -> None:
    owner = parse_owner(_xml())
    assert owner == Owner("t1-abc", "t1")


def test_foreign_domain_has_no_owner() -> None:
    assert parse_owner("<domain type='qemu'><name>x</name></domain>") is None
    assert parse_owner("<domain><metadata><other xmlns='urn:x'/></metadata></domain>") is None


def test_nics_are_in_network_order_on_fixed_pci_slots() -> None:
    root = ET.fromstring(_xml())
    nics = root.findall("devices/interface")
    assert [n.find("source").get("network") for n in nics] == ["dcnlab-t1-n0", "dcnlab-t1-n1"]  # type: ignore[union-attr]
    slots = [int(n.find("address").get("slot"), 16) for n in nics]  # type: ignore[arg-type, union-attr]
    assert slots == sorted(slots)
    assert root.get("type") == "qemu"


def test_direct_kernel_boot_and_disk_boot() -> None:
    root = ET.fromstring(_xml())
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert root.findtext("os/cmdline") == "root=/dev/vda rw"
    disk_boot = ET.fromstring(_xml(kernel=None))
    assert disk_boot.find("os/kernel") is None
    assert disk_boot.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]


def test_console_is_logged_to_a_file() -> None:
    root = ET.fromstring(_xml())
    assert root.find("devices/serial/log").get("file") == "/run/t1/logs/dcn1.console.log"  # type: ignore[union-attr]


def test_network_is_isolated_without_dhcp_or_dns() -> None:
    net = FleetSpec(name="t1").plan().network(1)
    root = ET.fromstring(network_xml(net))
    assert root.find("forward") is None
    assert root.find("ip/dhcp") is None
    assert root.find("dns").get("enable") == "no"  # type: ignore[union-attr]
    assert root.find("ip").get("address") == "10.77.1.1"  # type: ignore[union-attr]
    assert root.find("bridge").get("stp") == "off"  # type: ignore[union-attr]


def test_bios_is_the_default_and_uefi_asks_libvirt_for_ovmf_without_secure_boot() -> None:
    bios = ET.fromstring(_xml(None)).find("os")
    assert bios is not None
    assert bios.get("firmware") is None
    assert bios.find("nvram") is None
    nvram = Path("/run/t1/nvram/dcn1_VARS.fd")
    os_el = ET.fromstring(_xml(None, firmware="uefi", nvram=nvram)).find("os")
    assert os_el is not None
    assert os_el.get("firmware") == "efi"
    assert os_el.findtext("nvram") == str(nvram)  # a file of the run: removed with it
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    assert features == {"secure-boot": "no", "enrolled-keys": "no"}
    assert os_el.find("boot").get("dev") == "hd"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="nvram"):
        _xml(None, firmware="uefi")
    with pytest.raises(ValueError, match="bios or uefi"):
        _xml(None, firmware="efi")
