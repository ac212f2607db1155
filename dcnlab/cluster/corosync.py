"""Corosync 3.1 as the harness sees it: two tools' output, and corosync.conf.

- :func:`parse_cfgtool` reads ``corosync-cfgtool -s`` under knet: for each
  link, this node's address and every node's status on it (``localhost``,
  ``connected``, ``disconnected``...).
- :func:`parse_quorumtool` reads ``corosync-quorumtool -s`` (quorate, votes,
  members); :func:`parse_members` reads ``corosync-quorumtool -l``.
- :func:`corosync_conf` renders the corosync.conf that ``pcs cluster setup``
  writes for the same spec, line for line (docs/facts.md: "matched pcs's line for
  line, UUID aside"), for the fast path that skips pcsd.
- :func:`with_node` and :func:`without_node` edit a live corosync.conf's
  nodelist the way ``pcs cluster node add/remove`` do (pcs
  lib/corosync/config_facade.py ``add_nodes``/``remove_nodes``): the lowest
  free nodeid, one ``ringN_addr`` per link, ``two_node`` set for exactly two
  nodes, ``config_version`` bumped where there is one; every other line kept.

Formats: the quorumtool lines are the ``printf`` s of corosync's
tools/corosync-quorumtool.c (``"Quorate:          %s"``, ``"Quorum:
%d %s"`` with ``Activity blocked`` when not quorate, members as
``Nodeid Votes [Qdevice] Name`` with `` (local)`` on this node). The cfgtool
layout is corosync 3.1's, as captured on real clusters (tests/unit/data/README.md).
Exit statuses are not meaningful to these parsers: run the tools with
``check=False`` and read the text (older quorumtools exit 1 *when quorate*).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import ClusterError, ConfigError
from dcnlab.fleet.spec import NodePlan

CFGTOOL_ARGV = ("corosync-cfgtool", "-s")
QUORUMTOOL_ARGV = ("corosync-quorumtool", "-s")
MEMBERS_ARGV = ("corosync-quorumtool", "-l")
# Debian's pcs writes this path (settings.corosync_log_file); RHEL's pcs writes
# /var/log/cluster/corosync.log.
DEBIAN_COROSYNC_LOG = "/var/log/corosync/corosync.log"


# ------------------------------------------------------------ corosync-cfgtool


@dataclass(frozen=True)
class KnetLink:
    """One knet link as this node sees it."""

    link: int
    transport: str  # udp or sctp
    address: str  # this node's address on the link
    peers: tuple[tuple[int, str], ...]  # (nodeid, status) in printed order

    def status(self, nodeid: int) -> str | None:
        return dict(self.peers).get(nodeid)

    def connected(self, nodeid: int) -> bool:
        """Whether ``nodeid`` is reachable on this link (this node always is)."""
        return self.status(nodeid) in ("connected", "localhost")

    def down_peers(self) -> list[int]:
        return [nodeid for nodeid, status in self.peers if status not in ("connected", "localhost")]


@dataclass(frozen=True)
class LinkStatus:
    """``corosync-cfgtool -s``: the local node id and its links."""

    local_nodeid: int
    transport: str  # knet
    links: tuple[KnetLink, ...]

    def link(self, number: int) -> KnetLink:
        for link in self.links:
            if link.link == number:
                return link
        raise ClusterError(f"corosync reports no knet link {number} (links: {[x.link for x in self.links]})")

    def all_connected(self) -> bool:
        return all(not link.down_peers() for link in self.links)


_LOCAL_RE = re.compile(r"^Local node ID (\d+)(?:, transport (\S+))?")
_LINK_RE = re.compile(r"^LINK ID (\d+)(?:\s+(\S+))?")
_ADDR_RE = re.compile(r"^addr\s*=\s*(\S+)")
_PEER_RE = re.compile(r"^nodeid:?\s*(\d+):\s*(\S.*)$")


def parse_cfgtool(text: str) -> LinkStatus:
    """Parse ``corosync-cfgtool -s`` of corosync 3.1 with the knet transport."""
    local: int | None = None
    transport = ""
    links: list[KnetLink] = []
    current: dict[str, object] | None = None
    peers: list[tuple[int, str]] = []

    def close() -> None:
        if current is not None:
            links.append(
                KnetLink(
                    link=int(str(current["link"])),
                    transport=str(current["transport"]),
                    address=str(current.get("address", "")),
                    peers=tuple(peers),
                )
            )

    for raw in text.splitlines():
        line = raw.strip()
        if match := _LOCAL_RE.match(line):
            local = int(match.group(1))
            transport = match.group(2) or ""
        elif match := _LINK_RE.match(line):
            close()
            current, peers = {"link": match.group(1), "transport": match.group(2) or ""}, []
        elif current is not None and (match := _ADDR_RE.match(line)):
            current["address"] = match.group(1)
        elif current is not None and (match := _PEER_RE.match(line)):
            peers.append((int(match.group(1)), match.group(2).strip()))
        elif line.startswith("RING ID"):
            raise ClusterError("corosync-cfgtool shows rings, not knet links: this cluster does not use knet")
    close()
    if local is None:
        raise ClusterError(f"not corosync-cfgtool -s output (no 'Local node ID' line): {text.strip()[:200]!r}")
    return LinkStatus(local, transport, tuple(links))


# --------------------------------------------------------- corosync-quorumtool


@dataclass(frozen=True)
class Member:
    nodeid: int
    name: str  # the nodelist name, or an address with -i
    votes: int | None = None  # None in output without votequorum
    local: bool = False


@dataclass(frozen=True)
class QuorumStatus:
    """``corosync-quorumtool -s``."""

    quorate: bool
    nodes: int
    node_id: int
    ring_id: str
    expected_votes: int | None
    highest_expected: int | None
    total_votes: int | None
    quorum: int | None
    flags: frozenset[str]
    members: tuple[Member, ...]

    def member_names(self) -> list[str]:
        return [m.name for m in self.members]


def parse_quorumtool(text: str) -> QuorumStatus:
    """Parse ``corosync-quorumtool -s`` (names, ``-i`` addresses or ``-H`` hex ids)."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if sep and key.strip() and not key.startswith(" "):
            fields.setdefault(key.strip(), value.strip())
    if "Quorate" not in fields:
        raise ClusterError(f"not corosync-quorumtool -s output (no 'Quorate:' line): {text.strip()[:200]!r}")

    def number(key: str) -> int | None:
        value = fields.get(key)
        if value is None:
            return None
        match = re.match(r"(0x[0-9a-fA-F]+|\d+)", value)
        if match is None:
            raise ClusterError(f"corosync-quorumtool: {key} is {value!r}, not a number")
        return int(match.group(1), 0)

    quorum_line = fields.get("Quorum", "")
    return QuorumStatus(
        quorate=fields["Quorate"] == "Yes",
        nodes=number("Nodes") or 0,
        node_id=number("Node ID") or 0,
        ring_id=fields.get("Ring ID", ""),
        expected_votes=number("Expected votes"),
        highest_expected=number("Highest expected"),
        total_votes=number("Total votes"),
        quorum=number("Quorum") if quorum_line else None,
        flags=frozenset(fields.get("Flags", "").split()),
        members=parse_members(text),
    )


