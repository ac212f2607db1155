"""A typed view of ``crm_mon --output-as=xml`` (Pacemaker 2.1).

Run :data:`CRM_MON_ARGV` on any online node and pass stdout to
:func:`parse_crm_mon`. Element and attribute names are the ones Pacemaker 2.1
prints (lib/pengine/pe_output.c ``node_xml``, ``cluster_dc_xml``,
``failed_action_xml``, lib/pengine/native.c ``pe__resource_xml``,
lib/fencing/st_output.c ``stonith_event_xml``); see tests/unit/data/README.md
for the samples the tests use. Attributes a given 2.1.x release does not print
(``maintenance`` on resources, ``health`` on nodes...) read as their default.

What crm_mon does not show is the scheduler's *next* actions: a cluster can
look settled between two transitions. To know there are no pending actions,
ask the scheduler: ``crm_resource --wait --timeout=N`` blocks until the
cluster settles (exit 0), and ``crm_simulate --live-check`` prints the
``Transition Summary`` it would execute now (:func:`parse_transition_summary`;
empty = nothing to do). A resource with an operation in flight carries
``pending="..."`` in crm_mon when the ``record-pending`` operation option is
true (pe__resource_xml prints it only then), which
:meth:`ClusterState.pending_actions` reports; an empty list is therefore no
proof of convergence, the scheduler's answer is.

Timestamps: Pacemaker 2.1 prints ``last-rc-change`` and fence ``completed`` as
``2023-04-03 22:22:27Z`` or ``... +02:00`` (crm_time_as_string with date,
time of day and zone; later releases add ``.123456``); ``last_update`` and
``last_change`` are ctime strings (``Mon Apr  3 22:22:27 2023``), as are
failure times of older 2.x. Those carry no zone: they are read as UTC, the
guests' zone.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dcnlab.core.errors import ClusterError

CRM_MON_ARGV = ("crm_mon", "--one-shot", "--inactive", "--output-as=xml")
SETTLE_ARGV_PREFIX = ("crm_resource", "--wait")  # + f"--timeout={seconds}s"
ACTIVE_ROLES = frozenset({"Started", "Promoted", "Unpromoted", "Master", "Slave"})


# ------------------------------------------------------------------ the view


@dataclass(frozen=True)
class NodeState:
    name: str
    id: str
    online: bool
    standby: bool
    standby_onfail: bool
    maintenance: bool
    pending: bool
    unclean: bool
    shutdown: bool
    expected_up: bool
    is_dc: bool
    resources_running: int
    type: str  # member, remote, ping


@dataclass(frozen=True)
class ResourceState:
    """One primitive instance (a clone has one per instance)."""

    id: str
    agent: str  # ocf:heartbeat:IPaddr2, systemd:my-service, stonith:fence_virt
    role: str  # Started, Stopped, Starting (when pending), Promoted...
    target_role: str | None
    active: bool
    orphaned: bool
    blocked: bool
    maintenance: bool
    managed: bool
    failed: bool
    failure_ignored: bool
    nodes: tuple[str, ...]  # where it runs now
    pending: str | None  # the operation in flight, e.g. "Starting"
    locked_to: str | None
    group: str | None  # parent group id ("grp"; "grp:0" inside a clone)
    clone: str | None  # parent clone id
    bundle: str | None  # parent bundle id

    @property
    def started(self) -> bool:
        return self.active and self.role in ACTIVE_ROLES and not self.failed and not self.blocked


@dataclass(frozen=True)
class FailedAction:
    op_key: str  # e.g. "http_monitor_5000"
    resource: str
    task: str  # start, stop, monitor...
    interval_ms: int
    node: str
    exitstatus: str  # "not running", "error"...
    exitreason: str
    exitcode: int
    call: int | None
    status: str  # "complete", "Timed Out", "Error"...
    last_rc_change: datetime | None
    queued_ms: int | None
    exec_ms: int | None


@dataclass(frozen=True)
class FenceEvent:
    target: str
    action: str  # reboot, off, on
    status: str  # success, failed, pending
    client: str
    origin: str  # node that asked
    delegate: str | None  # node that executed it
    completed: datetime | None  # None while pending
    exit_reason: str | None


@dataclass(frozen=True)
class BanState:
    id: str
    resource: str
    node: str
    weight: int


@dataclass(frozen=True)
class ClusterState:
    stack: str | None
    dc: str | None
    dc_version: str | None
    quorate: bool
    last_update: datetime | None
    last_change: datetime | None
    stonith_enabled: bool | None
    maintenance_mode: bool | None
    nodes: tuple[NodeState, ...]
    resources: tuple[ResourceState, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (group id, member ids) in order
    failures: tuple[FailedAction, ...]
    fencing: tuple[FenceEvent, ...]  # newest first, as crm_mon prints them
    fence_history_status: int | None  # set when crm_mon could not read the history
    bans: tuple[BanState, ...]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready copy (times as ISO 8601), for reports and ``--json``."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))  # type: ignore[no-any-return]

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"crm_mon shows no node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def online_nodes(self) -> list[str]:
        return [n.name for n in self.nodes if n.online and n.type == "member"]

    def unclean_nodes(self) -> list[str]:
        return [n.name for n in self.nodes if n.unclean]

    def instances(self, rsc_id: str) -> list[ResourceState]:
        """Every instance of a primitive, or of every member of a group."""
        members = self._members(rsc_id)
        if members is not None:
            return [r for r in self.resources if r.id in members and _base(r.group) == rsc_id]
        found = [r for r in self.resources if r.id == rsc_id or r.clone == rsc_id]
        if not found:
            known = sorted({r.id for r in self.resources} | {g for g, _ in self.groups})
            raise ClusterError(f"crm_mon shows no resource {rsc_id!r} (known: {', '.join(known)})")
        return found

    def where(self, rsc_id: str) -> list[str]:
        """Nodes where a resource (or every member of a group) runs, sorted."""
        return sorted({node for r in self.instances(rsc_id) for node in r.nodes})

    def started(self, rsc_id: str) -> bool:
        """A primitive: some instance started, none failed. A group: every
        member started, all on one node (a group is colocated by definition)."""
        instances = self.instances(rsc_id)
        if self._members(rsc_id) is not None:
            return all(r.started for r in instances) and len(self.where(rsc_id)) == 1
        return any(r.started for r in instances) and not any(r.failed for r in instances)

    def all_started(self, ids: Iterable[str]) -> bool:
        return all(self.started(i) for i in ids)

    def pending_actions(self) -> list[tuple[str, str]]:
        """(resource, operation) for every operation crm_mon shows in flight."""
        return [(r.id, r.pending) for r in self.resources if r.pending]

    def failed_resources(self) -> list[str]:
        return sorted({r.id for r in self.resources if r.failed})

    def fence_events(self, target: str | None = None) -> list[FenceEvent]:
        return [e for e in self.fencing if target is None or e.target == target]

    def _members(self, group_id: str) -> tuple[str, ...] | None:
        for gid, members in self.groups:
            if _base(gid) == group_id:
                return members
        return None


def _base(group_id: str | None) -> str | None:
    # Cloned groups print one instance per clone copy: "grp:0", "grp:1"...
    return group_id.split(":", 1)[0] if group_id else None


# ------------------------------------------------------------------ parsing


def parse_crm_mon(text: str) -> ClusterState:
    """Parse ``crm_mon --output-as=xml``; raise :class:`ClusterError` with
    crm_mon's own message when it reports an error."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ClusterError(f"crm_mon printed no valid XML ({err}): {text.strip()[:200]!r}") from err
    if root.tag != "pacemaker-result":
        raise ClusterError(f"expected <pacemaker-result> from crm_mon --output-as=xml, got <{root.tag}>")
    status = root.find("status")
    errors = "; ".join((e.text or "").strip() for e in root.iter("error"))
    if status is not None and status.get("code", "0") != "0":
        raise ClusterError(
            f"crm_mon failed (code {status.get('code')}: {status.get('message', '')})"
            + (f": {errors}" if errors else "")
        )
    summary = root.find("summary")
    if summary is None and errors:
        # Exit 0 and "OK", yet nothing read: a node whose pacemakerd runs but
        # whose CIB is not up (a node joining a running cluster) prints only
        # pacemakerd's state and the error. Parsed, it read as a cluster
        # running no resources at all.
        raise ClusterError(f"crm_mon printed no cluster summary: {errors}")
    dc = summary.find("current_dc") if summary is not None else None
    options = summary.find("cluster_options") if summary is not None else None
    resources: list[ResourceState] = []
    groups: list[tuple[str, tuple[str, ...]]] = []
    _collect(root.find("resources"), resources, groups, group=None, clone=None, bundle=None)
    fence = root.find("fence_history")
    return ClusterState(
        stack=_attr(summary, "stack", "type"),
        dc=dc.get("name") if dc is not None and _bool(dc.get("present")) else None,
        dc_version=(dc.get("version") or None) if dc is not None else None,
        quorate=dc is not None and _bool(dc.get("with_quorum")),
        last_update=parse_pcmk_time(_attr(summary, "last_update", "time")),
        last_change=parse_pcmk_time(_attr(summary, "last_change", "time")),
        stonith_enabled=_opt_bool(options, "stonith-enabled"),
        maintenance_mode=_opt_bool(options, "maintenance-mode"),
        nodes=tuple(_node(n) for n in root.findall("nodes/node")),
        resources=tuple(resources),
        groups=tuple(groups),
        failures=tuple(_failure(f) for f in root.findall("failures/failure")),
        fencing=tuple(_fence_event(e) for e in fence.findall("fence_event")) if fence is not None else (),
        fence_history_status=int(fence.get("status", "0")) if fence is not None and fence.get("status") else None,
        bans=tuple(
            BanState(b.get("id", ""), b.get("resource", ""), b.get("node", ""), _int(b.get("weight")) or 0)
            for b in root.findall("bans/ban")
        ),
    )


