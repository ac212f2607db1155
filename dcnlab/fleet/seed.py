"""Guest identity for images that boot from their own disk: a cloud-init
NoCloud seed.

The Debian stand-in gets its identity on the kernel command line (direct
kernel boot). An RHDE / RHEL qcow2 boots its own boot loader, so the same
facts (hostname, one static address per NIC, root's SSH key) travel on a
small ISO 9660 volume labelled CIDATA, attached as a read-only virtio
disk (``domain_xml(..., seed=PATH)``). cloud-init's NoCloud datasource finds it
by that label and reads ``meta-data``, ``user-data`` and ``network-config``
from its root.

:func:`seed_documents` is pure (unit tested); :func:`write_seed_image` runs
genisoimage (Debian package ``genisoimage``) or, failing that, xorriso.

Formats: cloud-init's NoCloud datasource and network configuration version 2
documentation. The documents are written as JSON, which YAML loaders (and so
cloud-init) read as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dcnlab.core.errors import ConfigError, ProvisionError
from dcnlab.core.proc import run_local
from dcnlab.fleet.spec import NetworkPlan, NodePlan

SEED_LABEL = "CIDATA"
SEED_FILES = ("meta-data", "user-data", "network-config")

_Json = str | int | bool | None | list["_Json"] | dict[str, "_Json"]


def _document(value: dict[str, _Json]) -> str:
    # JSON is YAML (cloud-init reads all three files with a YAML loader): no
    # YAML library needed, and no value can change the document's structure.
    return json.dumps(value, indent=2, ensure_ascii=True) + "\n"


@dataclass(frozen=True)
class Seed:
    """The three NoCloud documents, as file contents."""

    meta_data: str
    user_data: str
    network_config: str

    def files(self) -> dict[str, str]:
        return {"meta-data": self.meta_data, "user-data": self.user_data, "network-config": self.network_config}


def seed_documents(
    node: NodePlan,
    networks: Mapping[int, NetworkPlan],
    *,
    ssh_public_key: str,
    instance_id: str,
) -> Seed:
    """The NoCloud seed that gives ``node`` the identity the kernel command line gives the stand-in.

    - meta-data: ``instance-id`` (use something unique per run and node, e.g.
      ``f"{run_id}-{node.name}"``: cloud-init reruns its per-instance steps
      when it changes) and ``local-hostname``.
    - user-data: hostname; root may log in with ``ssh_public_key`` only
      (``disable_root: false``, ``ssh_pwauth: false``, no default user).
      No password: the seed is readable by every guest user; hacluster's is
      set over SSH, should pcsd be wanted (``pcs.host_auth_step``).
    - network-config v2: each NIC matched by its MAC, renamed ``eth<i>`` as on
      the stand-in, one static address, no DHCP, no gateway (the fleet
      networks are isolated).
    """
    key = ssh_public_key.strip()
    if "\n" in key or " AAAA" not in key:
        raise ConfigError("ssh_public_key must be one OpenSSH public key line (type AAAA... comment)")
    if not instance_id or "\n" in instance_id:
        raise ConfigError("instance_id must be a non-empty single line")
    missing = sorted({nic.network for nic in node.nics} - set(networks))
    if missing:
        raise ConfigError(f"{node.name} has NICs on networks {missing} that are not in the networks given")

    meta: dict[str, _Json] = {"instance-id": instance_id, "local-hostname": node.name}
    user: dict[str, _Json] = {
        "hostname": node.name,
        "preserve_hostname": False,
        "prefer_fqdn_over_hostname": False,
        # No "cloud-user"/default user: root with the run's key is the one way in,
        # as on the stand-in.
        "users": [],
        "disable_root": False,
        "ssh_authorized_keys": [key],
        "ssh_pwauth": False,
    }
    ethernets: dict[str, _Json] = {}
    for nic in node.nics:
        prefix = networks[nic.network].cidr.prefixlen
        ethernets[nic.guest_dev] = {
            "match": {"macaddress": nic.mac},
            "set-name": nic.guest_dev,
            "dhcp4": False,
            "dhcp6": False,
            "addresses": [f"{nic.address}/{prefix}"],
        }
    network: dict[str, _Json] = {"version": 2, "ethernets": ethernets}
    return Seed(
        meta_data=_document(meta),
        # cloud-init treats user-data as cloud-config only with this first line.
        user_data="#cloud-config\n" + _document(user),
        network_config=_document(network),
    )


def write_seed_image(seed: Seed, dest: Path, *, timeout: float = 60.0) -> Path:
    """Write ``seed`` as an ISO 9660 image labelled CIDATA at ``dest`` (mode 0600: it holds the run's identity).

    The file appears atomically (written beside ``dest``, then renamed).
    """
    tool = shutil.which("genisoimage") or shutil.which("xorriso")
    if tool is None:
        raise ProvisionError(
            "cannot make a cloud-init seed: neither genisoimage nor xorriso is installed "
            "(`apt-get install genisoimage`, or run ./dev setup)"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".seed-", dir=dest.parent) as tmp:
        src = Path(tmp) / "cidata"
        src.mkdir()
        for name, text in seed.files().items():
            (src / name).write_text(text)
        out = Path(tmp) / "seed.iso"
        files = [src / name for name in SEED_FILES]
        if Path(tool).name == "xorriso":
            argv: list[str | Path] = [tool, "-as", "mkisofs"]
        else:
            argv = [tool]
        # Joliet and Rock Ridge keep the lowercase, hyphenated names cloud-init looks for.
        run_local([*argv, "-quiet", "-output", out, "-volid", SEED_LABEL, "-joliet", "-rock", *files], timeout=timeout)
        os.chmod(out, 0o600)
        os.replace(out, dest)
    return dest
