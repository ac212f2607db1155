"""The declared outcome of a lost or cut-off host, and its judge, on
recorded-form crm_mon states (tests/unit/crmxml.py)."""

from datetime import UTC, datetime

from crmxml import state

from dcnlab.certify.hostfaults import device_finding, expect_host_fault, judge_host_fault
from dcnlab.observe.journal import parse_journal
from dcnlab.observe.timeline import ClockAnchor

PLACEMENT = {"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}
RESOURCES = ["web", "app", "witness"]
ALL = ["dcn1", "dcn2", "dcn3"]
BEFORE = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"]}
SINCE = datetime(2025, 11, 25, 10, 3, 0, tzinfo=UTC)


def fence(status: str, target: str = "dcn2", completed: str = "2025-11-25 10:03:10Z") -> dict[str, str]:
    return {"action": "off", "target": target, "client": "pacemaker-controld.1", "origin": "dcn1",
            "status": status, "delegate": "dcn1", "completed": completed}  # fmt: skip


def test_the_lost_host_s_resources_are_blocked_and_the_rest_unaffected() -> None:
    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    assert exp.unreachable == ("dcn2",)
    assert exp.blocked == ("witness",)
    assert exp.unaffected == {"web": ("dcn1",), "app": ("dcn1",)}
    assert "every fence of dcn2 fails" in exp.describe()


def test_failed_fences_and_nothing_moved_is_as_declared() -> None:
    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    during = {**BEFORE, "witness": []}
    seen = [state(["dcn1", "dcn3"], during, unclean=["dcn2"], fences=[fence("failed")])]
    assert judge_host_fault(exp, seen, SINCE) == []


def test_a_fence_reported_done_is_a_fence_that_never_happened() -> None:
    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    seen = [state(["dcn1", "dcn3"], {**BEFORE, "witness": []}, offline=["dcn2"], fences=[fence("success")])]
    (problem, missing) = judge_host_fault(exp, seen, SINCE)
    assert "a fence of dcn2 was reported done" in problem
    assert "no failed fence of dcn2" in missing


def test_a_blocked_resource_started_elsewhere_and_a_moved_one_are_named() -> None:
    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    moved = {"vip": ["dcn3"], "http": ["dcn3"], "app": ["dcn3"], "witness": ["dcn1"]}
    problems = judge_host_fault(exp, [state(["dcn1", "dcn3"], moved, fences=[fence("failed")])], SINCE)
    assert "witness was started on dcn1 while its node was not fenced" in problems
    assert any(p.startswith("web left dcn1 (now dcn3)") for p in problems)


def test_fences_from_before_the_fault_do_not_count() -> None:
    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    old = fence("success", completed="2025-11-25 09:00:00Z")
    seen = [state(["dcn1", "dcn3"], {**BEFORE, "witness": []}, fences=[old, fence("failed")])]
    assert judge_host_fault(exp, seen, SINCE) == []


def test_a_fence_through_the_node_s_own_host_device_is_ok_and_another_s_is_not() -> None:
    anchor = ClockAnchor(0.0, 0.0)
    text = (
        "10.000000 dcn3 pacemaker-fenced[284]:  notice: Operation 'reboot' [440] targeting dcn1 using "
        "fence_dcn-h1 returned 0\n"
    )
    events = parse_journal(text, "dcn3", anchor, None)
    ok = device_finding(events, "dcn1", "h1", "fence_dcn-h1", since=0.0)
    assert ok.ok
    assert ok.observed == "through fence_dcn-h1"
    wrong = parse_journal(text.replace("fence_dcn-h1", "fence_dcn-h2"), "dcn3", anchor, None)
    bad = device_finding(wrong, "dcn1", "h1", "fence_dcn-h1", since=0.0)
    assert not bad.ok
    assert bad.observed == "through fence_dcn-h2"
    assert not device_finding([], "dcn1", "h1", "fence_dcn-h1", since=0.0).ok
    # A run before the fault does not count.
    assert not device_finding(events, "dcn1", "h1", "fence_dcn-h1", since=20.0).ok


def test_each_host_but_the_first_gets_a_partition_and_a_loss_case() -> None:
    from dcnlab.certify.hostfaults import host_fault_cases
    from dcnlab.faults import HostLoss, HostPartition
    from dcnlab.fleet.hosts import lab_hosts

    found = host_fault_cases(lab_hosts(3))
    assert [c.id for c in found] == ["host-partition-h2", "host-loss-h2", "host-partition-h3", "host-loss-h3"]
    assert [c.id for c in found if c.smoke] == ["host-partition-h2"]  # a link up heals it
    assert isinstance(found[0].make(), HostPartition)
    assert isinstance(found[1].make(), HostLoss)
    assert found[1].make().host == "h2"
    assert host_fault_cases(lab_hosts(1)) == []


def test_the_table_skips_on_one_host_and_where_no_node_is_placed() -> None:
    from dcnlab.certify import cases
    from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec

    spec = load_spec(DEFAULT_SPEC)
    one = cases.host_faults(cases.Session(spec, 2, 3, 1))
    assert [(r.id, r.value) for r in one] == [("one-host", None)]
    assert "--dcn-lab-hosts 2" in one[0].skip
    rows = {r.id: r for r in cases.host_faults(cases.Session(spec, 2, 2, 3))}
    assert not rows["host-loss-h2"].skip
    assert rows["host-loss-h3"].skip == "2 node(s) spread over 3 hosts leave none on h3"
    assert rows["host-partition-h2"].marks == ("host_partition", "host_fault", "smoke")


def test_the_units_judged_are_the_groups_and_the_resources_in_none() -> None:
    from dcnlab.certify.hostfaults import placed_units
    from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec

    assert placed_units(load_spec(DEFAULT_SPEC)) == ["web", "app", "witness"]


def test_the_outcome_says_what_was_declared_and_each_departure() -> None:
    from dcnlab.certify.hostfaults import HostFaultOutcome

    exp = expect_host_fault(PLACEMENT, RESOURCES, state(ALL, BEFORE), "h2")
    ok = HostFaultOutcome(exp, "dcn1", samples=7, seconds_to_failed_fences=41.5, quiet_seconds=120.0)
    assert ok.passed
    assert ok.message().startswith("PASS: host h2 unreachable")
    assert ok.to_dict()["blocked"] == ["witness"]
    assert ok.to_dict()["seconds_to_failed_fences"] == 41.5
    bad = HostFaultOutcome(exp, "dcn1", problems=["witness was started on dcn3 while its node was not fenced"])
    assert not bad.passed
    assert bad.message().splitlines()[1] == "witness was started on dcn3 while its node was not fenced"