def _collect(
    parent: ET.Element | None,
    out: list[ResourceState],
    groups: list[tuple[str, tuple[str, ...]]],
    *,
    group: str | None,
    clone: str | None,
    bundle: str | None,
) -> None:
    if parent is None:
        return
    for el in parent:
        if el.tag == "resource":
            out.append(_resource(el, group, clone, bundle))
        elif el.tag == "group":
            gid = el.get("id", "")
            groups.append((gid, tuple(r.get("id", "") for r in el.findall("resource"))))
            _collect(el, out, groups, group=gid, clone=clone, bundle=bundle)
        elif el.tag == "clone":
            _collect(el, out, groups, group=group, clone=el.get("id"), bundle=bundle)
        elif el.tag == "bundle":
            for replica in el.findall("replica"):
                _collect(replica, out, groups, group=group, clone=clone, bundle=el.get("id"))


def _resource(el: ET.Element, group: str | None, clone: str | None, bundle: str | None) -> ResourceState:
    return ResourceState(
        id=el.get("id", ""),
        agent=el.get("resource_agent", ""),
        role=el.get("role", ""),
        target_role=el.get("target_role"),
        active=_bool(el.get("active")),
        orphaned=_bool(el.get("orphaned")),
        blocked=_bool(el.get("blocked")),
        maintenance=_bool(el.get("maintenance")),
        managed=_bool(el.get("managed", "true")),
        failed=_bool(el.get("failed")),
        failure_ignored=_bool(el.get("failure_ignored")),
        nodes=tuple(n.get("name", "") for n in el.findall("node")),
        pending=el.get("pending"),
        locked_to=el.get("locked_to"),
        group=group,
        clone=clone,
        bundle=bundle,
    )


