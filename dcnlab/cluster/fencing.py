"""The hypervisor side of fence_virt: fence_virtd's config and command line.

The cluster's fence device (``pcs stonith create fence_dcn fence_virt
ipaddr=GW ipport=PORT key_file=KEY ...``, see :mod:`dcnlab.cluster.pcs`) asks
a fence_virtd that listens on TCP at the gateway of a fleet network, that is on
the namespace side of the bridge, and that powers domains off through the
fleet's own libvirtd. Measured: 8/8 fences in 0.6-0.7 s with action off
(docs/facts.md), where the multicast listener timed out under load.

Formats and options come from fence-agents ``agents/virt``: the config file
is fence_virt.conf(5) (``fence_virtd { listener; backend; }``,
``listeners { tcp { address; port; family; key_file; } }``,
``backends { libvirt { uri; } }``), the daemon's flags from server/main.c
(``-F`` foreground, ``-w`` wait for the backend, ``-f`` config, ``-p`` pid
file, ``-d`` debug) and the client's from client/options.c (``-T`` ipaddr
switches fence_virt to TCP, ``-p`` ipport, ``-k`` key_file, ``-o`` action,
``-H`` domain, ``-t`` timeout).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import ConfigError
from dcnlab.core.proc import run_local
from dcnlab.core.wait import wait_until
from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor
from dcnlab.fleet.node import Node

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet

# fence_virtd and fence_virt agree on this when nothing is said (options.c).
DEFAULT_PORT = 1229
KEY_BYTES = 4096  # the customary fence_xvm.key size (dd bs=4k count=1)


def fence_virtd_conf(*, address: str, port: int, key_file: str | Path, libvirt_uri: str) -> str:
    """fence_virt.conf for a TCP listener on ``address:port`` and the libvirt
    backend on ``libvirt_uri`` (e.g. ``qemu:///system?socket=RUN/hv/run/libvirt-sock``).

    No ``module_path``: the compiled-in plugin directory is right for the
    distribution's package (``fence_virtd -l`` lists what it finds). hash and
    auth stay at sha256 on both sides, the defaults of fence_virtd and fence_virt.
    """
    values = {"address": address, "port": str(port), "key_file": str(key_file), "uri": libvirt_uri}
    for name, value in values.items():
        # simpleconfig quotes values with '"' and has no escape for it.
        if not value or any(c in value for c in '"\n;{}'):
            raise ConfigError(f"fence_virtd {name} {value!r} cannot be written into fence_virt.conf")
    return (
        "fence_virtd {\n"
        '\tlistener = "tcp";\n'
        '\tbackend = "libvirt";\n'
        "}\n"
        "\n"
        "listeners {\n"
        "\ttcp {\n"
        f'\t\taddress = "{address}";\n'
        f'\t\tport = "{port}";\n'
        '\t\tfamily = "ipv4";\n'
        f'\t\tkey_file = "{key_file}";\n'
        "\t}\n"
        "}\n"
        "\n"
        "backends {\n"
        "\tlibvirt {\n"
        f'\t\turi = "{libvirt_uri}";\n'
        "\t}\n"
        "}\n"
    )


def fence_virtd_argv(conf: str | Path, pidfile: str | Path, *, debug: int = 0) -> list[str]:
    """Run fence_virtd as a foreground child (stop it by PID).

    ``-p`` matters: without its own pid file a second fence_virtd on the host
    finds the default one taken and exits silently, after which every fence
    fails with "No data available" (docs/facts.md). ``-w`` makes it retry while
    the fleet's libvirtd is not reachable yet instead of giving up.
    """
    argv = ["fence_virtd", "-F", "-w", "-f", str(conf), "-p", str(pidfile)]
    if debug:
        argv += ["-d", str(debug)]
    return argv


def fence_virt_argv(spec: ClusterSpec, gateway: str, action: str = "list", domain: str | None = None) -> list[str]:
    """The agent's own command line, run on a node to check the fencing path
    end to end before the cluster relies on it (``list`` needs no domain;
    ``status`` and ``off`` do)."""
    argv = [
        "fence_virt",
        "-T",
        gateway,
        "-p",
        str(spec.fencing.port),
        "-k",
        spec.fencing.key_file,
        "-t",
        str(spec.fencing.timeout),
        "-o",
        action,
    ]
    if domain is not None:
        argv += ["-H", domain]
    elif action not in ("list", "monitor", "metadata"):
        raise ConfigError(f"fence_virt -o {action} needs a domain")
    return argv


KEY_ON_NODE = "/etc/cluster/fence_xvm.key"


@dataclass(frozen=True)
class FenceEndpoint:
    """Where guests send fence requests, and the key they sign them with."""

    address: str
    port: int
    key: bytes = field(repr=False)


def start_fence_virtd(fleet: Fleet, spec: ClusterSpec, timeout: float = 60.0) -> FenceEndpoint:
    """Start (or find running) the fleet's fence_virtd, listening on the
    gateway of the spec's fencing network.

    It runs under the embedded hypervisor's supervisor: inside the fleet's
    namespaces, reaped, and stopped with the hypervisor. There ``qemu:///system``
    is the run's private libvirtd, so a guest holding the key can power off
    this fleet's domains and nothing else on the machine.
    """
    hv = fleet.hv
    if not isinstance(hv, EmbeddedHypervisor):
        raise ConfigError(
            "fencing method fence_virt needs the embedded hypervisor (fence_virtd runs next to it); "
            "with --libvirt-uri use fencing method fence_virsh or none"
        )
    d = fleet.run_dir / "fence"
    d.mkdir(exist_ok=True)
    key_file = d / "fence_xvm.key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
    gateway = str(fleet.plan.network(spec.fencing.network).gateway)
    port = spec.fencing.port
    conf = d / "fence_virt.conf"
    conf.write_text(fence_virtd_conf(address=gateway, port=port, key_file=key_file, libvirt_uri="qemu:///system"))
    hv.start_service("fence_virtd", fence_virtd_argv(conf, d / "fence_virtd.pid"))

    def listening() -> bool:
        probe = ["nc", "-z", "-w", "2", gateway, str(port)]
        return run_local(probe, netns=hv.netns, timeout=10, check=False).ok

    wait_until(
        listening,
        timeout=timeout,
        what=f"fence_virtd to listen on {gateway}:{port} in namespace {hv.netns}",
        interval=0.3,
        describe_failure=lambda: hv.service_log("fence_virtd"),
    )
    return FenceEndpoint(gateway, port, key_file.read_bytes())


def install_key(nodes: Iterable[Node], endpoint: FenceEndpoint, path: str = KEY_ON_NODE) -> None:
    for node in nodes:
        node.put(endpoint.key, path, mode=0o600)