def parse_members(text: str) -> tuple[Member, ...]:
    """The ``Membership information`` table of ``corosync-quorumtool -s`` or ``-l``."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Membership information")
    except StopIteration:
        raise ClusterError(
            f"no 'Membership information' in corosync-quorumtool output: {text.strip()[:200]!r}"
        ) from None
    header_at = next((i for i in range(start + 1, len(lines)) if lines[i].split()[:1] == ["Nodeid"]), None)
    if header_at is None:
        raise ClusterError("corosync-quorumtool: membership table has no 'Nodeid' header")
    columns = lines[header_at].split()  # Nodeid [Votes [Qdevice]] Name
    members = []
    for raw in lines[header_at + 1 :]:
        if not raw.strip():
            break
        parts = raw.split(None, len(columns) - 1)
        try:
            nodeid = int(parts[0], 0)
        except ValueError:
            raise ClusterError(f"corosync-quorumtool: cannot read member line {raw!r}") from None
        if nodeid == 0:
            continue  # the quorum device's own line (no Qdevice column), not a node
        if len(parts) < len(columns):
            raise ClusterError(f"corosync-quorumtool: cannot read member line {raw!r}")
        name = parts[-1]
        local = name.endswith(" (local)")
        votes = int(parts[1]) if "Votes" in columns else None
        members.append(Member(nodeid, name.removesuffix(" (local)"), votes, local))
    return tuple(members)


# ---------------------------------------------------------------- corosync.conf


def corosync_conf(
    spec: ClusterSpec,
    nodes: Sequence[NodePlan],
    *,
    cluster_uuid: str | None = None,
    logfile: str = DEBIAN_COROSYNC_LOG,
) -> str:
    """The corosync.conf ``pcs cluster setup`` writes for ``spec`` on ``nodes``.

    Mirrors pcs 0.11 (lib/corosync/config_facade.py ``create`` and
    lib/commands/cluster/setup.py ``_create_corosync_conf``): sections totem,
    nodelist, quorum, logging; in totem, version/cluster_name/transport, then
    totem options sorted by name, then knet crypto (aes256/sha256, pcs's
    default for knet), then cluster_uuid, then one ``interface`` per link that
    has options; ``two_node: 1`` for exactly two nodes; four-space indents and
    a blank line between sections (config_parser.py ``Section.export``).
    Pass ``cluster_uuid`` to match a pcs-made file; pcs makes a random one.
    """
    if not nodes:
        raise ConfigError("a cluster needs at least one node")
    links = spec.link_networks(len(nodes[0].nics))
    for node in nodes:
        missing = [net for net in links if net >= len(node.nics)]
        if missing:
            raise ConfigError(f"{node.name} has no address on network(s) {missing} for the knet links")
    opts = spec.cluster.corosync
    totem: list[tuple[str, str]] = [
        ("version", "2"),
        ("cluster_name", spec.cluster.name),
        ("transport", "knet"),
    ]
    totem += [(name, str(value)) for name, value in (("consensus", opts.consensus), ("token", opts.token)) if value]
    totem += [("crypto_cipher", "aes256"), ("crypto_hash", "sha256")]
    if cluster_uuid is not None:
        totem.append(("cluster_uuid", cluster_uuid))
    interfaces = []
    if opts.knet_ping_interval is not None and opts.knet_ping_timeout is not None:
        interfaces = [
            _section(
                "interface",
                [
                    ("knet_ping_interval", str(opts.knet_ping_interval)),
                    ("knet_ping_timeout", str(opts.knet_ping_timeout)),
                    ("linknumber", str(link)),
                ],
            )
            for link in range(len(links))
        ]
    node_sections = [
        _section(
            "node",
            [
                *((f"ring{link}_addr", node.address(net)) for link, net in enumerate(links)),
                ("name", node.name),
                ("nodeid", str(i)),
            ],
        )
        for i, node in enumerate(nodes, 1)
    ]
    quorum = [("provider", "corosync_votequorum")]
    if len(nodes) == 2:
        quorum.append(("two_node", "1"))
    sections = [
        _section("totem", totem, interfaces),
        _section("nodelist", [], node_sections),
        _section("quorum", quorum),
        _section("logging", [("to_logfile", "yes"), ("logfile", logfile), ("to_syslog", "yes"), ("timestamp", "on")]),
    ]
    return "\n".join(sections)


def _section(name: str, attrs: list[tuple[str, str]], children: Sequence[str] = ()) -> str:
    """One ``name { ... }`` block the way pcs exports it, ending in a newline."""
    lines = [f"{key}: {value}" for key, value in attrs]
    if attrs and children:
        lines.append("")
    for i, child in enumerate(children):
        if i:
            lines.append("")
        lines += child.rstrip("\n").split("\n")
    body = [f"    {line}" if line else line for line in lines]
    return "\n".join([f"{name} {{", *body, "}"]) + "\n"


# ------------------------------------------------ editing a live corosync.conf


@dataclass
class ConfSection:
    """One ``name { ... }`` block of corosync.conf: its ``key: value`` lines in
    order and its sub-blocks in order (the root block has no name)."""

    name: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[ConfSection] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((value for k, value in self.attrs if k == key), None)

    def set(self, key: str, value: str | None) -> None:
        """Replace ``key``'s value in place, append it, or (None) drop it."""
        if value is None:
            self.attrs = [(k, v) for k, v in self.attrs if k != key]
        elif self.get(key) is None:
            self.attrs.append((key, value))
        else:
            self.attrs = [(k, value if k == key else v) for k, v in self.attrs]

    def child(self, name: str) -> ConfSection:
        found = next((c for c in self.children if c.name == name), None)
        if found is None:
            raise ConfigError(f"corosync.conf has no {name} section")
        return found

    def render(self) -> str:
        return _section(self.name, self.attrs, [c.render() for c in self.children])


