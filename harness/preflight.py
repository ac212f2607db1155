"""What a DCN image must hold before a cluster is built on it, and the pure
parsers the preflight suite (``suites/image``) reads node output with.

Everything here is data or a pure function of command output, so it is unit
tested without a VM. Each requirement carries the fix to print when it is
missing, for both image families the harness meets: Debian (``deb``, the
stand-in built by ``images/``) and RHEL / RHDE (``rpm``).

Sources of the port and package facts:
- HA ports: firewalld's ``config/services/high-availability.xml`` (tcp 2224
  pcsd; udp 5404-5405 corosync; tcp 3121 pacemaker_remote, 5403 qnetd, 21064
  dlm, which this harness's clusters do not use).
- RHEL packages: the fence-agents spec file (``fence-virt`` ships fence_xvm
  and fence_virt; RHEL builds skip fence_virsh), and the High Availability
  add-on's package names (pcs, pacemaker, pacemaker-cli, corosync,
  resource-agents, fence-agents-all).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["deb", "rpm"]

_RHEL_LIKE = {"rhel", "fedora", "centos", "rocky", "almalinux", "ol", "openela"}
_DEBIAN_LIKE = {"debian", "ubuntu"}


class PreflightError(ValueError):
    """Node output the preflight cannot make sense of."""


def os_family(os_release: str) -> Family:
    """``deb`` or ``rpm`` from the text of /etc/os-release (ID, then ID_LIKE)."""
    fields: dict[str, str] = {}
    for line in os_release.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    ids = [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]
    for ident in ids:
        if ident in _DEBIAN_LIKE:
            return "deb"
        if ident in _RHEL_LIKE:
            return "rpm"
    raise PreflightError(
        f"unknown OS family (ID={fields.get('ID', '?')!r}, ID_LIKE={fields.get('ID_LIKE', '')!r}); "
        "the preflight knows Debian-like and RHEL-like images"
    )


def install_hint(family: Family, packages: Iterable[str]) -> str:
    names = " ".join(packages)
    if family == "deb":
        return f"add {names} to the image recipe's packages.include (apt-get install {names})"
    # rpm-ostree images cannot dnf install: the package belongs in the blueprint.
    return f"add {names} to the image-builder blueprint's [[packages]] (images/rhde/), or `dnf install {names}`"


# --------------------------------------------------------------------------- guest shell


def fetch_command(url: str) -> str:
    """A shell HTTP GET that works on the stand-in (busybox wget) and on RHEL (curl).

    Bounded by ``timeout``, not wget's -T: busybox 1.35's static wget crashes with -T.
    """
    q = shlex.quote(url)
    return f"if command -v curl >/dev/null; then curl -fsS --max-time 5 {q}; else timeout 5 busybox wget -qO- {q}; fi"


def retry_shell(command: str, attempts: int = 20, pause: float = 0.5) -> str:
    """``command`` retried in the guest's shell, a bounded number of times (a
    server just started may not listen yet); exits 0 on the first success."""
    return f"for _ in $(seq {attempts}); do {command} && exit 0; sleep {pause}; done; exit 1"


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class PackageRequirement:
    what: str  # the component, as a person names it
    deb: str
    rpm: str
    why: str

    def package(self, family: Family) -> str:
        return self.deb if family == "deb" else self.rpm


REQUIRED_PACKAGES: tuple[PackageRequirement, ...] = (
    PackageRequirement("pacemaker", "pacemaker", "pacemaker", "the cluster resource manager"),
    PackageRequirement(
        "pacemaker command line",
        "pacemaker-cli-utils",
        "pacemaker-cli",
        "crm_mon, crm_resource, cibadmin; without crm_mon `pcs cluster setup --start` fails",
    ),
    PackageRequirement("corosync", "corosync", "corosync", "cluster membership and messaging (knet links)"),
    PackageRequirement("pcs", "pcs", "pcs", "pcs and pcsd, to configure the cluster"),
    PackageRequirement(
        "resource-agents",
        "resource-agents",
        "resource-agents",
        "the OCF agents the cluster runs: ocf:heartbeat:IPaddr2, ocf:heartbeat:podman",
    ),
    PackageRequirement("fence agents", "fence-agents", "fence-agents-all", "fence agents, fence_virsh on Debian"),
    PackageRequirement("fence-virt", "fence-virt", "fence-virt", "fence_xvm and fence_virt, to fence virtual nodes"),
    PackageRequirement("podman", "podman", "podman", "the container workloads (ocf:heartbeat:podman)"),
)


def package_query_command(family: Family, packages: Sequence[str]) -> str:
    """A shell command printing ``NAME<TAB>STATUS<TAB>VERSION`` per installed package.

    Missing packages print nothing on stdout (and make the command exit non-zero).
    """
    names = " ".join(shlex.quote(p) for p in packages)
    if family == "deb":
        return f"dpkg-query -W -f '${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' {names}"
    return f"rpm -q --qf '%{{NAME}}\\tii \\t%{{VERSION}}-%{{RELEASE}}\\n' {names}"


def parse_package_query(stdout: str) -> dict[str, str]:
    """name -> version of every *installed* package in :func:`package_query_command` output."""
    installed: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        # rpm prints "package X is not installed" for absent ones: no tabs.
        if len(parts) != 3:
            continue
        name, status, version = parts
        # dpkg's abbreviated status: "ii " is installed; "rc " left config files only.
        if status.startswith("ii"):
            installed[name] = version
    return installed


def missing_packages(family: Family, installed: Mapping[str, str]) -> list[str]:
    """One line per missing required package: what it is, why, and the fix."""
    lines = []
    for req in REQUIRED_PACKAGES:
        pkg = req.package(family)
        if pkg not in installed:
            lines.append(f"{pkg} is not installed ({req.why}): {install_hint(family, [pkg])}")
    return lines


# --------------------------------------------------------------------------- units


CLUSTER_UNITS: tuple[tuple[str, str, str], ...] = (
    # unit, deb package, rpm package
    ("pcsd.service", "pcs", "pcs"),
    ("corosync.service", "corosync", "corosync"),
    ("pacemaker.service", "pacemaker", "pacemaker"),
)


def parse_systemctl_show(stdout: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,... UNIT...`` output -> {unit id: {property: value}}.

    systemctl separates units by a blank line; each block must carry ``Id``.
    """
    units: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", stdout.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if not props:
            continue
        if "Id" not in props:
            raise PreflightError(f"systemctl show block without Id=: {block!r}")
        units[props["Id"]] = props
    return units


