"""Unit tests of the cloud-init NoCloud seed (dcnlab/fleet/seed.py) and its CD-ROM."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from domxml import small_domain_xml

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.seed import Seed, seed_documents, write_seed_image
from dcnlab.fleet.spec import FleetSpec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests dcnlab-t1-abc"


def load(text: str) -> Any:
    """Parse a seed document the way cloud-init does when PyYAML is here, else as the JSON it is."""
    try:
        import yaml
    except ImportError:
        return json.loads(text.removeprefix("#cloud-config\n"))
    as_yaml = yaml.safe_load(text)
    assert as_yaml == json.loads(text.removeprefix("#cloud-config\n"))
    return as_yaml


def _seed(instance_id: str = "t1-abc-dcn2") -> Seed:
    plan = FleetSpec(name="t1").plan()
    return seed_documents(
        plan.node(2, networks=2),
        {i: plan.network(i) for i in range(2)},
        ssh_public_key=KEY + "\n",
        instance_id=instance_id,
    )


def test_meta_data() -> None:
    meta = load(_seed().meta_data)
    assert meta == {"instance-id": "t1-abc-dcn2", "local-hostname": "dcn2"}


def test_user_data_is_cloud_config_for_root_key_only() -> None:
    text = _seed().user_data
    assert text.startswith("#cloud-config\n")
    user = load(text)
    assert user["hostname"] == "dcn2"
    assert user["preserve_hostname"] is False
    assert user["users"] == []  # no default cloud-user
    assert user["disable_root"] is False
    assert user["ssh_authorized_keys"] == [KEY]
    assert user["ssh_pwauth"] is False
    # No secret in a seed every guest user can read: hacluster's password is
    # set over SSH, should pcsd be wanted (pcs.host_auth_step).
    assert "chpasswd" not in user


def test_network_config_v2_matches_nics_by_mac() -> None:
    net = load(_seed().network_config)
    assert net["version"] == 2
    eth0, eth1 = net["ethernets"]["eth0"], net["ethernets"]["eth1"]
    plan = FleetSpec(name="t1").plan().node(2, networks=2)
    assert eth0["match"] == {"macaddress": plan.nics[0].mac}
    assert eth0["set-name"] == "eth0"
    assert eth0["addresses"] == ["10.77.0.12/24"]
    assert eth1["addresses"] == ["10.77.1.12/24"]
    assert eth0["dhcp4"] is False
    assert "gateway4" not in eth0
    assert "routes" not in eth0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ssh_public_key": "not a key"}, "OpenSSH public key"),
        ({"ssh_public_key": KEY + "\n" + KEY}, "OpenSSH public key"),
        ({"instance_id": ""}, "instance_id"),
    ],
)
def test_bad_input_is_config_error(kwargs: dict[str, str], fragment: str) -> None:
    plan = FleetSpec(name="t1").plan()
    args: dict[str, str] = {"ssh_public_key": KEY, "instance_id": "i-1"} | kwargs
    with pytest.raises(ConfigError, match=fragment):
        seed_documents(plan.node(1, networks=1), {0: plan.network(0)}, **args)


def test_nic_on_unknown_network_is_config_error() -> None:
    plan = FleetSpec(name="t1").plan()
    with pytest.raises(ConfigError, match=r"\[1\]"):
        seed_documents(plan.node(1, networks=2), {0: plan.network(0)}, ssh_public_key=KEY, instance_id="i")


def test_strings_cannot_break_the_documents() -> None:
    tricky = "x\n#cloud-config\nusers: [evil] \"q\" 'q' ünï \t"
    seed = _seed(instance_id=tricky.replace("\n", " "))
    assert load(seed.meta_data)["instance-id"] == tricky.replace("\n", " ")


@pytest.mark.skipif(not (shutil.which("genisoimage") or shutil.which("xorriso")), reason="needs genisoimage or xorriso")
def test_seed_image_is_iso9660_labelled_cidata(tmp_path: Path) -> None:
    dest = write_seed_image(_seed(), tmp_path / "seeds" / "dcn2-seed.iso")
    assert dest.is_file()
    assert dest.stat().st_mode & 0o777 == 0o600
    data = dest.read_bytes()
    # The primary volume descriptor sits at sector 16: type 1, "CD001", volume id at offset 40.
    pvd = data[16 * 2048 : 17 * 2048]
    assert pvd[1:6] == b"CD001"
    assert pvd[40:72].decode().strip() == "CIDATA"
    assert b"meta-data" in data or b"m\x00e\x00t\x00a\x00" in data  # Rock Ridge or Joliet name
    assert [p.name for p in dest.parent.iterdir()] == ["dcn2-seed.iso"]  # no temp files left
    if shutil.which("isoinfo"):
        listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(dest)], capture_output=True, text=True, check=True)
        assert sorted(listing.stdout.split()) == ["/meta-data", "/network-config", "/user-data"]
        user = subprocess.run(
            ["isoinfo", "-R", "-x", "/user-data", "-i", str(dest)], capture_output=True, text=True, check=True
        )
        assert user.stdout == _seed().user_data


def _xml(seed: Path | None) -> ET.Element:
    return ET.fromstring(small_domain_xml("t1", 1, "t1-abc", networks=1, seed=seed))


def test_domain_attaches_seed_as_a_readonly_virtio_disk_after_the_boot_disk() -> None:
    root = _xml(Path("/run/t1/seeds/dcn1.iso"))
    boot, seed = root.findall("devices/disk")
    assert seed.get("device") == "disk"
    assert seed.find("source").get("file") == "/run/t1/seeds/dcn1.iso"  # type: ignore[union-attr]
    assert seed.find("readonly") is not None
    assert seed.find("driver").get("type") == "raw"  # type: ignore[union-attr]
    # virtio, not an IDE CD-ROM: the guest kernel never saw that under OVMF on i440fx
    assert seed.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    # the boot disk stays first (vda) and is still what the VM boots from
    assert boot.find("target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]


def test_domain_without_seed_has_one_disk() -> None:
    assert [d.get("device") for d in _xml(None).findall("devices/disk")] == ["disk"]
