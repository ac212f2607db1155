from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dcnlab.cluster.crm import ClusterState, parse_crm_mon, parse_pcmk_time, parse_transition_summary
from dcnlab.core.errors import ClusterError

DATA = Path(__file__).parent / "data"


def load(name: str) -> ClusterState:
    return parse_crm_mon((DATA / name).read_text())


# ------------------------------------------- Pacemaker's regression output


def test_regression_output_nodes() -> None:
    state = load("crm_mon_cts_regression.xml")
    assert [n.name for n in state.nodes] == [
        "cluster01",
        "cluster02",
        "httpd-bundle-0",
        "httpd-bundle-1",
        "httpd-bundle-2",
    ]
    cluster02 = state.node("cluster02")
    assert cluster02.is_dc
    assert cluster02.online
    assert cluster02.resources_running == 9
    assert not cluster02.unclean
    # Bundle guests are nodes too, but not cluster members.
    assert state.online_nodes() == ["cluster01", "cluster02"]
    assert state.node("httpd-bundle-2").type == "remote"


def test_regression_output_summary_with_blanked_times() -> None:
    state = load("crm_mon_cts_regression.xml")
    assert state.quorate
    assert state.stack == "corosync"
    assert state.dc is None  # the regression harness blanks the DC's name
    assert state.last_update is None  # and the times
    assert state.stonith_enabled is True
    assert state.maintenance_mode is False
    assert state.bans[0].resource == "dummy"
    assert state.bans[0].weight == -1_000_000


def test_regression_output_resources() -> None:
    state = load("crm_mon_cts_regression.xml")
    assert state.where("dummy") == ["cluster02"]
    assert state.where("Fencing") == ["cluster01"]
    assert state.where("ping") == ["cluster01", "cluster02"]  # a clone instance per node
    assert state.where("ping-clone") == ["cluster01", "cluster02"]
    assert state.where("exim-group") == ["cluster02"]
    assert state.all_started(["exim-group", "dummy", "Fencing", "ping", "promotable-rsc"])
    assert not state.started("inactive-group")
    assert state.where("inactive-group") == []
    # A cloned group prints one group per copy ("mysql-group:0"...).
    assert state.where("mysql-group") == ["cluster01", "cluster02"]
    proxy = [r for r in state.resources if r.id == "mysql-proxy"]
    assert {r.group for r in proxy} == {f"mysql-group:{i}" for i in range(5)}
    assert {r.clone for r in proxy} == {"mysql-clone-group"}
    httpd = [r for r in state.resources if r.id == "httpd"]
    assert {r.bundle for r in httpd} == {"httpd-bundle"}
    promoted = [r.role for r in state.resources if r.id == "promotable-rsc" and r.active]
    assert sorted(promoted) == ["Promoted", "Unpromoted"]
    assert state.failures == ()
    assert state.fencing == ()
    assert state.pending_actions() == []


def test_unknown_resource_names_the_known_ones() -> None:
    state = load("crm_mon_cts_regression.xml")
    with pytest.raises(ClusterError, match=r"no resource 'nope' \(known: .*exim-group"):
        state.where("nope")
    with pytest.raises(ClusterError, match="no node 'dcn9'"):
        state.node("dcn9")


# ------------------------------------------------- a dcn cluster after a fence


def test_after_fence_nodes_and_dc() -> None:
    state = load("crm_mon_dcn_after_fence.xml")
    assert state.dc == "dcn2"
    assert state.dc_version == "2.1.5-a3f44794f94"
    assert state.quorate
    dcn1 = state.node("dcn1")
    assert not dcn1.online
    assert not dcn1.unclean  # fenced: Pacemaker knows it is down
    assert not dcn1.expected_up
    assert state.online_nodes() == ["dcn2", "dcn3"]
    assert state.unclean_nodes() == []
    assert state.last_update == datetime(2025, 11, 25, 10, 3, 30, tzinfo=UTC)
    assert state.last_change == datetime(2025, 11, 25, 10, 1, 2, tzinfo=UTC)


def test_after_fence_resources() -> None:
    state = load("crm_mon_dcn_after_fence.xml")
    assert state.where("web") == ["dcn2"]
    assert state.where("vip") == ["dcn2"]
    assert state.all_started(["web", "witness", "fence_dcn"])
    assert not state.started("app")
    assert state.where("app") == []
    assert state.pending_actions() == [("app", "Starting")]
    assert state.failed_resources() == ["probe"]
    assert not state.all_started(["web", "probe"])
    vip = state.instances("vip")[0]
    assert (vip.agent, vip.group, vip.managed, vip.maintenance) == ("ocf:heartbeat:IPaddr2", "web", True, False)
    assert dict(state.groups) == {"web": ("vip", "http")}


def test_after_fence_failed_actions() -> None:
    state = load("crm_mon_dcn_after_fence.xml")
    start, monitor = state.failures
    assert (start.resource, start.task, start.interval_ms, start.node) == ("app", "start", 0, "dcn3")
    assert (start.exitcode, start.exitstatus, start.status, start.call) == (6, "not configured", "complete", 31)
    assert start.exitreason == "base image, localhost/dcn-http:latest, could not be found."
    assert start.last_rc_change == datetime(2025, 11, 25, 10, 2, 41, tzinfo=UTC)
    assert (start.queued_ms, start.exec_ms) == (0, 412)
    assert (monitor.resource, monitor.task, monitor.interval_ms) == ("http", "monitor", 5000)
    assert monitor.last_rc_change == datetime(2025, 11, 25, 8, 50, 2, tzinfo=UTC)