# --------------------------------------------------------------------------- firewall


@dataclass(frozen=True, order=True)
class Port:
    proto: Literal["tcp", "udp"]
    port: int

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


# What a cluster of this harness needs open between nodes (firewalld's
# high-availability service opens these and more).
HA_PORTS: tuple[Port, ...] = (Port("tcp", 2224), Port("udp", 5404), Port("udp", 5405))
FIREWALLD_HA_SERVICE = "high-availability"
HA_FIX = (
    "open them: `firewall-cmd --permanent --add-service=high-availability && firewall-cmd --reload` "
    '(in a blueprint: [customizations.firewall.services] enabled = ["high-availability"]), '
    "or nftables rules accepting tcp dport 2224 and udp dport 5404-5405"
)


@dataclass(frozen=True)
class PortRange:
    proto: str  # "tcp", "udp" or "any"
    low: int
    high: int

    def covers(self, port: Port) -> bool:
        return self.proto in ("any", port.proto) and self.low <= port.port <= self.high


@dataclass(frozen=True)
class InputFilter:
    """What one firewall layer does to packets coming into the node."""

    source: str  # "firewalld zone public", "nftables", "iptables"
    filtering: bool  # drops or rejects some traffic by default
    accepted: tuple[PortRange, ...] = ()
    accepts_all: bool = False  # an unconditional accept before any drop
    notes: tuple[str, ...] = field(default=())

    def missing(self, required: Iterable[Port] = HA_PORTS) -> list[Port]:
        if not self.filtering or self.accepts_all:
            return []
        return [p for p in required if not any(r.covers(p) for r in self.accepted)]


def parse_port_spec(spec: str, proto: str) -> PortRange:
    """``"5404-5405"`` or ``"2224"`` (firewalld, iptables use ':' for ranges too)."""
    low, _, high = spec.replace(":", "-").partition("-")
    try:
        return PortRange(proto, int(low), int(high or low))
    except ValueError as err:
        raise PreflightError(f"not a port or port range: {spec!r}") from err


def parse_firewalld_active_zones(stdout: str) -> list[str]:
    """Zone names from ``firewall-cmd --get-active-zones`` (names are the unindented lines)."""
    return [line.strip() for line in stdout.splitlines() if line.strip() and not line[0].isspace()]


