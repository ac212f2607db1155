"""The cluster spec: what cluster dcnlab builds on a fleet, read from YAML.

Every key, its default and its units are in the one reference,
``suites/specs/README.md``; ``dcnlab/cluster/default.yaml`` is the default
spec with each choice explained. This module holds the model
(:class:`ClusterSpec` and its parts) and the reader that keeps each value's
line, so that every error names the file and line of the offending entry and
raises :class:`dcnlab.core.errors.ConfigError` before anything is created.
What needs the fleet (does network 2 exist? is there a dcn4?) is checked by
:meth:`ClusterSpec.check_against`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeAlias

import yaml
import yaml.constructor
import yaml.nodes

from dcnlab.cluster.thresholds import FAULT_KINDS, THRESHOLD_KEYS, Thresholds, timings_of
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import MAX_NODES, AddressPlan

# Pacemaker's score arithmetic saturates at one million ("INFINITY").
INFINITY = 1_000_000
STONITH_ID = "fence_dcn"  # the one fence device dcnlab creates
MAX_KNET_LINKS = 8  # corosync/knet supports links 0..7
VIP_HOST = 100  # "address: auto" is .100 of the network's /24
# The cluster the suites certify by default, shipped inside the package so a
# separate repository of suites gets it too.
DEFAULT_SPEC = Path(__file__).with_name("default.yaml")

RESOURCE_TYPES = ("ipaddr2", "systemd", "podman", "ocf")
FENCE_METHODS = ("fence_virt", "fence_virsh", "none")
FENCE_ACTIONS = ("off", "reboot")
ORDER_KINDS = ("Mandatory", "Optional", "Serialize")
OP_NAMES = (
    "start",
    "stop",
    "monitor",
    "promote",
    "demote",
    "reload",
    "reload-agent",
    "notify",
    "migrate_to",
    "migrate_from",
)
ON_FAIL = ("ignore", "block", "stop", "restart", "fence", "standby", "demote")

# XML IDs as pcs validates them: a letter or '_' first, then letters, digits, '_', '.', '-'.
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
NODE_RE = re.compile(r"^dcn([1-9][0-9]*)$")
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Pacemaker option and meta attribute names are lowercase words joined by '-'.
OPTION_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
OCF_AGENT_RE = re.compile(r"^ocf:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$")
SYSTEMD_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+$")
# A process name as the kernel keeps it (comm: 15 characters), matched exactly.
COMM_LENGTH = 15
PROCESS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
CLIENT_PROTOCOLS = ("http", "tcp")
# Pacemaker's interval units (crm_get_msec): no unit means seconds.
DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|msec|s|sec|m|min|h|hr)?\s*$")
_UNIT_MS: dict[str | None, int] = {
    None: 1000,
    "ms": 1,
    "msec": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
}

Params: TypeAlias = tuple[tuple[str, str], ...]


# ---------------------------------------------------------------- value types


@dataclass(frozen=True)
class Duration:
    """A Pacemaker duration, kept in milliseconds."""

    ms: int

    def __str__(self) -> str:
        # pcs and Pacemaker read "10s" and "500ms" alike; whole seconds read best.
        return f"{self.ms // 1000}s" if self.ms % 1000 == 0 else f"{self.ms}ms"


def score_text(score: int) -> str:
    """A score as Pacemaker writes it: INFINITY and -INFINITY at the ends."""
    if score >= INFINITY:
        return "INFINITY"
    if score <= -INFINITY:
        return "-INFINITY"
    return str(score)


def node_index(name: str) -> int:
    """The k of ``dcn<k>`` (names are checked when the spec is read)."""
    match = NODE_RE.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a dcn node name")
    return int(match.group(1))


# ------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class Op:
    """One operation of a resource, as ``op NAME interval=.. timeout=..``."""

    name: str
    interval: Duration | None = None
    timeout: Duration | None = None
    on_fail: str | None = None

    def options(self) -> list[str]:
        opts = []
        if self.interval is not None:
            opts.append(f"interval={self.interval}")
        if self.timeout is not None:
            opts.append(f"timeout={self.timeout}")
        if self.on_fail is not None:
            opts.append(f"on-fail={self.on_fail}")
        return opts


@dataclass(frozen=True)
class Client:
    """How a workload's clients reach it (``client:`` of a workload): the
    certification suites probe it every 100 ms while a fault plays out.

    ``address`` is the id of an ipaddr2 resource of the spec (its floating
    IP) or a fixed IPv4 address; ``path``, ``status`` and ``contains`` apply
    to HTTP only (a healthy answer has that status and, when set, contains
    that text)."""

    protocol: str  # http | tcp
    address: str
    port: int
    path: str = "/"
    status: int = 200
    contains: str | None = None
    line: int = field(default=0, compare=False)

    @property
    def floating(self) -> bool:
        """Whether ``address`` names an ipaddr2 resource (not a fixed address)."""
        return not _is_ipv4(self.address)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class Primitive:
    """What every resource has; ``line`` is where its entry starts."""

    id: str
    ops: tuple[Op, ...] = ()
    no_monitor: bool = False  # `monitor: null`: the resource has no monitor op
    meta: Params = ()
    line: int = field(default=0, compare=False)
    client: Client | None = None

    @property
    def agent(self) -> str:
        raise NotImplementedError

    def params(self) -> Params:
        return ()


@dataclass(frozen=True, kw_only=True)
class IPaddr2(Primitive):
    network: int = 0
    address: str | None = None  # None: .100 of the network's /24
    cidr_netmask: int = 24

    @property
    def agent(self) -> str:
        return "ocf:heartbeat:IPaddr2"

    @property
    def nic(self) -> str:
        # Guests boot with net.ifnames=0 and fixed PCI slots: network i is eth<i>.
        return f"eth{self.network}"


@dataclass(frozen=True, kw_only=True)
class Systemd(Primitive):
    unit: str

    @property
    def agent(self) -> str:
        return f"systemd:{self.unit}"


@dataclass(frozen=True, kw_only=True)
class Podman(Primitive):
    image: str
    run_opts: str | None = None
    run_cmd: str | None = None
    allow_pull: bool = False

    @property
    def agent(self) -> str:
        return "ocf:heartbeat:podman"

    def params(self) -> Params:
        # Parameter names from resource-agents heartbeat/podman meta-data.
        out = [("image", self.image)]
        if self.run_opts is not None:
            out.append(("run_opts", self.run_opts))
        if self.run_cmd is not None:
            out.append(("run_cmd", self.run_cmd))
        # Explicit false: a certified node has no registry, and a pull would
        # turn a start into a network timeout instead of a clear failure.
        out.append(("allow_pull", "true" if self.allow_pull else "false"))
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class OcfResource(Primitive):
    type_agent: str
    type_params: Params = ()
    # The name of the process the agent runs (as pkill --exact matches it):
    # what the kill-workload fault kills. None: the spec names none, and that
    # case is skipped saying so.
    process: str | None = None

    @property
    def agent(self) -> str:
        return self.type_agent

    def params(self) -> Params:
        return self.type_params


Resource: TypeAlias = IPaddr2 | Systemd | Podman | OcfResource


@dataclass(frozen=True)
class Group:
    id: str
    members: tuple[str, ...]
    meta: Params = ()
    line: int = field(default=0, compare=False)
    client: Client | None = None


@dataclass(frozen=True)
class Expect:
    """A declared outcome (``certification.expect``): what ``fault`` on the
    node running ``workload`` must lead to, in place of the derived one."""

    workload: str
    fault: str
    outcome: str  # relocated | restarted | unaffected | found-running
    fenced: bool
    why: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Requirement:
    """What must hold whatever the configuration says (``certification.
    requirements``): checked against the configuration before any VM boots
    (dcnlab.certify.workloads.check_requirements) and against every run.

    - ``together``: ``a`` and ``b`` always run on one node (whenever both run);
    - ``apart``: ``a`` and ``b`` never run on one node;
    - ``max-downtime``: clients of ``workload`` (every certified one when
      None) are never out longer than ``limit`` seconds during ``fault``
      (every failover fault when None);
    - ``no-outage-on-return``: when a faulted node comes back, ``workload``
      is not interrupted (stopped, restarted or moved) and its clients are
      out no longer than ``limit`` (0: not one failed request)."""

    kind: str
    a: str = ""
    b: str = ""
    workload: str | None = None
    fault: str | None = None
    limit: float = 0.0
    line: int = field(default=0, compare=False)

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        if self.kind in ("together", "apart"):
            return f"{where}{self.kind}: [{self.a}, {self.b}]"
        who = self.workload or "every workload"
        if self.kind == "max-downtime":
            return f"{where}max-downtime {self.limit:g}s for {who} on {self.fault or 'every fault'}"
        allowed = f" (clients out at most {self.limit:g}s)" if self.limit else ""
        return f"{where}no-outage-on-return of {who}{allowed}"


REQUIREMENT_KINDS = ("together", "apart", "max-downtime", "no-outage-on-return")
EXPECT_OUTCOMES = ("relocated", "restarted", "unaffected", "found-running")
# The faults of the failover suite, by the names thresholds and markers use.
FAILOVER_FAULTS = FAULT_KINDS


@dataclass(frozen=True)
class Colocation:
    rsc: str
    with_rsc: str
    score: int = INFINITY
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Order:
    first: str
    then: str
    kind: str = "Mandatory"
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Location:
    rsc: str
    node: str
    score: int = INFINITY
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Ban:
    rsc: str
    node: str
    line: int = field(default=0, compare=False)


Constraint: TypeAlias = Colocation | Order | Location | Ban


@dataclass(frozen=True)
class CorosyncOptions:
    """Totem timings in milliseconds; None leaves corosync's default."""

    token: int | None = None
    consensus: int | None = None
    knet_ping_interval: int | None = None
    knet_ping_timeout: int | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ClusterSection:
    name: str = "dcn"
    # How many nodes the site has: the fleet's size unless --dcn-nodes says
    # otherwise; None: the harness's default.
    nodes: int | None = None
    links: tuple[int, ...] | None = None  # None: every fleet network
    link_lines: tuple[int, ...] = field(default=(), compare=False)
    corosync: CorosyncOptions = CorosyncOptions()
    properties: Params = ()
    resource_defaults: Params = ()
    op_defaults: Params = ()


