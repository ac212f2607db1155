"""Guest identity through SMBIOS type 11 systemd credentials: no agent in the
guest reads a seed; systemd (252 or later) imports the credentials the
hypervisor puts in the SMBIOS OEM strings (libvirt ``<sysinfo type='smbios'>
<oemStrings>``), and its own tmpfiles step writes the files.

What systemd 252 (Debian 12, RHEL 9) offers, from its manual pages
(systemd.system-credentials(7), tmpfiles.d(5), smbios-type-11(7)):

- ``ssh.authorized_keys.root``: root's ``authorized_keys``, written by
  systemd's own ``/usr/lib/tmpfiles.d/provision.conf`` if the file is absent;
- ``tmpfiles.extra``: more tmpfiles.d lines; ``f+~`` writes a file from
  Base64, so a file's newlines need no escaping. It writes the node's
  ``/etc/hostname`` and one systemd-networkd ``.network`` file per NIC
  (matched by MAC, one static address, no DHCP), as the NoCloud seed's
  network-config does (dcnlab/fleet/seed.py).

What 252 lacks: ``system.hostname`` and ``network.network.*`` credentials
come with systemd 254 and 253. So ``/etc/hostname`` is written by tmpfiles
after PID 1 has set the hostname from the image's file: an image using this
channel on systemd 252 applies it with a one-line unit (``hostname -F
/etc/hostname`` after systemd-tmpfiles-setup.service); docs/facts.md.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import NetworkPlan, NodePlan

PREFIX = "io.systemd.credential.binary:"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def network_file(mac: str, address: str, prefix: int) -> str:
    """A systemd-networkd ``.network`` for one NIC: matched by MAC, one
    static address, no DHCP, no gateway (the fleet networks are isolated)."""
    return (
        f"[Match]\nMACAddress={mac}\n\n"
        f"[Network]\nAddress={address}/{prefix}\nDHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def identity_credentials(node: NodePlan, networks: Mapping[int, NetworkPlan], *, ssh_public_key: str) -> dict[str, str]:
    """Credential name -> value giving ``node`` the identity the kernel
    command line gives the stand-in: hostname, one static address per NIC
    by MAC, root's key (and nothing else: no password anywhere)."""
    key = ssh_public_key.strip()
    if "\n" in key or " AAAA" not in key:
        raise ConfigError("ssh_public_key must be one OpenSSH public key line (type AAAA... comment)")
    missing = sorted({nic.network for nic in node.nics} - set(networks))
    if missing:
        raise ConfigError(f"{node.name} has NICs on networks {missing} that are not in the networks given")
    lines = [f"f+~ /etc/hostname 0644 root root - {_b64(node.name + chr(10))}"]
    for nic in node.nics:
        text = network_file(nic.mac, str(nic.address), networks[nic.network].cidr.prefixlen)
        lines.append(f"f+~ /etc/systemd/network/10-dcnlab-{nic.guest_dev}.network 0644 root root - {_b64(text)}")
    return {"ssh.authorized_keys.root": key + "\n", "tmpfiles.extra": "\n".join(lines) + "\n"}


def oem_strings(credentials: Mapping[str, str]) -> list[str]:
    """The SMBIOS type 11 strings carrying ``credentials`` (binary form:
    Base64, so no value can break the string or the XML around it)."""
    return [f"{PREFIX}{name}={_b64(value)}" for name, value in sorted(credentials.items())]