def test_after_fence_fencing_history() -> None:
    state = load("crm_mon_dcn_after_fence.xml")
    done, failed = state.fence_events("dcn1")
    assert (done.action, done.status, done.origin, done.delegate) == ("off", "success", "dcn2", "dcn3")
    assert done.client == "pacemaker-controld.1187"
    assert done.completed == datetime(2025, 11, 25, 10, 3, 12, tzinfo=UTC)
    assert failed.status == "failed"
    assert failed.exit_reason == "Fence agent did not complete in time"
    assert state.fence_events("dcn2") == []


# ------------------------------------------------------------ edge cases


def test_failure_without_timing_attributes_is_split_from_its_key() -> None:
    # Shape of a failure whose history entry has no last-rc-change (older
    # crm_mon prints just op_key and the codes).
    xml = (
        '<pacemaker-result api-version="2.29" request="crm_mon --output-as=xml"><failures>'
        '<failure op_key="p_cinder-volume_monitor_20000" node="node-3" exitstatus="not running" '
        'exitcode="7" call="883" status="complete"/></failures><status code="0" message="OK"/></pacemaker-result>'
    )
    (failure,) = parse_crm_mon(xml).failures
    assert (failure.resource, failure.task, failure.interval_ms) == ("p_cinder-volume", "monitor", 20000)
    assert failure.last_rc_change is None


def test_crm_mon_errors_are_reported_with_its_message() -> None:
    # The error shape of pacemaker-result: <status code=N message=...><errors><error>.
    xml = (
        '<pacemaker-result api-version="2.29" request="crm_mon --output-as=xml">'
        '<status code="102" message="Not connected"><errors>'
        "<error>crm_mon: Error: cluster is not available on this node</error>"
        "</errors></status></pacemaker-result>"
    )
    with pytest.raises(ClusterError, match=r"code 102: Not connected\): crm_mon: Error: cluster is not available"):
        parse_crm_mon(xml)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no valid XML"),
        ("Error: cluster is not currently running on this node", "no valid XML"),
        ('<crm_mon version="2.0.0"><nodes/></crm_mon>', "got <crm_mon>"),
    ],
)
def test_not_crm_mon_xml(text: str, needle: str) -> None:
    with pytest.raises(ClusterError, match=needle):
        parse_crm_mon(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-25 10:03:12Z", datetime(2025, 11, 25, 10, 3, 12, tzinfo=UTC)),
        ("2025-01-08 08:59:30 +09:00", datetime(2025, 1, 7, 23, 59, 30, tzinfo=UTC)),
        ("2025-01-08 08:59:30 -0130", datetime(2025, 1, 8, 10, 29, 30, tzinfo=UTC)),
        ("2026-10-05 12:02:42.088147Z", datetime(2026, 10, 5, 12, 2, 42, 88147, tzinfo=UTC)),
        ("Mon Apr  3 22:22:27 2023", datetime(2023, 4, 3, 22, 22, 27, tzinfo=UTC)),
        ("Tue Jan 15 22:19:59 2019", datetime(2019, 1, 15, 22, 19, 59, tzinfo=UTC)),
    ],
)
def test_pacemaker_times(text: str, expected: datetime) -> None:
    assert parse_pcmk_time(text) == expected


def test_zoneless_times_follow_the_assumed_zone() -> None:
    cet = timezone(timedelta(hours=1))
    assert parse_pcmk_time("Mon Apr  3 22:22:27 2023", assume=cet) == datetime(2023, 4, 3, 21, 22, 27, tzinfo=UTC)
    assert parse_pcmk_time("") is None
    assert parse_pcmk_time(None) is None
    with pytest.raises(ClusterError, match="unrecognised Pacemaker timestamp"):
        parse_pcmk_time("yesterday")


def test_transition_summary() -> None:
    # crm_simulate output as shown in a public troubleshooting note (found
    # through the code index), trimmed to the part this parser reads.
    text = (
        "Transition Summary:\n"
        "  * Start      rsc_ip_db2ptr_EWP        (                 node2 )  blocked\n"
        "  * Promote    rsc_Db2_db2ptr_EWP:0     ( Slave -> Master node2 )\n"
        "\n"
        "Executing Cluster Transition:\n"
        "  * Pseudo action:   msl_Db2_db2ptr_EWP_pre_notify_promote_0\n"
    )
    assert parse_transition_summary(text) == (
        "Start      rsc_ip_db2ptr_EWP        (                 node2 )  blocked",
        "Promote    rsc_Db2_db2ptr_EWP:0     ( Slave -> Master node2 )",
    )
    assert parse_transition_summary("Current cluster status:\n  * Node List:\n\nTransition Summary:\n\n") == ()


def test_crm_mon_on_a_node_whose_cib_is_not_up_is_an_error() -> None:
    # Recorded on a node joining a running cluster: exit 0, status OK, yet no
    # summary, nodes or resources. Read as a state, it said nothing runs.
    xml = (DATA / "crm_mon_joining_node.xml").read_text()
    with pytest.raises(ClusterError, match=r"no cluster summary: Could not connect to the CIB"):
        parse_crm_mon(xml)