@dataclass(frozen=True)
class Fencing:
    method: str = "fence_virt"
    action: str = "off"
    timeout: int = 30
    network: int = 0
    port: int = 1229  # fence_virt's own default ipport
    key_file: str = "/etc/cluster/fence_xvm.key"  # fence_virt's own default key_file
    identity_file: str = "/root/.ssh/dcnlab_fence"
    params: Params = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster spec. Build it with :func:`load_spec` or :func:`parse_spec`."""

    path: str
    cluster: ClusterSection = ClusterSection()
    fencing: Fencing = Fencing()
    resources: tuple[Resource, ...] = ()
    groups: tuple[Group, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    # Which entries came first in `workloads`: groups and resources interleaved.
    workload_order: tuple[str, ...] = ()
    # certification.thresholds: (fault name or "default", limits), in file order.
    thresholds: tuple[tuple[str, Thresholds], ...] = ()
    # certification.workloads: the workloads the suites certify, in order;
    # None: every top-level workload (groups, and resources in no group).
    certified: tuple[str, ...] | None = None
    certified_line: int = field(default=0, compare=False)
    # certification.expect: declared outcomes that replace derived ones.
    expectations: tuple[Expect, ...] = ()
    # certification.requirements, in file order.
    requirements: tuple[Requirement, ...] = ()

    def threshold_table(self) -> dict[str, Thresholds]:
        return dict(self.thresholds)

    def resource(self, rsc_id: str) -> Resource | None:
        return next((r for r in self.resources if r.id == rsc_id), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def group_of(self, rsc_id: str) -> Group | None:
        return next((g for g in self.groups if rsc_id in g.members), None)

    def top_level(self) -> tuple[str, ...]:
        """Groups and resources in no group, in the order the spec lists them."""
        return tuple(w for w in self.workload_order if self.group_of(w) is None)

    def client_of(self, workload: str) -> Client | None:
        """The ``client:`` declared on a group or resource."""
        entry = self.group(workload) or self.resource(workload)
        return entry.client if entry is not None else None

    def expectation(self, workload: str, fault: str) -> Expect | None:
        return next((e for e in self.expectations if e.workload == workload and e.fault == fault), None)

    def link_networks(self, networks: int) -> tuple[int, ...]:
        """Fleet networks that carry knet links 0, 1, ... in that order."""
        return self.cluster.links if self.cluster.links is not None else tuple(range(networks))

    def creation_order(self) -> tuple[tuple[Resource, Group | None], ...]:
        """Resources in the order to create them, each with its group.

        A resource outside groups is created where it is listed; group members
        are created where their group is listed, in group order, because pcs
        appends to a group in creation order (and the order is the start order).
        """
        out: list[tuple[Resource, Group | None]] = []
        for entry in self.workload_order:
            group = self.group(entry)
            if group is not None:
                for member in group.members:
                    rsc = self.resource(member)
                    assert rsc is not None  # checked when the spec was read
                    out.append((rsc, group))
            elif self.group_of(entry) is None:
                rsc = self.resource(entry)
                assert rsc is not None
                out.append((rsc, None))
        return tuple(out)

    def vip_address(self, rsc: IPaddr2, plan: AddressPlan) -> str:
        """The address an IPaddr2 resource takes (``auto`` resolved)."""
        if rsc.address is not None:
            return rsc.address
        return str(plan.network(rsc.network).cidr.network_address + VIP_HOST)

    def check_against(self, networks: int, nodes: int, plan: AddressPlan | None = None) -> None:
        """Check what needs the fleet: networks and node names that must exist.

        With ``plan`` (the fleet's :class:`AddressPlan`), explicit IPaddr2
        addresses are also checked to lie in their network and not to collide
        with a node or the gateway. Raises :class:`ConfigError` naming the line.
        """
        fail = _Failer(self.path)
        if self.cluster.links is not None:
            for net, line in zip(self.cluster.links, self.cluster.link_lines, strict=True):
                if net >= networks:
                    fail(
                        line,
                        f"knet link on network {net}, but the fleet has {_count(networks, 'network')} "
                        f"(0..{networks - 1}): remove it from cluster.links or start the fleet with "
                        f"--networks {net + 1}",
                    )
        if self.fencing.method != "none" and self.fencing.network >= networks:
            fail(
                self.fencing.line,
                f"fencing.network is {self.fencing.network}, but the fleet has {_count(networks, 'network')}",
            )
        vips: dict[str, str] = {}
        for rsc in self.resources:
            if isinstance(rsc, IPaddr2):
                if rsc.network >= networks:
                    fail(
                        rsc.line,
                        f"{rsc.id}: ipaddr2 on network {rsc.network}, but the fleet has "
                        f"{_count(networks, 'network')} (0..{networks - 1})",
                    )
                if plan is not None:
                    self._check_vip(rsc, nodes, plan, fail)
                    addr = self.vip_address(rsc, plan)
                    if addr in vips:
                        fail(rsc.line, f"{rsc.id}: address {addr} is already {vips[addr]}'s")
                    vips[addr] = rsc.id
        for con in self.constraints:
            if isinstance(con, Location | Ban) and node_index(con.node) > nodes:
                fail(con.line, f"{con.node} is not in the fleet, which has dcn1..dcn{nodes}")

    def _check_vip(self, rsc: IPaddr2, nodes: int, plan: AddressPlan, fail: _Failer) -> None:
        net = plan.network(rsc.network)
        addr = ipaddress.IPv4Address(self.vip_address(rsc, plan))
        if addr not in net.cidr or addr in (net.cidr.network_address, net.cidr.broadcast_address):
            fail(rsc.line, f"{rsc.id}: address {addr} is not a host address of network {rsc.network} ({net.cidr})")
        if addr == net.gateway:
            fail(rsc.line, f"{rsc.id}: address {addr} is the gateway of network {rsc.network}; choose another")
        for k in range(1, nodes + 1):
            if addr == net.cidr.network_address + plan.FIRST_HOST + k:
                fail(rsc.line, f"{rsc.id}: address {addr} is dcn{k}'s own address; choose another")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ------------------------------------------------------------- YAML reading


@dataclass
class _Scalar:
    value: object
    line: int


@dataclass
class _Map:
    items: dict[str, _Val]
    key_lines: dict[str, int]
    line: int


@dataclass
class _Seq:
    items: list[_Val]
    line: int


_Val: TypeAlias = _Scalar | _Map | _Seq


class _Failer:
    """Raises ConfigError as ``FILE:LINE: message``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, line: int, message: str) -> NoReturn:
        raise ConfigError(f"{self.path}:{line}: {message}")


