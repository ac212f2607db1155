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

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.node import Node
from dcnlab.fleet.provider import FenceEndpoint

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet

# fence_virtd and fence_virt agree on this when nothing is said (options.c).
DEFAULT_PORT = 1229


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


def start_fence_virtd(fleet: Fleet, spec: ClusterSpec, timeout: float = 60.0) -> FenceEndpoint:
    """The hypervisor side of fence_virt for this spec: the fleet's fence
    listener on the gateway of the spec's fencing network and port
    (:meth:`Fleet.fence_listener`), started or found running."""
    return fleet.fence_listener(spec.fencing.network, spec.fencing.port, timeout)


def install_key(nodes: Iterable[Node], endpoint: FenceEndpoint, path: str = KEY_ON_NODE) -> None:
    for node in nodes:
        node.put(endpoint.key, path, mode=0o600)
