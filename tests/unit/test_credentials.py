"""Identity through SMBIOS systemd credentials: what each credential holds,
and how it reaches the domain XML."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from domxml import small_domain_xml

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.credentials import PREFIX, identity_credentials, oem_strings
from dcnlab.fleet.spec import FleetSpec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample dcnlab-run"
PLAN = FleetSpec(name="t1").plan()
NODE = PLAN.node(2, networks=2)
NETWORKS = {i: PLAN.network(i) for i in range(2)}


def files_of(tmpfiles: str) -> dict[str, str]:
    """tmpfiles ``f+~`` lines -> path: decoded content."""
    out = {}
    for line in tmpfiles.splitlines():
        kind, path, mode, user, group, age, arg = line.split(" ", 6)
        assert (kind, mode, user, group, age) == ("f+~", "0644", "root", "root", "-")
        out[path] = base64.b64decode(arg).decode()
    return out


def test_hostname_addresses_by_mac_and_roots_key() -> None:
    creds = identity_credentials(NODE, NETWORKS, ssh_public_key=KEY + "\n")
    assert creds["ssh.authorized_keys.root"] == KEY + "\n"
    files = files_of(creds["tmpfiles.extra"])
    assert files["/etc/hostname"] == "dcn2\n"
    eth1 = files["/etc/systemd/network/10-dcnlab-eth1.network"]
    assert f"MACAddress={NODE.nics[1].mac}" in eth1
    assert f"Address={NODE.nics[1].address}/24" in eth1
    assert "DHCP=no" in eth1
    assert set(creds) == {"ssh.authorized_keys.root", "tmpfiles.extra"}  # nothing else, no password


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="one OpenSSH public key line"):
        identity_credentials(NODE, NETWORKS, ssh_public_key="not a key")
    with pytest.raises(ConfigError, match=r"NICs on networks \[1\]"):
        identity_credentials(NODE, {0: NETWORKS[0]}, ssh_public_key=KEY)


def test_credentials_travel_as_smbios_oem_strings_in_the_domain() -> None:
    strings = oem_strings(identity_credentials(NODE, NETWORKS, ssh_public_key=KEY))
    assert all(s.startswith(PREFIX) for s in strings)
    name, value = strings[0].removeprefix(PREFIX).split("=", 1)
    assert name == "ssh.authorized_keys.root"
    assert base64.b64decode(value).decode() == KEY + "\n"
    xml = small_domain_xml("t1", 2, "t1-abc", oem_strings=strings)
    root = ET.fromstring(xml)
    assert root.find("os/smbios").get("mode") == "sysinfo"  # type: ignore[union-attr]
    assert [e.text for e in root.findall("sysinfo[@type='smbios']/oemStrings/entry")] == strings
