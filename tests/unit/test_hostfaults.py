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