def firewalld_zone_filter(zone: str, services: str, ports: str) -> InputFilter:
    """A zone from ``--list-services`` and ``--list-ports`` output (space separated)."""
    accepted: list[PortRange] = []
    if FIREWALLD_HA_SERVICE in services.split():
        accepted += [PortRange(p.proto, p.port, p.port) for p in HA_PORTS]
    for item in ports.split():
        spec, _, proto = item.partition("/")
        accepted.append(parse_port_spec(spec, proto or "any"))
    # firewalld zones reject what they do not allow (except the "trusted" zone).
    return InputFilter(f"firewalld zone {zone}", filtering=zone != "trusted", accepted=tuple(accepted))


_VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "queue")


def _nft_ports(right: Any) -> list[tuple[int, int]] | None:
    if isinstance(right, int):
        return [(right, right)]
    if isinstance(right, dict):
        if "range" in right and len(right["range"]) == 2:
            low, high = right["range"]
            if isinstance(low, int) and isinstance(high, int):
                return [(low, high)]
        if "set" in right:
            out: list[tuple[int, int]] = []
            for item in right["set"]:
                sub = _nft_ports(item)
                if sub is None:
                    return None
                out += sub
            return out
    return None


def _nft_rule_ports(exprs: list[dict[str, Any]]) -> tuple[list[PortRange], bool]:
    """(port ranges a rule's matches restrict it to, whether it has other matches)."""
    ranges: list[PortRange] = []
    other = False
    proto = "any"
    for expr in exprs:
        match = expr.get("match")
        if match is None:
            continue
        left, right, op = match.get("left", {}), match.get("right"), match.get("op", "==")
        payload = left.get("payload") if isinstance(left, dict) else None
        meta = left.get("meta") if isinstance(left, dict) else None
        if meta and meta.get("key") == "l4proto" and right in ("tcp", "udp") and op == "==":
            proto = right
        elif payload and payload.get("field") == "dport" and op in ("==", "in"):
            ports = _nft_ports(right)
            if ports is None:
                other = True
                continue
            p = payload.get("protocol", "th")
            ranges += [PortRange(p if p in ("tcp", "udp") else proto, lo, hi) for lo, hi in ports]
        else:
            other = True  # ct state, iifname, saddr...: narrower than "any packet"
    if proto != "any" and not ranges:
        other = True  # all of one protocol: not a port rule, not "everything" either
    ranges = [PortRange(proto, r.low, r.high) if r.proto == "any" else r for r in ranges]
    return ranges, other


def nftables_filters(ruleset_json: str) -> list[InputFilter]:
    """Read ``nft -j list ruleset``: one filter per input-hook base chain.

    A new connection must get through every base chain on the input hook, so
    each is judged on its own. Conservative on purpose: a chain filters when
    its policy is drop or it has an unconditional drop/reject rule; a port
    counts as allowed only when an accept rule matches nothing but its
    destination port (and protocol), in the chain or a chain it jumps to.
    Conditional drops (``ct state invalid drop``) do not make a chain filtering.
    """
    try:
        items = json.loads(ruleset_json).get("nftables", [])
    except (ValueError, AttributeError) as err:
        raise PreflightError(f"`nft -j list ruleset` printed no JSON ruleset: {err}") from err
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r.get("expr", []))

    def walk(state: _Walk, key: tuple[str, str, str], seen: set[tuple[str, str, str]]) -> None:
        if key in seen:
            return
        seen.add(key)
        for exprs in rules.get(key, []):
            verdict = next((v for e in exprs for v in _VERDICTS if v in e), None)
            if verdict in ("jump", "goto"):
                target = next(e[verdict]["target"] for e in exprs if verdict in e)
                walk(state, (key[0], key[1], target), seen)
            elif verdict is not None:
                ranges, other = _nft_rule_ports(exprs)
                state.rule(verdict, ranges, other)

    found = []
    for key, chain in sorted(chains.items()):
        if chain.get("hook") != "input" or chain.get("type", "filter") != "filter":
            continue
        state = _Walk()
        policy = chain.get("policy", "accept")
        state.filtering = policy == "drop"
        walk(state, key, set())
        found.append(state.result(f"nftables {' '.join(key)}", [f"policy {policy}"]))
    return found