def _node(el: ET.Element) -> NodeState:
    return NodeState(
        name=el.get("name", ""),
        id=el.get("id", ""),
        online=_bool(el.get("online")),
        standby=_bool(el.get("standby")),
        standby_onfail=_bool(el.get("standby_onfail")),
        maintenance=_bool(el.get("maintenance")),
        pending=_bool(el.get("pending")),
        unclean=_bool(el.get("unclean")),
        shutdown=_bool(el.get("shutdown")),
        expected_up=_bool(el.get("expected_up")),
        is_dc=_bool(el.get("is_dc")),
        resources_running=_int(el.get("resources_running")) or 0,
        type=el.get("type", "member"),
    )


def _failure(el: ET.Element) -> FailedAction:
    # "id" instead of "op_key" when the history entry has no operation key.
    op_key = el.get("op_key") or el.get("id") or ""
    task = el.get("task") or ""
    interval = _int(el.get("interval"))
    resource = op_key
    if task and interval is not None and op_key.endswith(f"_{task}_{interval}"):
        resource = op_key[: -len(f"_{task}_{interval}")]
    elif match := re.match(r"^(.+)_([a-z_-]+?)_(\d+)$", op_key):
        # Without timing attributes (no last-rc-change), the key is all there is.
        resource, task, interval = match.group(1), task or match.group(2), int(match.group(3))
    return FailedAction(
        op_key=op_key,
        resource=resource,
        task=task,
        interval_ms=interval or 0,
        node=el.get("node", ""),
        exitstatus=el.get("exitstatus", ""),
        exitreason=el.get("exitreason", ""),
        exitcode=_int(el.get("exitcode")) or 0,
        call=_int(el.get("call")),
        status=el.get("status", ""),
        last_rc_change=parse_pcmk_time(el.get("last-rc-change")),
        queued_ms=_int(el.get("queued")),
        exec_ms=_int(el.get("exec")),
    )


