"""Build small ``crm_mon --output-as=xml`` documents for the fault-analysis
tests, with the element and attribute names Pacemaker 2.1 prints (see
tests/unit/data/crm_mon_dcn_after_fence.xml for a full one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from dcnlab.cluster.crm import ClusterState, parse_crm_mon

AGENTS = {
    "vip": "ocf:heartbeat:IPaddr2",
    "http": "systemd:dcn-http",
    "app": "ocf:heartbeat:podman",
    "witness": "ocf:pacemaker:Dummy",
    "fence_dcn": "stonith:fence_virt",
}
GROUPS = {"web": ("vip", "http")}


def crm_xml(
    online: list[str],
    placement: dict[str, list[str]],
    *,
    offline: Sequence[str] = (),
    unclean: Sequence[str] = (),
    quorate: bool = True,
    fences: Sequence[Mapping[str, str]] = (),
    failures: Sequence[Mapping[str, str]] = (),
) -> str:
    """``placement`` maps a primitive to the nodes it is active on (empty:
    stopped); vip and http are printed inside group web."""

    def node(name: str) -> str:
        is_online = name in online
        return (
            f'<node name="{name}" id="{name[3:]}" online="{str(is_online).lower()}" standby="false" '
            f'standby_onfail="false" maintenance="false" pending="false" unclean="{str(name in unclean).lower()}" '
            f'health="green" shutdown="false" expected_up="{str(is_online).lower()}" is_dc="false" '
            f'resources_running="0" type="member"/>'
        )

    def resource(rid: str) -> str:
        nodes = placement.get(rid, [])
        active = bool(nodes)
        inner = "".join(f'<node name="{n}" id="{n[3:]}" cached="true"/>' for n in nodes)
        return (
            f'<resource id="{rid}" resource_agent="{AGENTS.get(rid, "ocf:pacemaker:Dummy")}" '
            f'role="{"Started" if active else "Stopped"}" active="{str(active).lower()}" orphaned="false" '
            f'blocked="false" maintenance="false" managed="true" failed="false" failure_ignored="false" '
            f'nodes_running_on="{len(nodes)}">{inner}</resource>'
        )

    grouped = {m for members in GROUPS.values() for m in members}
    body = []
    for gid, members in GROUPS.items():
        if any(m in placement for m in members):
            body.append(
                f'<group id="{gid}" number_resources="{len(members)}" maintenance="false" managed="true" '
                f'disabled="false">' + "".join(resource(m) for m in members) + "</group>"
            )
    body += [resource(r) for r in placement if r not in grouped]
    fence_xml = "".join("<fence_event " + " ".join(f"{k}={quoteattr(v)}" for k, v in f.items()) + "/>" for f in fences)
    failure_xml = "".join("<failure " + " ".join(f"{k}={quoteattr(v)}" for k, v in f.items()) + "/>" for f in failures)
    nodes = sorted({*online, *offline, *unclean})
    return (
        '<pacemaker-result api-version="2.29" request="crm_mon --one-shot --inactive --output-as=xml">'
        '<summary><stack type="corosync"/>'
        f'<current_dc present="true" version="2.1.5" name="{online[0] if online else ""}" id="1" '
        f'with_quorum="{str(quorate).lower()}" mixed_version="false"/></summary>'
        "<nodes>" + "".join(node(n) for n in nodes) + "</nodes>"
        "<resources>"
        + "".join(body)
        + "</resources>"
        + (f"<failures>{failure_xml}</failures>" if failures else "")
        + f"<fence_history>{fence_xml}</fence_history>"
        '<status code="0" message="OK"/></pacemaker-result>'
    )


def state(*args: Any, **kwargs: Any) -> ClusterState:
    return parse_crm_mon(crm_xml(*args, **kwargs))


def quorum_text(node: str, members: list[str], quorate: bool = True) -> str:
    """``corosync-quorumtool -s`` as corosync 3 prints it (see
    tests/unit/data/corosync_quorumtool_dcn_quorate.txt)."""
    rows = "\n".join(f"{m[3:]:>10} {1:>10} {m}{' (local)' if m == node else ''}" for m in sorted(members))
    return (
        "Quorum information\n------------------\n"
        "Date:             Tue Nov 25 10:00:05 2025\nQuorum provider:  corosync_votequorum\n"
        f"Nodes:            {len(members)}\nNode ID:          {node[3:]}\nRing ID:          1.1a\n"
        f"Quorate:          {'Yes' if quorate else 'No'}\n\n"
        "Votequorum information\n----------------------\n"
        f"Expected votes:   3\nHighest expected: 3\nTotal votes:      {len(members)}\n"
        f"Quorum:           2 {'' if quorate else 'Activity blocked'}\n"
        f"Flags:            {'Quorate' if quorate else ''}\n\n"
        "Membership information\n----------------------\n"
        "    Nodeid      Votes Name\n" + rows + "\n"
    )