def load_spec(path: str | Path) -> ClusterSpec:
    """Read and validate the cluster spec in ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read cluster spec {p}: {err.strerror or err}") from err
    return parse_spec(text, str(p))


def parse_spec(text: str, path: str = "<spec>") -> ClusterSpec:
    """Validate the YAML ``text`` of a spec; ``path`` is used in messages."""
    fail = _Failer(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        fail(line, f"not valid YAML: {err.problem or err}")
    except yaml.YAMLError as err:
        fail(1, f"not valid YAML: {err}")
    if root is None:
        return ClusterSpec(path=path)
    # A fresh constructor per file: it caches every node it has built.
    value = _wrap(root, yaml.constructor.SafeConstructor(), fail)
    return _Reader(fail).spec(value, path)


def _wrap(node: yaml.nodes.Node, ctor: yaml.constructor.SafeConstructor, fail: _Failer) -> _Val:
    """The composed YAML tree, with a line number on every value and key."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.nodes.MappingNode):
        items: dict[str, _Val] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True) if isinstance(key_node, yaml.nodes.ScalarNode) else None
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                fail(key_line, f"keys must be words, not {key!r}")
            if key in items:
                # safe_load would silently keep the last one; a spec must not.
                fail(key_line, f"{key!r} is given twice (first on line {key_lines[key]})")
            items[key] = _wrap(value_node, ctor, fail)
            key_lines[key] = key_line
        return _Map(items, key_lines, line)
    if isinstance(node, yaml.nodes.SequenceNode):
        return _Seq([_wrap(item, ctor, fail) for item in node.value], line)
    return _Scalar(ctor.construct_object(node, deep=True), line)


# Meta attributes Pacemaker documents for primitives and groups, by value kind.
_META_KINDS = {
    "allow-migrate": "bool",
    "allow-unhealthy-nodes": "bool",
    "critical": "bool",
    "failure-timeout": "duration",
    "is-managed": "bool",
    "maintenance": "bool",
    "migration-threshold": "threshold",
    "multiple-active": ("block", "stop_only", "stop_start", "stop_unexpected"),
    "priority": "int",
    "requires": ("nothing", "quorum", "fencing", "unfencing"),
    "resource-stickiness": "score",
    "target-role": ("Started", "Stopped", "Promoted", "Unpromoted"),
}
_OP_DEFAULT_KINDS = {"timeout": "duration", "on-fail": ON_FAIL, "record-pending": "bool"}