class _Walk:
    """What the rules seen so far, in order, do to an arbitrary new connection."""

    def __init__(self) -> None:
        self.filtering = False
        self.dropped = False  # an unconditional drop/reject came first: later accepts are dead
        self.accepts_all = False
        self.accepted: list[PortRange] = []

    def rule(self, verdict: str, ranges: list[PortRange], other: bool) -> None:
        if self.dropped or self.accepts_all:
            return  # unreachable for a new connection
        unconditional = not ranges and not other
        if verdict in ("drop", "reject") and unconditional:
            self.filtering = self.dropped = True
        elif verdict == "accept" and unconditional:
            self.accepts_all = True
        elif verdict == "accept" and not other:
            self.accepted.extend(ranges)

    def result(self, source: str, notes: list[str]) -> InputFilter:
        return InputFilter(source, self.filtering, tuple(self.accepted), self.accepts_all, tuple(notes))


def iptables_filter(save_output: str) -> InputFilter:
    """Read ``iptables-save -t filter`` (or ``iptables -S``) output the way
    :func:`nftables_filters` reads a chain. No filter table: nothing filters."""
    policy = "ACCEPT"
    chains: dict[str, list[list[str]]] = {}
    for line in save_output.splitlines():
        if line.startswith(":INPUT "):  # iptables-save: ":INPUT DROP [0:0]"
            policy = line.split()[1]
            continue
        if line.startswith(("#", "*", ":", "COMMIT")) or not line.strip():
            continue
        words = shlex.split(line)
        if words[:2] == ["-P", "INPUT"] and len(words) > 2:
            policy = words[2]
        elif len(words) > 2 and words[0] == "-A":
            chains.setdefault(words[1], []).append(words[2:])
    state = _Walk()
    state.filtering = policy in ("DROP", "REJECT")

    def walk(chain: str, seen: set[str]) -> None:
        if chain in seen:
            return
        seen.add(chain)
        for words in chains.get(chain, []):
            if "-j" not in words or words.index("-j") + 1 >= len(words):
                continue
            target = words[words.index("-j") + 1]
            proto, specs, other = "any", [], False
            i = 0
            while i < len(words) and words[i] != "-j":
                word = words[i]
                arg = words[i + 1] if i + 1 < len(words) else ""
                if word == "!":
                    other, i = True, i + 1
                    continue
                if word == "-p":
                    proto = arg
                elif word in ("--dport", "--destination-port"):
                    specs.append(arg)
                elif word in ("--dports", "--destination-ports"):
                    specs += arg.split(",")
                elif word != "-m" or arg not in ("tcp", "udp", "multiport"):
                    other = True  # -i, -s, conntrack, --syn...: narrower than "any packet"
                i += 2
            if proto != "any" and not specs:
                other = True  # all of one protocol: not a port rule, not "everything" either
            if target in chains:
                walk(target, seen)
            elif target in ("ACCEPT", "DROP", "REJECT"):
                state.rule(target.lower(), [parse_port_spec(s, proto) for s in specs], other)

    walk("INPUT", set())
    seen_table = any(line.strip() and not line.startswith("#") for line in save_output.splitlines())
    return state.result("iptables", [f"INPUT policy {policy}" if seen_table else "no filter table"])


# --------------------------------------------------------------------------- time sync


TIME_SYNC_FIX = {
    "deb": "install chrony (enabled by its package) or enable systemd-timesyncd, with a server or pool line",
    "rpm": 'install chrony and enable chronyd (blueprint: [customizations.services] enabled = ["chronyd"]), '
    "with a server or pool line in /etc/chrony.conf",
}


def chrony_sources(conf: str) -> list[str]:
    """The time-source lines of a chrony.conf (server, pool, peer, refclock, sourcedir)."""
    keys = ("server", "pool", "peer", "refclock", "sourcedir")
    found = []
    for line in conf.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] in keys and len(words) > 1:
            found.append(" ".join(words))
    return found


def timesyncd_sources(conf: str) -> list[str]:
    """NTP= / FallbackNTP= values of timesyncd.conf; systemd has compiled-in fallbacks too."""
    found = []
    for line in conf.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() in ("NTP", "FallbackNTP") and value.strip():
            found.append(f"{key.strip()}={value.strip()}")
    return found


# --------------------------------------------------------------------------- machine-id