def parse_conf(text: str) -> ConfSection:
    """corosync.conf as nested sections. Comments and blank lines are dropped
    (pcs's own parser drops them too when it rewrites the file)."""
    root = ConfSection("")
    stack = [root]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            section = ConfSection(line[:-1].strip())
            stack[-1].children.append(section)
            stack.append(section)
        elif line == "}":
            if len(stack) == 1:
                raise ConfigError(f"corosync.conf line {number}: '}}' closes no section")
            stack.pop()
        else:
            key, sep, value = line.partition(":")
            if not sep:
                raise ConfigError(f"corosync.conf line {number}: expected 'key: value', got {raw.strip()!r}")
            stack[-1].attrs.append((key.strip(), value.strip()))
    if len(stack) != 1:
        raise ConfigError(f"corosync.conf: section {stack[-1].name!r} is not closed")
    return root


def render_conf(root: ConfSection) -> str:
    """The file again, laid out as pcs writes it (:func:`corosync_conf`)."""
    top = [f"{k}: {v}\n" for k, v in root.attrs]
    return "\n".join(top + [c.render() for c in root.children])


def conf_node_names(text: str) -> list[str]:
    """The ``name`` of every node in corosync.conf's nodelist, in order."""
    return [n.get("name") or f"nodeid {n.get('nodeid')}" for n in parse_conf(text).child("nodelist").children]