class _Reader:
    def __init__(self, fail: _Failer) -> None:
        self.fail = fail

    # -- primitives

    def mapping(self, v: _Val, what: str) -> _Map:
        if not isinstance(v, _Map):
            self.fail(v.line, f"{what} must be a mapping (key: value lines)")
        return v

    def keys(self, m: _Map, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for key, line in m.key_lines.items():
            if key not in allowed:
                self.fail(line, f"unknown key {key!r} in {what}; known keys: {', '.join(allowed)}")

    def optional(self, m: _Map, key: str) -> _Val | None:
        v = m.items.get(key)
        if v is None or (isinstance(v, _Scalar) and v.value is None):
            return None
        return v

    def required(self, m: _Map, key: str, what: str) -> _Val:
        v = self.optional(m, key)
        if v is None:
            self.fail(m.line, f"{what} needs {key!r}")
        return v

    def scalar(self, v: _Val, what: str) -> object:
        if not isinstance(v, _Scalar):
            self.fail(v.line, f"{what} must be a single value, not a list or mapping")
        return v.value

    def string(self, v: _Val, what: str) -> str:
        value = self.scalar(v, what)
        if not isinstance(value, str) or not value.strip():
            self.fail(v.line, f"{what} must be a non-empty string, not {value!r}")
        if "\n" in value:
            self.fail(v.line, f"{what} must be one line")
        return value

    def integer(self, v: _Val, what: str, lo: int, hi: int | None = None) -> int:
        value = self.scalar(v, what)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(v.line, f"{what} must be a whole number, not {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            self.fail(v.line, f"{what} is {value}; it must be {bound}")
        return value

    def boolean(self, v: _Val, what: str) -> bool:
        value = self.scalar(v, what)
        if not isinstance(value, bool):
            self.fail(v.line, f"{what} must be true or false, not {value!r}")
        return value

    def choice(self, v: _Val, what: str, choices: Iterable[str]) -> str:
        choices = tuple(choices)
        value = self.scalar(v, what)
        if value not in choices:
            self.fail(v.line, f"{what} is {value!r}; use one of: {', '.join(choices)}")
        assert isinstance(value, str)
        return value

    def duration(self, v: _Val, what: str, *, zero: bool = False) -> Duration:
        value = self.scalar(v, what)
        ms: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            ms = value * 1000 if value >= 0 else None
        elif isinstance(value, str) and (match := DURATION_RE.match(value)):
            ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
        if ms is None:
            self.fail(v.line, f"{what} is {value!r}; write a duration like 10 (seconds), 500ms, 10s, 2min or 1h")
        if ms == 0 and not zero:
            self.fail(v.line, f"{what} must be longer than 0")
        return Duration(ms)

    def score(self, v: _Val, what: str) -> int:
        value = self.scalar(v, what)
        if isinstance(value, str):
            text = value.strip().upper()
            if text in ("INFINITY", "+INFINITY"):
                return INFINITY
            if text == "-INFINITY":
                return -INFINITY
            if re.fullmatch(r"[+-]?\d+", text):
                value = int(text)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(v.line, f"{what} is {value!r}; a score is a whole number, INFINITY or -INFINITY")
        if abs(value) > INFINITY:
            self.fail(v.line, f"{what} is {value}; scores stop at ±{INFINITY}: write INFINITY or -INFINITY")
        return value

    def text_value(self, v: _Val, what: str) -> str:
        """A scalar as Pacemaker reads it: booleans as true/false."""
        value = self.scalar(v, what)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str) and str(value).strip():
            if "\n" in str(value):
                self.fail(v.line, f"{what} must be one line")
            return str(value)
        self.fail(v.line, f"{what} must be a value (text, number or true/false), not {value!r}")

    def params(self, v: _Val | None, what: str) -> Params:
        """Free-form name: value pairs (agent parameters, properties)."""
        if v is None:
            return ()
        m = self.mapping(v, what)
        return tuple((k, self.text_value(m.items[k], f"{what}.{k}")) for k in m.items)

    def typed_attrs(self, v: _Val | None, what: str, kinds: Mapping[str, object]) -> Params:
        """Attributes whose names Pacemaker defines (meta, op defaults)."""
        if v is None:
            return ()
        m = self.mapping(v, what)
        self.keys(m, kinds, what)
        out = []
        for key, val in m.items.items():
            kind = kinds[key]
            name = f"{what}.{key}"
            if isinstance(val, _Scalar) and val.value is None:
                self.fail(val.line, f"{name} needs a value (leave the key out for Pacemaker's default)")
            if kind == "bool":
                text = "true" if self.boolean(val, name) else "false"
            elif kind == "duration":
                text = str(self.duration(val, name, zero=True))
            elif kind == "score":
                text = score_text(self.score(val, name))
            elif kind == "threshold":
                # 0 and INFINITY both mean "never move away because of failures".
                score = self.score(val, name)
                if score < 0:
                    self.fail(val.line, f"{name} must not be negative")
                text = score_text(score)
            elif kind == "int":
                text = str(self.integer(val, name, -INFINITY, INFINITY))
            else:
                assert isinstance(kind, tuple)
                text = self.choice(val, name, kind)
            out.append((key, text))
        return tuple(out)

    def node_name(self, v: _Val, what: str) -> str:
        value = self.string(v, what)
        if not NODE_RE.match(value):
            self.fail(v.line, f"{what} is {value!r}; fleet nodes are named dcn1, dcn2, ...")
        return value

    def ident(self, v: _Val, what: str) -> str:
        value = self.string(v, what)
        if not ID_RE.match(value):
            self.fail(
                v.line,
                f"{what} {value!r} is not a valid id: start with a letter or '_', "
                "then letters, digits, '_', '.' or '-'",
            )
        return value

    # -- sections

    def spec(self, v: _Val, path: str) -> ClusterSpec:
        top = self.mapping(v, "the spec")
        self.keys(top, ("cluster", "fencing", "workloads", "constraints", "certification"), "the spec")
        cluster = self.cluster(self.optional(top, "cluster"))
        fencing = self.fencing(self.optional(top, "fencing"), top.line)
        resources, groups, order = self.workloads(self.optional(top, "workloads"))
        ids = {r.id for r in resources} | {g.id for g in groups}
        constraints = self.constraints(self.optional(top, "constraints"), ids)
        if fencing.method == "none" and dict(cluster.properties).get("stonith-enabled") != "false":
            self.fail(
                fencing.line,
                "fencing method none needs cluster.properties: {stonith-enabled: false} "
                "(Pacemaker starts no resources while fencing is enabled and no device can fence)",
            )
        cert = self.optional(top, "certification")
        cm = None if cert is None else self.mapping(cert, "certification")
        if cm is not None:
            self.keys(cm, ("thresholds", "workloads", "expect", "requirements"), "certification")
        top_level = [w for w in order if not any(w in g.members for g in groups)]
        thresholds = self.thresholds(None if cm is None else self.optional(cm, "thresholds"))
        certified, certified_line = self.certified(None if cm is None else self.optional(cm, "workloads"), top_level)
        expects = self.expects(None if cm is None else self.optional(cm, "expect"), top_level)
        requirements = self.requirements(None if cm is None else self.optional(cm, "requirements"), ids, top_level)
        return ClusterSpec(
            path,
            cluster,
            fencing,
            resources,
            groups,
            constraints,
            order,
            thresholds,
            certified,
            certified_line,
            expects,
            requirements,
        )

    def certified(self, v: _Val | None, top_level: list[str]) -> tuple[tuple[str, ...] | None, int]:
        if v is None:
            return None, 0
        if not isinstance(v, _Seq) or not v.items:
            self.fail(v.line, "certification.workloads must be a non-empty list of workload ids")
        out: list[str] = []
        for item in v.items:
            name = self.ident(item, "a certified workload")
            if name not in top_level:
                known = ", ".join(top_level) or "none"
                self.fail(
                    item.line,
                    f"certification.workloads: {name!r} is not a workload of this spec (a group or a resource in "
                    f"no group: {known})",
                )
            if name in out:
                self.fail(item.line, f"certification.workloads: {name!r} is listed twice")
            out.append(name)
        return tuple(out), v.line

    def requirements(self, v: _Val | None, ids: set[str], top_level: list[str]) -> tuple[Requirement, ...]:
        if v is None:
            return ()
        if not isinstance(v, _Seq):
            self.fail(v.line, "certification.requirements must be a list (lines starting with '-')")
        out = []
        for item in v.items:
            m = self.mapping(item, "a requirement")
            if len(m.items) != 1:
                self.fail(m.line, f"a requirement is one of {', '.join(REQUIREMENT_KINDS)}: ..., one per list entry")
            ((kind, body),) = m.items.items()
            if kind not in REQUIREMENT_KINDS:
                self.fail(m.line, f"unknown requirement {kind!r}; known: {', '.join(REQUIREMENT_KINDS)}")
            where = f"certification.requirements {kind}"
            if kind in ("together", "apart"):
                if not isinstance(body, _Seq) or len(body.items) != 2:
                    self.fail(body.line, f"{where}: name two workloads or resources, like [historian, gateway]")
                a, b = (self.ident(x, f"{where} entry") for x in body.items)
                for name, x in zip((a, b), body.items, strict=True):
                    if name not in ids:
                        self.fail(x.line, f"{where}: no resource or group {name!r} in workloads")
                if a == b:
                    self.fail(body.line, f"{where}: {a} with itself")
                out.append(Requirement(kind, a, b, line=m.line))
                continue

            def workload_of(x: _Val, where: str = where) -> str:
                name = self.ident(x, f"{where} workload")
                if name not in top_level:
                    self.fail(x.line, f"{where}: {name!r} is not a workload (a group or a resource in no group)")
                return name

            if kind == "no-outage-on-return":
                if isinstance(body, _Scalar):
                    out.append(Requirement(kind, workload=workload_of(body), line=m.line))
                    continue
                bm = self.mapping(body, where)
                self.keys(bm, ("workload", "allow"), where)
                limit = 0.0
                if (al := self.optional(bm, "allow")) is not None:
                    limit = self.duration(al, f"{where}.allow", zero=True).ms / 1000
                out.append(Requirement(kind, workload=workload_of(self.required(bm, "workload", where)),
                                       limit=limit, line=m.line))  # fmt: skip
                continue
            bm = self.mapping(body, where)
            self.keys(bm, ("limit", "fault", "workload"), where)
            limit = self.duration(self.required(bm, "limit", where), f"{where}.limit", zero=True).ms / 1000
            fault = None
            if (f := self.optional(bm, "fault")) is not None:
                fault = self.choice(f, f"{where}.fault", FAILOVER_FAULTS)
            workload = None
            if (w := self.optional(bm, "workload")) is not None:
                workload = workload_of(w)
            out.append(Requirement(kind, workload=workload, fault=fault, limit=limit, line=m.line))
        return tuple(out)

    def expects(self, v: _Val | None, top_level: list[str]) -> tuple[Expect, ...]:
        """``certification.expect: {WORKLOAD: {FAULT: {outcome, fenced, why}}}``."""
        if v is None:
            return ()
        m = self.mapping(v, "certification.expect")
        self.keys(m, top_level, "certification.expect (the spec's workloads: groups and resources in no group)")
        out = []
        for workload, faults_v in m.items.items():
            fm = self.mapping(faults_v, f"certification.expect.{workload}")
            self.keys(fm, FAILOVER_FAULTS, f"certification.expect.{workload} (the failover faults)")
            for fault, body_v in fm.items.items():
                where = f"certification.expect.{workload}.{fault}"
                body = self.mapping(body_v, where)
                self.keys(body, ("outcome", "fenced", "why"), where)
                outcome = self.choice(self.required(body, "outcome", where), f"{where}.outcome", EXPECT_OUTCOMES)
                fenced = self.boolean(self.required(body, "fenced", where), f"{where}.fenced")
                why = self.opt_string(body, "why", where) or "declared in the spec"
                out.append(Expect(workload, fault, outcome, fenced, why, body.line))
        return tuple(out)

    def thresholds(self, table: _Val | None) -> tuple[tuple[str, Thresholds], ...]:
        if table is None:
            return ()
        tm = self.mapping(table, "certification.thresholds")
        self.keys(tm, THRESHOLD_KEYS, "certification.thresholds (a fault name, default for all faults, or grow-shrink)")
        out = []
        for fault, limits in tm.items.items():
            where = f"certification.thresholds.{fault}"
            lm = self.mapping(limits, where)
            timings = timings_of(fault)
            self.keys(lm, timings, where)
            values = {
                # Zero downtime is a limit: no failed client request at all.
                name: self.duration(val, f"{where}.{name}", zero=name == "downtime").ms / 1000
                for name in timings
                if (val := self.optional(lm, name)) is not None
            }
            out.append((fault, Thresholds(**values)))
        return tuple(out)

    def cluster(self, v: _Val | None) -> ClusterSection:
        if v is None:
            return ClusterSection()
        m = self.mapping(v, "cluster")
        self.keys(
            m, ("name", "nodes", "links", "corosync", "properties", "resource_defaults", "op_defaults"), "cluster"
        )
        nodes = None
        if (nodes_v := self.optional(m, "nodes")) is not None:
            nodes = self.integer(nodes_v, "cluster.nodes", 1, MAX_NODES)
        name = "dcn"
        if (name_v := self.optional(m, "name")) is not None:
            name = self.string(name_v, "cluster.name")
            if not CLUSTER_NAME_RE.match(name):
                self.fail(name_v.line, f"cluster.name {name!r}: use 1-32 letters, digits, '_' or '-'")
        links: tuple[int, ...] | None = None
        link_lines: tuple[int, ...] = ()
        if (links_v := self.optional(m, "links")) is not None:
            if not isinstance(links_v, _Seq) or not links_v.items:
                self.fail(links_v.line, "cluster.links must be a non-empty list of network numbers, like [0, 1]")
            if len(links_v.items) > MAX_KNET_LINKS:
                self.fail(links_v.line, f"cluster.links has {len(links_v.items)} links; knet has at most 8")
            nets = []
            for item in links_v.items:
                net = self.integer(item, "a network in cluster.links", 0)
                if net in nets:
                    self.fail(item.line, f"network {net} is listed twice in cluster.links")
                nets.append(net)
            links = tuple(nets)
            link_lines = tuple(item.line for item in links_v.items)
        properties = self.params(self.optional(m, "properties"), "cluster.properties")
        for (key, _), line in zip(properties, self._key_lines(m, "properties"), strict=True):
            if not OPTION_NAME_RE.match(key):
                self.fail(line, f"cluster property {key!r}: Pacemaker names are lowercase words joined by '-'")
        return ClusterSection(
            name=name,
            nodes=nodes,
            links=links,
            link_lines=link_lines,
            corosync=self.corosync(self.optional(m, "corosync")),
            properties=properties,
            resource_defaults=self.typed_attrs(
                self.optional(m, "resource_defaults"), "cluster.resource_defaults", _META_KINDS
            ),
            op_defaults=self.typed_attrs(self.optional(m, "op_defaults"), "cluster.op_defaults", _OP_DEFAULT_KINDS),
        )

    def _key_lines(self, m: _Map, key: str) -> list[int]:
        v = self.optional(m, key)
        return list(v.key_lines.values()) if isinstance(v, _Map) else []

    def corosync(self, v: _Val | None) -> CorosyncOptions:
        if v is None:
            return CorosyncOptions()
        m = self.mapping(v, "cluster.corosync")
        names = ("token", "consensus", "knet_ping_interval", "knet_ping_timeout")
        self.keys(m, names, "cluster.corosync")
        vals: dict[str, int | None] = {}
        for name in names:
            item = self.optional(m, name)
            vals[name] = None if item is None else self.integer(item, f"cluster.corosync.{name} (ms)", 1)
        token, consensus = vals["token"], vals["consensus"]
        ping, pong = vals["knet_ping_interval"], vals["knet_ping_timeout"]
        # corosync refuses a consensus below the token timeout (totemconfig.c).
        if consensus is not None and consensus < (token or 3000):
            self.fail(m.key_lines["consensus"], f"consensus {consensus} ms is below the token timeout")
        # corosync.conf(5): "knet_ping_interval and knet_ping_timeout are a pair".
        if (ping is None) != (pong is None):
            given = "knet_ping_interval" if ping is not None else "knet_ping_timeout"
            self.fail(m.key_lines[given], "knet_ping_interval and knet_ping_timeout are a pair: give both")
        if ping is not None and pong is not None and ping >= pong:
            self.fail(m.key_lines["knet_ping_timeout"], "knet_ping_timeout must be longer than knet_ping_interval")
        return CorosyncOptions(token, consensus, ping, pong, m.key_lines.get("token", m.line))

    def fencing(self, v: _Val | None, default_line: int) -> Fencing:
        if v is None:
            return Fencing(line=default_line)
        m = self.mapping(v, "fencing")
        allowed = ("method", "action", "timeout", "network", "port", "key_file", "identity_file", "params")
        self.keys(m, allowed, "fencing")
        defaults = Fencing()
        method = defaults.method
        if (method_v := self.optional(m, "method")) is not None:
            method = self.choice(method_v, "fencing.method", FENCE_METHODS)
        action = defaults.action
        if (action_v := m.items.get("action")) is not None:
            raw = self.scalar(action_v, "fencing.action")
            # YAML 1.1 reads a bare `off` as false; there is no other meaning to take.
            action = "off" if raw is False else self.choice(action_v, "fencing.action", FENCE_ACTIONS)
        timeout = defaults.timeout
        if (t := self.optional(m, "timeout")) is not None:
            timeout = self.integer(t, "fencing.timeout (seconds)", 1, 600)
        network = defaults.network
        if (n := self.optional(m, "network")) is not None:
            network = self.integer(n, "fencing.network", 0)
        port = defaults.port
        if (p := self.optional(m, "port")) is not None:
            port = self.integer(p, "fencing.port", 1, 65535)
        key_file = defaults.key_file
        if (k := self.optional(m, "key_file")) is not None:
            key_file = self.abs_path(k, "fencing.key_file")
        identity = defaults.identity_file
        if (i := self.optional(m, "identity_file")) is not None:
            identity = self.abs_path(i, "fencing.identity_file")
        params = self.params(self.optional(m, "params"), "fencing.params")
        line = m.key_lines.get("network", m.line)
        return Fencing(method, action, timeout, network, port, key_file, identity, params, line)

    def abs_path(self, v: _Val, what: str) -> str:
        value = self.string(v, what)
        if not value.startswith("/"):
            self.fail(v.line, f"{what} must be an absolute path on the nodes, not {value!r}")
        return value

    def workloads(self, v: _Val | None) -> tuple[tuple[Resource, ...], tuple[Group, ...], tuple[str, ...]]:
        if v is None:
            return (), (), ()
        if not isinstance(v, _Seq):
            self.fail(v.line, "workloads must be a list of resources and groups (lines starting with '-')")
        resources: list[Resource] = []
        groups: list[Group] = []
        order: list[str] = []
        seen: dict[str, int] = {STONITH_ID: 0}
        for item in v.items:
            m = self.mapping(item, "a workload")
            rsc_id = self.ident(self.required(m, "id", "a workload"), "workload id")
            if rsc_id in seen:
                where = "the fence device's id" if rsc_id == STONITH_ID else f"already used on line {seen[rsc_id]}"
                self.fail(m.items["id"].line, f"id {rsc_id!r} is {where}")
            seen[rsc_id] = m.items["id"].line
            order.append(rsc_id)
            if "group" in m.items:
                groups.append(self.group(m, rsc_id))
            else:
                resources.append(self.primitive(m, rsc_id))
        self.check_groups(resources, groups)
        self.check_vips(resources)
        self.check_clients(resources, groups)
        return tuple(resources), tuple(groups), tuple(order)

    def check_vips(self, resources: list[Resource]) -> None:
        taken: dict[tuple[int, str | None], str] = {}
        for rsc in resources:
            if not isinstance(rsc, IPaddr2):
                continue
            key = (rsc.network, rsc.address)
            if key in taken:
                what = "address auto (.100)" if rsc.address is None else f"address {rsc.address}"
                self.fail(rsc.line, f"{rsc.id}: {what} on network {rsc.network} is already {taken[key]}'s")
            taken[key] = rsc.id

    def group(self, m: _Map, group_id: str) -> Group:
        self.keys(m, ("id", "group", "meta", "client"), f"group {group_id}")
        members_v = m.items["group"]
        if not isinstance(members_v, _Seq) or not members_v.items:
            self.fail(members_v.line, f"group {group_id}: 'group' must be a non-empty list of resource ids")
        members = tuple(self.ident(x, f"a member of group {group_id}") for x in members_v.items)
        meta = self.typed_attrs(self.optional(m, "meta"), f"{group_id}.meta", _META_KINDS)
        return Group(group_id, members, meta, m.line, self.client(self.optional(m, "client"), group_id))

    def client(self, v: _Val | None, owner: str) -> Client | None:
        """A workload's ``client:``; its address is checked against the
        spec's ipaddr2 resources once every workload is read."""
        if v is None:
            return None
        what = f"{owner}.client"
        m = self.mapping(v, what)
        self.keys(m, ("protocol", "address", "port", "path", "status", "contains"), what)
        protocol = self.choice(self.required(m, "protocol", what), f"{what}.protocol", CLIENT_PROTOCOLS)
        address_v = self.required(m, "address", what)
        address = self.string(address_v, f"{what}.address")
        if not _is_ipv4(address) and not ID_RE.match(address):
            self.fail(address_v.line, f"{what}.address {address!r}: name an ipaddr2 resource or write an IPv4 address")
        port = self.integer(self.required(m, "port", what), f"{what}.port", 1, 65535)
        if protocol == "tcp":
            for key in ("path", "status", "contains"):
                if key in m.items:
                    self.fail(
                        m.key_lines[key], f"{what}.{key} applies to protocol http only (a tcp client only connects)"
                    )
            return Client(protocol, address, port, line=m.line)
        path = "/"
        if (p := self.optional(m, "path")) is not None:
            path = self.string(p, f"{what}.path")
            if not path.startswith("/"):
                self.fail(p.line, f"{what}.path {path!r} must start with '/'")
        status = 200
        if (st := self.optional(m, "status")) is not None:
            status = self.integer(st, f"{what}.status (an HTTP status)", 100, 599)
        contains = None
        if (c := self.optional(m, "contains")) is not None:
            contains = self.string(c, f"{what}.contains")
        return Client(protocol, address, port, path, status, contains, m.line)

    def check_clients(self, resources: list[Resource], groups: list[Group]) -> None:
        vips = {r.id for r in resources if isinstance(r, IPaddr2)}
        for entry in [*resources, *groups]:
            c = entry.client
            if c is None or not c.floating or c.address in vips:
                continue
            known = ", ".join(sorted(vips)) or "none in this spec"
            self.fail(
                c.line,
                f"{entry.id}.client.address {c.address!r} is not an ipaddr2 resource of the spec "
                f"(ipaddr2 resources: {known}); name one, or write the fixed IPv4 address clients use",
            )

    def check_groups(self, resources: list[Resource], groups: list[Group]) -> None:
        primitives = {r.id for r in resources}
        group_ids = {g.id for g in groups}
        owner: dict[str, str] = {}
        for g in groups:
            for member in g.members:
                if member in group_ids:
                    self.fail(g.line, f"group {g.id}: {member!r} is a group; groups cannot contain groups")
                if member not in primitives:
                    known = ", ".join(sorted(primitives)) or "none defined"
                    self.fail(g.line, f"group {g.id}: no resource {member!r} in workloads (resources: {known})")
                if member in owner:
                    where = "twice in this group" if owner[member] == g.id else f"already in group {owner[member]}"
                    self.fail(g.line, f"group {g.id}: {member!r} is {where}; a resource belongs to one group")
                owner[member] = g.id

    def primitive(self, m: _Map, rsc_id: str) -> Resource:
        type_v = self.required(m, "type", f"workload {rsc_id} (or 'group' for a group)")
        rtype = self.scalar(type_v, f"{rsc_id}.type")
        if rtype not in RESOURCE_TYPES:
            self.fail(
                type_v.line,
                f"{rsc_id}: unknown resource type {rtype!r}; known types: {', '.join(RESOURCE_TYPES)} "
                "(or 'group: [...]' for a group)",
            )
        extra = {
            "ipaddr2": ("network", "address", "cidr_netmask"),
            "systemd": ("unit",),
            "podman": ("image", "run_opts", "run_cmd", "allow_pull"),
            "ocf": ("agent", "params", "process"),
        }[str(rtype)]
        self.keys(m, ("id", "type", "ops", "meta", "client", *extra), f"{rtype} resource {rsc_id}")
        ops, no_monitor = self.ops(self.optional(m, "ops"), rsc_id)
        meta = self.typed_attrs(self.optional(m, "meta"), f"{rsc_id}.meta", _META_KINDS)
        client = self.client(self.optional(m, "client"), rsc_id)
        line = m.line
        if rtype == "ipaddr2":
            network, address, netmask = self.ipaddr2(m, rsc_id)
            return IPaddr2(
                id=rsc_id,
                ops=ops,
                no_monitor=no_monitor,
                meta=meta,
                line=line,
                client=client,
                network=network,
                address=address,
                cidr_netmask=netmask,
            )
        if rtype == "systemd":
            unit_v = self.required(m, "unit", f"systemd resource {rsc_id}")
            unit = self.string(unit_v, f"{rsc_id}.unit").removesuffix(".service")
            if not SYSTEMD_UNIT_RE.match(unit):
                self.fail(unit_v.line, f"{rsc_id}.unit {unit!r} is not a systemd unit name")
            return Systemd(id=rsc_id, ops=ops, no_monitor=no_monitor, meta=meta, line=line, client=client, unit=unit)
        if rtype == "podman":
            allow_v = self.optional(m, "allow_pull")
            return Podman(
                id=rsc_id,
                ops=ops,
                no_monitor=no_monitor,
                meta=meta,
                line=line,
                client=client,
                image=self.string(self.required(m, "image", f"podman resource {rsc_id}"), f"{rsc_id}.image"),
                run_opts=self.opt_string(m, "run_opts", rsc_id),
                run_cmd=self.opt_string(m, "run_cmd", rsc_id),
                allow_pull=False if allow_v is None else self.boolean(allow_v, f"{rsc_id}.allow_pull"),
            )
        agent_v = self.required(m, "agent", f"ocf resource {rsc_id}")
        agent = self.string(agent_v, f"{rsc_id}.agent")
        if not OCF_AGENT_RE.match(agent):
            self.fail(agent_v.line, f"{rsc_id}.agent {agent!r}: write ocf:<provider>:<type>, like ocf:pacemaker:Dummy")
        process = self.opt_string(m, "process", rsc_id)
        if process is not None and not PROCESS_RE.match(process):
            self.fail(
                m.key_lines["process"],
                f"{rsc_id}.process {process!r}: write the process name as ps shows it (letters, digits, '_.-'; "
                f"at most {COMM_LENGTH} characters, the kernel keeps no more)",
            )
        return OcfResource(
            id=rsc_id,
            ops=ops,
            no_monitor=no_monitor,
            meta=meta,
            line=line,
            client=client,
            type_agent=agent,
            type_params=self.params(self.optional(m, "params"), f"{rsc_id}.params"),
            process=process,
        )

    def opt_string(self, m: _Map, key: str, rsc_id: str) -> str | None:
        v = self.optional(m, key)
        return None if v is None else self.string(v, f"{rsc_id}.{key}")

    def ipaddr2(self, m: _Map, rsc_id: str) -> tuple[int, str | None, int]:
        network = 0
        if (n := self.optional(m, "network")) is not None:
            network = self.integer(n, f"{rsc_id}.network", 0)
        address: str | None = None
        if (a := self.optional(m, "address")) is not None:
            text = self.string(a, f"{rsc_id}.address")
            if text != "auto":
                try:
                    address = str(ipaddress.IPv4Address(text))
                except ValueError:
                    self.fail(a.line, f"{rsc_id}.address {text!r}: write an IPv4 address or 'auto'")
        netmask = 24
        if (c := self.optional(m, "cidr_netmask")) is not None:
            netmask = self.integer(c, f"{rsc_id}.cidr_netmask", 1, 32)
        return network, address, netmask

    def ops(self, v: _Val | None, rsc_id: str) -> tuple[tuple[Op, ...], bool]:
        if v is None:
            return (), False
        m = self.mapping(v, f"{rsc_id}.ops")
        self.keys(m, OP_NAMES, f"{rsc_id}.ops")
        ops: list[Op] = []
        no_monitor = False
        for name, val in m.items.items():
            what = f"{rsc_id}.ops.{name}"
            if isinstance(val, _Scalar) and val.value is None:
                if name != "monitor":
                    self.fail(val.line, f"{what}: only monitor can be null (no monitor); leave {name} out instead")
                no_monitor = True
                continue
            om = self.mapping(val, what)
            self.keys(om, ("interval", "timeout", "on-fail"), what)
            interval = timeout = None
            if (i := self.optional(om, "interval")) is not None:
                interval = self.duration(i, f"{what}.interval", zero=name != "monitor")
            elif name == "monitor":
                self.fail(om.line, f"{what} needs an interval (or write 'monitor: null' for no monitor)")
            if (t := self.optional(om, "timeout")) is not None:
                timeout = self.duration(t, f"{what}.timeout")
            on_fail = None
            if (f := self.optional(om, "on-fail")) is not None:
                on_fail = self.choice(f, f"{what}.on-fail", ON_FAIL)
            ops.append(Op(name, interval, timeout, on_fail))
        return tuple(ops), no_monitor

    def constraints(self, v: _Val | None, ids: set[str]) -> tuple[Constraint, ...]:
        if v is None:
            return ()
        if not isinstance(v, _Seq):
            self.fail(v.line, "constraints must be a list (lines starting with '-')")
        out: list[Constraint] = []
        kinds = ("colocation", "order", "location", "ban")
        for item in v.items:
            m = self.mapping(item, "a constraint")
            if len(m.items) != 1:
                self.fail(m.line, f"a constraint is one of {', '.join(kinds)}: {{...}}, one per list entry")
            (kind,) = m.items
            if kind not in kinds:
                self.fail(m.line, f"unknown constraint {kind!r}; known: {', '.join(kinds)}")
            body = self.mapping(m.items[kind], kind)
            out.append(self.constraint(kind, body, ids))
        return tuple(out)

    def constraint(self, kind: str, m: _Map, ids: set[str]) -> Constraint:
        def ref(key: str) -> str:
            v = self.required(m, key, kind)
            rsc = self.ident(v, f"{kind}.{key}")
            if rsc not in ids:
                known = ", ".join(sorted(ids)) or "none defined"
                self.fail(v.line, f"{kind}.{key}: no resource or group {rsc!r} in workloads (known: {known})")
            return rsc

        line = m.line
        if kind == "colocation":
            self.keys(m, ("rsc", "with", "score"), kind)
            rsc, with_rsc = ref("rsc"), ref("with")
            if rsc == with_rsc:
                self.fail(line, f"colocation of {rsc} with itself")
            score_v = self.optional(m, "score")
            score = INFINITY if score_v is None else self.score(score_v, "colocation.score")
            return Colocation(rsc, with_rsc, score, line)
        if kind == "order":
            self.keys(m, ("first", "then", "kind"), kind)
            first, then = ref("first"), ref("then")
            if first == then:
                self.fail(line, f"order of {first} after itself")
            kind_v = self.optional(m, "kind")
            order_kind = "Mandatory" if kind_v is None else self.choice(kind_v, "order.kind", ORDER_KINDS)
            return Order(first, then, order_kind, line)
        if kind == "location":
            self.keys(m, ("rsc", "prefers", "score"), kind)
            rsc = ref("rsc")
            node = self.node_name(self.required(m, "prefers", kind), "location.prefers")
            score_v = self.optional(m, "score")
            score = INFINITY if score_v is None else self.score(score_v, "location.score")
            return Location(rsc, node, score, line)
        self.keys(m, ("rsc", "node"), kind)
        return Ban(ref("rsc"), self.node_name(self.required(m, "node", kind), "ban.node"), line)
