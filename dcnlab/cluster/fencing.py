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

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from dcnlab.cluster.pcs import FenceDevice, host_map
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


def start_fence_virtd(fleet: Fleet, spec: ClusterSpec, timeout: float = 60.0) -> list[FenceEndpoint]:
    """The hypervisor side of fence_virt for this spec: the fleet's fence
    listeners (one per host) on the spec's fencing network and port
    (:meth:`Fleet.fence_listeners`), started or found running."""
    return fleet.fence_listeners(spec.fencing.network, spec.fencing.port, timeout)


def fence_listing_problems(
    expected: Mapping[str, set[str]], listed: Mapping[str, set[str]], *, exact: bool
) -> list[str]:
    """What is wrong with what each host's fence listener lists (``listed``:
    host -> domains) against where the fleet placed its nodes (``expected``):
    a placed domain the host's listener does not know, and with ``exact``
    (several hosts) a domain it lists that the placement puts elsewhere."""
    problems = []
    for host, want in expected.items():
        have = listed.get(host, set())
        where = f"host {host}'s listener" if host else "the listener"
        missing = sorted(want - have)
        if missing:
            problems.append(f"{where} does not list {', '.join(missing)}")
        extra = sorted(have - want)
        if exact and extra:
            problems.append(f"{where} lists {', '.join(extra)}, which the placement puts on no node of that host")
    return problems


def _map_nodes(value: str) -> dict[str, str]:
    """``pcmk_host_map`` ("n1:dom1;n2:dom2") as node -> domain."""
    pairs = [item.split(":", 1) for item in value.replace(" ", ";").split(";") if item.strip()]
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def fence_placement_problems(devices: Sequence[FenceDevice], have: Mapping[str, str | None]) -> list[str]:
    """The placement preflight: each host's fence device as the CIB has it
    (``have``: device id -> its ``pcmk_host_map``, None when the device is
    missing) against the devices the placement calls for. A device mapping
    a node its host does not run is the dangerous case: that host's
    fence_virtd would report the fence done without touching the node."""
    problems = []
    for dev in devices:
        value = have.get(dev.id)
        if value is None:
            problems.append(f"device {dev.id} for host {dev.host} ({', '.join(n.name for n in dev.nodes)}) is missing")
            continue
        got, want = _map_nodes(value), _map_nodes(host_map(dev.nodes))
        if got == want:
            continue
        foreign = sorted(set(got) - set(want))
        absent = sorted(set(want) - set(got))
        wrong = sorted(n for n in set(got) & set(want) if got[n] != want[n])
        said = [f"device {dev.id} maps {value!r}"]
        if foreign:
            said.append(f"{', '.join(foreign)} not on host {dev.host}")
        if absent:
            said.append(f"not {', '.join(absent)}, which host {dev.host} runs")
        if wrong:
            said.append(f"{', '.join(wrong)} to the wrong domain")
        problems.append(": ".join([said[0], ", ".join(said[1:])]))
    return problems


def install_key(nodes: Iterable[Node], endpoint: FenceEndpoint, path: str = KEY_ON_NODE) -> None:
    for node in nodes:
        node.put(endpoint.key, path, mode=0o600)