def with_node(text: str, name: str, addresses: Sequence[str]) -> str:
    """``text`` (a live corosync.conf) with node ``name`` added on the lowest
    free nodeid, ``addresses[i]`` being its ``ringi_addr``: one per knet link,
    as many as the other nodes have."""
    root = parse_conf(text)
    nodes = root.child("nodelist").children
    if any(n.get("name") == name for n in nodes):
        raise ConfigError(f"{name} is already in corosync.conf's nodelist")
    links = [k for k, _ in nodes[0].attrs if re.fullmatch(r"ring\d+_addr", k)] if nodes else []
    if nodes and len(addresses) != len(links):
        raise ConfigError(
            f"{name} has {len(addresses)} address(es) for a cluster on {len(links)} knet link(s) ({', '.join(links)})"
        )
    # pcs's choice (config_facade.py _get_nodeid_generator): the lowest id not in use.
    used = {int(n.get("nodeid") or 0) for n in nodes}
    nodeid = next(i for i in range(1, len(used) + 2) if i not in used)
    attrs = [(f"ring{i}_addr", addr) for i, addr in enumerate(addresses)]
    nodes.append(ConfSection("node", [*attrs, ("name", name), ("nodeid", str(nodeid))]))
    _after_membership_change(root)
    return render_conf(root)


def without_node(text: str, name: str) -> str:
    """``text`` (a live corosync.conf) without node ``name``."""
    root = parse_conf(text)
    nodelist = root.child("nodelist")
    kept = [n for n in nodelist.children if n.get("name") != name]
    if len(kept) == len(nodelist.children):
        raise ConfigError(f"{name} is not in corosync.conf's nodelist ({', '.join(conf_node_names(text))})")
    if not kept:
        raise ConfigError(f"cannot remove {name}: it is the last node in corosync.conf")
    nodelist.children = kept
    _after_membership_change(root)
    return render_conf(root)


def _after_membership_change(root: ConfSection) -> None:
    """What pcs adjusts when the node count changes: ``two_node: 1`` exactly
    for two nodes without a quorum device (corosync applies a change on
    reload, wait_for_all with it: corosync pull request #521, 2020), and the config version."""
    quorum = root.child("quorum")
    qdevice = any(c.name == "device" for c in quorum.children)
    two = len(root.child("nodelist").children) == 2 and not qdevice
    quorum.set("two_node", "1" if two else None)
    totem = root.child("totem")
    version = totem.get("config_version")
    if version is not None:
        totem.set("config_version", str(int(version) + 1))