def _fence_event(el: ET.Element) -> FenceEvent:
    return FenceEvent(
        target=el.get("target", ""),
        action=el.get("action", ""),
        status=el.get("status", ""),
        client=el.get("client", ""),
        origin=el.get("origin", ""),
        delegate=el.get("delegate"),
        completed=parse_pcmk_time(el.get("completed")),
        exit_reason=el.get("exit-reason") or el.get("exit_reason"),
    )


def _attr(parent: ET.Element | None, child: str, name: str) -> str | None:
    if parent is None:
        return None
    el = parent.find(child)
    return el.get(name) if el is not None else None


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "yes", "1", "on")


def _opt_bool(el: ET.Element | None, name: str) -> bool | None:
    if el is None or el.get(name) is None:
        return None
    return _bool(el.get(name))


def _int(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"-?\d+", value.strip()):
        return None
    return int(value)


# ------------------------------------------------------------------- times

_ISO_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$",
)


def parse_pcmk_time(text: str | None, *, assume: timezone = UTC) -> datetime | None:
    """A Pacemaker timestamp as an aware datetime; None for empty or absent.

    Zone-less ctime strings are taken to be in ``assume`` (UTC by default).
    """
    if text is None or not text.strip():
        return None
    value = " ".join(text.split())
    if match := _ISO_RE.match(value):
        day, clock, fraction, zone = match.groups()
        stamp = datetime.fromisoformat(f"{day}T{clock}{fraction or ''}")
        if zone is None:
            return stamp.replace(tzinfo=assume)
        if zone == "Z":
            return stamp.replace(tzinfo=UTC)
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return stamp.replace(tzinfo=timezone(sign * offset))
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %Y").replace(tzinfo=assume)
    except ValueError:
        raise ClusterError(f"unrecognised Pacemaker timestamp {text!r}") from None


# ------------------------------------------------------------ crm_simulate


def parse_transition_summary(text: str) -> tuple[str, ...]:
    """The actions under ``Transition Summary:`` of ``crm_simulate`` output,
    e.g. ``"Start      vip     ( dcn1 )"``; empty when the cluster has settled."""
    actions: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == "Transition Summary:":
            inside = True
            continue
        if inside:
            stripped = line.strip()
            if not stripped:
                break
            if not stripped.startswith("*"):
                break
            actions.append(stripped.lstrip("* ").strip())
    return tuple(actions)