_MACHINE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def machine_id_problem(value: str) -> str | None:
    """Why a machine-id is unusable, or None."""
    value = value.strip()
    if not value:
        return "empty /etc/machine-id (systemd did not make one at boot: is the root filesystem read-only?)"
    if not _MACHINE_ID_RE.match(value):
        return f"/etc/machine-id is not 32 lowercase hex digits: {value!r}"
    if set(value) == {"0"}:
        return "/etc/machine-id is all zeros"
    return None


def shared_machine_ids(ids: Mapping[str, str]) -> dict[str, list[str]]:
    """machine-id -> nodes, for every id more than one node has."""
    by_id: dict[str, list[str]] = {}
    for node, value in sorted(ids.items()):
        by_id.setdefault(value.strip(), []).append(node)
    return {value: nodes for value, nodes in by_id.items() if len(nodes) > 1}


MACHINE_ID_FIX = (
    "ship the image with an empty /etc/machine-id (not a copied one) so systemd makes one per node "
    "at first boot; on an image already cloned: `rm /etc/machine-id && systemd-machine-id-setup`"
)


# --------------------------------------------------------------------------- agents


@dataclass(frozen=True)
class AgentRequirement:
    agent: str  # "ocf:heartbeat:IPaddr2", "systemd", "stonith:fence_xvm"
    listing: str  # which listing answers for it: an agent class, or "features"
    deb: str | None  # package providing it; None: the family does not ship it
    rpm: str | None
    why: str

    @property
    def name(self) -> str:
        """What the listing shows: the agent's own name, or the pacemaker feature."""
        return self.agent.rsplit(":", 1)[-1]

    def package(self, family: Family) -> str | None:
        return self.deb if family == "deb" else self.rpm


# How each listing is read on a node. The systemd class is a build feature of
# pacemaker (`pacemakerd --features`): `crm_resource --list-standards` asks
# systemd over D-Bus and leaves it out when that answer is slow, as it is
# under emulation while the node still boots.
AGENT_LISTINGS = {
    "features": "pacemakerd --features",
    "ocf:heartbeat": "crm_resource --list-agents ocf:heartbeat",
    "stonith": "crm_resource --list-agents stonith",
}

REQUIRED_AGENTS: tuple[AgentRequirement, ...] = (
    AgentRequirement(
        "ocf:heartbeat:IPaddr2", "ocf:heartbeat", "resource-agents", "resource-agents", "the floating service address"
    ),
    AgentRequirement(
        "ocf:heartbeat:podman", "ocf:heartbeat", "resource-agents", "resource-agents", "the container workload"
    ),
    AgentRequirement("systemd", "features", "pacemaker", "pacemaker", "the bare-metal dcn-http.service workload"),
    AgentRequirement(
        "stonith:fence_xvm", "stonith", "fence-virt", "fence-virt", "fencing through fence_virtd (multicast)"
    ),
    AgentRequirement("stonith:fence_virt", "stonith", "fence-virt", "fence-virt", "fencing through fence_virtd (tcp)"),
    # RHEL's fence-agents build skips fence_virsh; fence_virt does the job there.
    AgentRequirement("stonith:fence_virsh", "stonith", "fence-agents", None, "fencing over SSH to the hypervisor"),
)


def parse_agent_list(stdout: str) -> set[str]:
    """Names from ``crm_resource --list-agents CLASS`` (one per line) or the
    words of ``pacemakerd --features``; crm_resource's error text yields none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if any(line.startswith("Supporting ") for line in lines):
        return {word for line in lines if line.startswith("Supporting ") for word in line.split(":", 1)[1].split()}
    return {line for line in lines if " " not in line}


def agent_lookups(family: Family) -> dict[str, list[AgentRequirement]]:
    """listing -> the requirements it answers, for the agents this family ships."""
    out: dict[str, list[AgentRequirement]] = {}
    for req in REQUIRED_AGENTS:
        if req.package(family) is not None:
            out.setdefault(req.listing, []).append(req)
    return out


def missing_agents(family: Family, listings: Mapping[str, set[str]]) -> list[str]:
    """One line per required agent absent from the crm_resource listings, naming its package."""
    lines = []
    for listing, reqs in agent_lookups(family).items():
        names = listings.get(listing, set())
        for req in reqs:
            if req.name not in names:
                pkg = req.package(family) or "?"
                lines.append(f"{req.agent} is missing ({req.why}): it comes with {pkg}; {install_hint(family, [pkg])}")
    return lines
