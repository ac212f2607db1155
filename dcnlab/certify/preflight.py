"""What a DCN image must hold before a cluster is built on it, and the pure
parsers the preflight suite (``suites/image``) reads node output with.

What the image must hold comes from the cluster spec (:func:`requirements_of`):
the systemd units, container images, resource and fence agents its resources
and fencing use, and the packages that ship them, on top of the cluster stack
every spec needs (:data:`REQUIRED_PACKAGES`). Nothing here knows the shipped
demo's workloads.

Everything here is data or a pure function of the spec or of command output,
so it is unit tested without a VM. Each requirement carries the fix to print
when it is missing, for both image families the harness meets: Debian
(``deb``, the stand-in built by ``images/``) and RHEL / RHDE (``rpm``).

Sources of the port and package facts:
- HA ports: firewalld's ``config/services/high-availability.xml`` (tcp 2224
  pcsd; udp 5404-5405 corosync; tcp 3121 pacemaker_remote, 5403 qnetd, 21064
  dlm, which this harness's clusters do not use).
- RHEL packages: the fence-agents spec file (``fence-virt`` ships fence_xvm
  and fence_virt; fence_virsh is its own ``fence-agents-virsh``, which RHEL's
  High Availability add-on does not ship), pacemaker's spec file (the
  ocf:pacemaker agents are in ``pacemaker-cli``), and the add-on's package
  names (pcs, pacemaker, pacemaker-cli, corosync, resource-agents).
- Debian packages: bookworm's package contents (``pacemaker-resource-agents``
  ships ocf:pacemaker's Dummy, ping...; ``fence-agents`` ships fence_virsh).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dcnlab.cluster.spec import ClusterSpec, Podman, Systemd
from dcnlab.fleet.spec import NodePlan

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


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class PackageRequirement:
    what: str  # the component, as a person names it
    deb: str
    rpm: str
    why: str

    def package(self, family: Family) -> str:
        return self.deb if family == "deb" else self.rpm


PACEMAKER = PackageRequirement("pacemaker", "pacemaker", "pacemaker", "the cluster resource manager")
PACEMAKER_CLI = PackageRequirement(
    "pacemaker command line",
    "pacemaker-cli-utils",
    "pacemaker-cli",
    "crm_mon, crm_resource, cibadmin; without crm_mon `pcs cluster setup --start` fails",
)

# What every cluster needs, whatever its spec: the versions a run reports
# (dcnlab/pytest_plugin/plugin.py) and the floor of :attr:`ImageNeeds.packages`.
REQUIRED_PACKAGES: tuple[PackageRequirement, ...] = (
    PACEMAKER,
    PACEMAKER_CLI,
    PackageRequirement("corosync", "corosync", "corosync", "cluster membership and messaging (knet links)"),
    PackageRequirement("pcs", "pcs", "pcs", "pcs and pcsd, to configure the cluster"),
)

RESOURCE_AGENTS = PackageRequirement(
    "resource-agents", "resource-agents", "resource-agents", "the ocf:heartbeat agents (IPaddr2, podman...)"
)
# Debian splits Pacemaker's own OCF agents (Dummy, ping, attribute...) into a
# package; RHEL ships them in pacemaker-cli (pacemaker.spec: %files cli).
PACEMAKER_AGENTS = PackageRequirement(
    "pacemaker's OCF agents", "pacemaker-resource-agents", "pacemaker-cli", "the ocf:pacemaker agents (Dummy, ping...)"
)
# ocf:pacemaker agents that come with the daemons, on both families.
_PACEMAKER_DAEMON_AGENTS = {"controld", "o2cb", "remote"}
OCF_PROVIDERS: dict[str, PackageRequirement] = {"heartbeat": RESOURCE_AGENTS, "pacemaker": PACEMAKER_AGENTS}
PODMAN = PackageRequirement("podman", "podman", "podman", "the container runtime of ocf:heartbeat:podman")
FENCE_AGENTS: dict[str, PackageRequirement] = {
    "fence_virt": PackageRequirement(
        "fence-virt", "fence-virt", "fence-virt", "fence_virt, fencing through fence_virtd"
    ),
    # fence-agents.spec builds fence_virsh as its own subpackage and leaves it
    # out of fence-agents-all; RHEL's High Availability add-on does not ship it.
    "fence_virsh": PackageRequirement(
        "fence_virsh",
        "fence-agents",
        "fence-agents-virsh",
        "fence_virsh, fencing over SSH to the hypervisor (not in RHEL's HA add-on: use fence_virt there)",
    ),
}


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


def missing_packages(family: Family, installed: Mapping[str, str], needs: Iterable[PackageNeed]) -> list[str]:
    """One line per needed package that is not installed: what it is, what needs it, and the fix."""
    lines = []
    for need in merge_packages(family, needs):
        pkg = need.requirement.package(family)
        if pkg not in installed:
            lines.append(
                f"{pkg} is not installed ({need.requirement.why}; needed by {', '.join(need.needed_by)}): "
                f"{install_hint(family, [pkg])}"
            )
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


# --------------------------------------------------------------------------- what the spec needs


EVERY_CLUSTER = "every cluster"


@dataclass(frozen=True)
class SpecRef:
    """Where a need comes from in the cluster spec, as failures name it:
    ``resource http (spec.yaml:72)``."""

    item: str  # "resource http", "fencing fence_virt"
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.item} ({self.path}:{self.line})"


@dataclass(frozen=True)
class UnitNeed:
    """A systemd unit a ``type: systemd`` resource runs."""

    resource: str
    unit: str  # the unit file's name, as systemd loads it: my-service.service
    source: SpecRef


@dataclass(frozen=True)
class ContainerNeed:
    """A container image a ``type: podman`` resource runs, with no registry."""

    resource: str
    image: str
    source: SpecRef


@dataclass(frozen=True)
class AgentNeed:
    """A resource or fence agent Pacemaker must find on the node.

    ``listing`` says how it is looked up: ``ocf:PROVIDER`` and ``stonith`` are
    ``crm_resource --list-agents`` classes, ``features`` is ``pacemakerd
    --features`` (the systemd class is a build feature of Pacemaker:
    ``crm_resource --list-standards`` asks systemd over D-Bus and leaves it
    out when that answer is slow, as it is under emulation while the node
    still boots). ``name`` is what the listing shows when the agent is there.
    """

    resource: str  # a resource id, or "fencing"
    agent: str  # as the cluster names it: ocf:heartbeat:IPaddr2, systemd:my-service, stonith:fence_virt
    listing: str
    name: str
    package: PackageRequirement | None  # None: no package is known to ship it (a site's own OCF provider)
    source: SpecRef

    def listing_command(self) -> str:
        if self.listing == "features":
            return "pacemakerd --features"
        return f"crm_resource --list-agents {shlex.quote(self.listing)}"

    def lister(self) -> tuple[str, PackageRequirement]:
        """The program the listing runs, and the package it comes with."""
        return ("pacemakerd", PACEMAKER) if self.listing == "features" else ("crm_resource", PACEMAKER_CLI)

    def problem(self, family: Family, listed: set[str]) -> str | None:
        """Why the agent is missing from ``listed`` (the listing's names), with the fix; None when present."""
        if self.name in listed:
            return None
        if self.listing == "features":
            return (
                f"{self.agent} is missing (needed by {self.source}): this pacemaker has no systemd support "
                f"(`pacemakerd --features` does not list systemd); install a pacemaker built with it: "
                f"{install_hint(family, [PACEMAKER.package(family)])}"
            )
        if self.package is None:
            if self.listing == "stonith":
                # Pacemaker runs fence agents from its fence bindir, /usr/sbin.
                where, field_name = f"/usr/sbin/{self.name}", "fencing.method"
            else:
                where, field_name = f"/usr/lib/ocf/resource.d/{self.listing.partition(':')[2]}/{self.name}", "agent"
            return (
                f"{self.agent} is missing (needed by {self.source}): no package is known for it; "
                f"put it in the image as {where} (executable), or correct `{field_name}:` in the spec"
            )
        pkg = self.package.package(family)
        return f"{self.agent} is missing (needed by {self.source}): it comes with {pkg}; {install_hint(family, [pkg])}"


@dataclass(frozen=True)
class PackageNeed:
    requirement: PackageRequirement
    needed_by: tuple[str, ...]  # EVERY_CLUSTER, or the spec items (str(SpecRef))


@dataclass(frozen=True)
class ImageNeeds:
    """What a cluster spec needs of the image, from :func:`requirements_of`."""

    units: tuple[UnitNeed, ...]
    containers: tuple[ContainerNeed, ...]
    agents: tuple[AgentNeed, ...]  # one per resource, in the spec's order
    fence_agent: AgentNeed | None  # None: fencing.method none
    packages: tuple[PackageNeed, ...]

    def package_names(self, family: Family) -> list[str]:
        """The packages to query on a node of ``family``, each once, cluster stack first."""
        return [need.requirement.package(family) for need in merge_packages(family, self.packages)]


def merge_packages(family: Family, needs: Iterable[PackageNeed]) -> list[PackageNeed]:
    """One need per package name of ``family`` (two requirements can name the
    same package, as pacemaker-cli on RHEL), the spec items merged, first seen first."""
    merged: dict[str, PackageNeed] = {}
    for need in needs:
        pkg = need.requirement.package(family)
        if pkg in merged:
            seen = merged[pkg]
            extra = tuple(n for n in need.needed_by if n not in seen.needed_by)
            merged[pkg] = PackageNeed(seen.requirement, seen.needed_by + extra)
        else:
            merged[pkg] = need
    return list(merged.values())


def unit_file(unit: str) -> str:
    """The unit systemd loads for Pacemaker's ``systemd:UNIT``: the name as
    given when it has a unit type suffix Pacemaker knows, else ``UNIT.service``
    (Pacemaker's lib/services/systemd.c, ``systemd_service_name``)."""
    _name, dot, suffix = unit.rpartition(".")
    if dot and suffix in ("service", "socket", "mount", "timer", "path"):
        return unit
    return f"{unit}.service"


def agent_need(resource: str, agent: str, source: SpecRef) -> AgentNeed:
    """How to find an agent (``ocf:P:T``, ``systemd:UNIT`` or ``stonith:AGENT``) and what ships it."""
    standard, _, rest = agent.partition(":")
    if standard == "systemd":
        return AgentNeed(resource, agent, "features", "systemd", PACEMAKER, source)
    if standard == "stonith" and rest:
        return AgentNeed(resource, agent, "stonith", rest, FENCE_AGENTS.get(rest), source)
    provider, _, kind = rest.partition(":")
    if standard != "ocf" or not provider or not kind:
        raise PreflightError(
            f"{source}: agent {agent!r} is none of ocf:PROVIDER:TYPE, systemd:UNIT or stonith:AGENT; "
            "correct it in the spec"
        )
    package = OCF_PROVIDERS.get(provider)
    if provider == "pacemaker" and kind in _PACEMAKER_DAEMON_AGENTS:
        package = PACEMAKER
    return AgentNeed(resource, agent, f"ocf:{provider}", kind, package, source)


def requirements_of(spec: ClusterSpec) -> ImageNeeds:
    """What the image must hold for ``spec``'s cluster, read from the spec alone.

    Units from the systemd resources, images from the podman resources, the
    agent of every resource and of the fence method, and the packages that
    ship them on top of the cluster stack (:data:`REQUIRED_PACKAGES`). An agent
    of an OCF provider no package is known for names no package; it must
    exist all the same.
    """
    units: list[UnitNeed] = []
    containers: list[ContainerNeed] = []
    agents: list[AgentNeed] = []
    packages: dict[PackageRequirement, list[str]] = {req: [EVERY_CLUSTER] for req in REQUIRED_PACKAGES}
    for rsc in spec.resources:
        ref = SpecRef(f"resource {rsc.id}", spec.path, rsc.line)
        if isinstance(rsc, Systemd):
            units.append(UnitNeed(rsc.id, unit_file(rsc.unit), ref))
        if isinstance(rsc, Podman):
            containers.append(ContainerNeed(rsc.id, rsc.image, ref))
            packages.setdefault(PODMAN, []).append(str(ref))
        agent = agent_need(rsc.id, rsc.agent, ref)
        agents.append(agent)
        if agent.package is not None:
            packages.setdefault(agent.package, []).append(str(ref))
    fence = None
    method = spec.fencing.method
    if method != "none":
        ref = SpecRef(f"fencing {method}", spec.path, spec.fencing.line)
        fence = agent_need("fencing", f"stonith:{method}", ref)
        if fence.package is not None:
            packages.setdefault(fence.package, []).append(str(ref))
    return ImageNeeds(
        tuple(units),
        tuple(containers),
        tuple(agents),
        fence,
        tuple(PackageNeed(req, tuple(dict.fromkeys(by))) for req, by in packages.items()),
    )


def parse_agent_list(stdout: str) -> set[str]:
    """Names from ``crm_resource --list-agents CLASS`` (one per line) or the
    words of ``pacemakerd --features``; crm_resource's error text yields none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if any(line.startswith("Supporting ") for line in lines):
        return {word for line in lines if line.startswith("Supporting ") for word in line.split(":", 1)[1].split()}
    return {line for line in lines if " " not in line}


# --------------------------------------------------------------------------- a spec's systemd units

# UnitFileState values that start a unit at boot; "static" units cannot be enabled.
_ENABLED = ("enabled", "enabled-runtime")
# ActiveState values of a unit that runs or is on its way to.
_RUNNING = ("active", "activating", "reloading")
# is-active answers that will change by themselves: wait them out.
_TRANSIENT = ("activating", "deactivating", "reloading", "refreshing")


def unit_state_problems(node: str, need: UnitNeed, props: Mapping[str, str]) -> list[str]:
    """What is wrong with ``need``'s unit before the cluster exists, from its
    ``systemctl show -p Id,LoadState,UnitFileState,ActiveState`` properties:
    it must be loaded, not enabled at boot and not running (only the cluster
    may start it). Each line names the node, the spec item and the fix."""
    unit, where = need.unit, f"{node}: {need.unit} ({need.source})"
    load = props.get("LoadState", "not shown")
    if load == "masked":
        return [f"{where} is masked, so the cluster cannot start it; fix: `systemctl unmask {unit}` in the image"]
    if load != "loaded":
        return [
            f"{where} is not on the node (LoadState={load}); fix: install its unit file in the image "
            f"(/etc/systemd/system/{unit}, or the package that ships it), or correct `unit:` in the spec"
        ]
    problems = []
    file_state = props.get("UnitFileState", "")
    if file_state in _ENABLED:
        problems.append(
            f"{where} is enabled at boot (UnitFileState={file_state}): only the cluster may start it; "
            f"fix: `systemctl disable {unit}` in the image (or leave out its [Install] section)"
        )
    active = props.get("ActiveState", "")
    if active in _RUNNING:
        problems.append(
            f"{where} is already {active} before the cluster exists: something else starts it "
            f"(see `systemctl list-dependencies --reverse {unit}`); fix: the image must leave it stopped"
        )
    return problems


def settled_state(is_active_stdout: str) -> str | None:
    """The state ``systemctl is-active`` printed, or None while it is still changing."""
    state = is_active_stdout.strip() or "unknown"
    return None if state in _TRANSIENT else state


# --------------------------------------------------------------------------- a spec's container images


def image_fix(family: Family, image: str) -> str:
    """How to get a container image into an image's local store, per family."""
    if family == "deb":
        where = (
            "load it into podman's store at image build time (a program in the recipe's customize.run "
            "that runs `podman load` or `podman import`)"
        )
    else:
        where = f'embed it in the blueprint ([[containers]] source = "{image}", see images/rhde/README.md)'
    return f"{where}, or correct `image:` in the spec"


# --------------------------------------------------------------------------- identity

# The command whose output :func:`identity_problems` reads: the kernel's
# hostname, then every link with its MAC and addresses as JSON. No -4: with a
# family filter, ip leaves each link's MAC ("address") out of its JSON.
IDENTITY_COMMAND = "cat /proc/sys/kernel/hostname; ip -j addr show"


def identity_problems(node: NodePlan, output: str) -> list[str]:
    """What differs between ``node``'s planned identity (hostname, one
    address per NIC on the NIC with the planned MAC) and what
    :data:`IDENTITY_COMMAND` printed on it."""
    hostname, _, links_json = output.partition("\n")
    problems = []
    if hostname.strip() != node.name:
        problems.append(f"hostname is {hostname.strip()!r}, not {node.name!r}")
    try:
        links = json.loads(links_json or "[]")
    except ValueError:
        return [*problems, f"`ip -j addr` printed no JSON: {links_json[:200]!r}"]
    by_mac: dict[str, tuple[str, set[str]]] = {}
    for link in links if isinstance(links, list) else []:
        mac = str(link.get("address", "")).lower()
        addrs = {str(a.get("local")) for a in link.get("addr_info", []) if a.get("family") == "inet"}
        by_mac[mac] = (str(link.get("ifname", "?")), addrs)
    if links and not any("address" in link for link in links if isinstance(link, dict)):
        return [*problems, "`ip -j addr` printed no link's MAC (a family filter such as -4 drops it): cannot tell"]
    for nic in node.nics:
        name, addrs = by_mac.get(nic.mac.lower(), ("", set()))
        if not name:
            problems.append(f"no link has MAC {nic.mac} (network {nic.network}, planned {nic.address})")
        elif str(nic.address) not in addrs:
            have = ", ".join(sorted(addrs)) or "no IPv4 address"
            problems.append(f"{name} (MAC {nic.mac}) has {have}, not {nic.address}")
    for mac, (name, addrs) in sorted(by_mac.items()):
        planned = {str(n.address) for n in node.nics if n.mac.lower() != mac}
        misplaced = sorted(addrs & planned)
        if misplaced:
            problems.append(f"{name} (MAC {mac}) holds {', '.join(misplaced)}, planned for another NIC")
    return problems


ROOT_LOGIN_COMMAND = "sshd -T 2>&1 | grep -Ei '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication) '"


def root_login_problems(sshd_settings: str, root_shadow_hash: str) -> list[str]:
    """Why root could log in with a password, from ``sshd -T``'s settings
    (:data:`ROOT_LOGIN_COMMAND`) and root's password field in /etc/shadow:
    sshd must refuse root's password (PermitRootLogin prohibit-password or
    no, or password and keyboard-interactive logins off) or root's password
    must be locked. An empty list: root logs in by key only."""
    settings = {}
    for line in sshd_settings.splitlines():
        key, _, value = line.strip().partition(" ")
        settings[key.lower()] = value.strip().lower()
    if not settings:
        return [f"`sshd -T` printed no settings ({sshd_settings.strip()[:200]!r}): cannot tell how root logs in"]
    refuses = settings.get("permitrootlogin") in ("prohibit-password", "without-password", "no", "forced-commands-only")
    refuses = refuses or (
        settings.get("passwordauthentication") == "no" and settings.get("kbdinteractiveauthentication") == "no"
    )
    if root_shadow_hash == "":
        return ["root has an empty password in /etc/shadow: lock it (passwd -l root)"]
    locked = root_shadow_hash[:1] in ("!", "*")
    if refuses or locked:
        return []
    shown = ", ".join(f"{k} {v}" for k, v in sorted(settings.items()))
    return [
        f"root can log in with a password: sshd allows it ({shown}) and root's password is set; "
        "set PermitRootLogin prohibit-password in sshd_config.d, or lock root's password (passwd -l root)"
    ]
