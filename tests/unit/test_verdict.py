import json
from pathlib import Path

import pytest

from dcnlab.certify.verdict import Expectation, Outcome, describe_outage, downtime_over, judge, observe, window
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec
from dcnlab.cluster.thresholds import Thresholds, membership_change_limit, parse_overrides, thresholds_for
from dcnlab.core.errors import ConfigError
from dcnlab.observe.probe import Attempt, analyse, parse_output
from dcnlab.observe.timeline import Event, EventKind, Recorder, derive

DATA = Path(__file__).parent / "data"
K = EventKind
POWER_OFF = Expectation("power-off", "web", Outcome.RELOCATED, fenced=True)
LOOSE = Thresholds(detection=20, fencing=30, recovery=120, downtime=150)


def recorded() -> tuple[list[Event], object]:
    """The issue-5 acceptance run: dcn1 (running web) powered off."""
    events = Recorder.from_dict(json.loads((DATA / "timeline_power_off_web.json").read_text())).events()
    run = parse_output((DATA / "probe_power_off_web_full.jsonl").read_text())
    timings = derive(events, "web", analyse(run.of("web"), "web").outages)
    return events, timings


def test_recorded_power_off_passes_its_expectation() -> None:
    events, timings = recorded()
    verdict = judge(POWER_OFF, events, timings, LOOSE, "dcn1")  # type: ignore[arg-type]
    assert verdict.passed, verdict.message()
    found = {f.what: f for f in verdict.findings}
    assert found["outcome"].observed == "relocated (now on dcn3)"
    assert found["fenced"].observed == "dcn1 fenced"
    assert found["downtime"].observed.startswith("39.9s")
    assert "fence_confirmed" in verdict.excerpt
    assert verdict.to_dict()["passed"] is True


def test_wrong_expectation_fails_naming_expected_observed_and_the_timeline() -> None:
    events, timings = recorded()
    wrong = Expectation("power-off", "web", Outcome.RESTARTED, fenced=False)
    verdict = judge(wrong, events, timings, LOOSE, "dcn1")  # type: ignore[arg-type]
    assert not verdict.passed
    assert [f.what for f in verdict.failures] == ["outcome", "fenced"]
    text = verdict.message()
    assert "FAIL: power-off: web restarted in place, no node fenced (fault on dcn1)" in text
    assert "expected restarted in place; observed relocated (now on dcn3)" in text
    assert "expected dcn1 not fenced; observed dcn1 fenced" in text
    assert "fault_injected" in text
    assert "resource_started" in text


def test_a_threshold_below_the_observed_downtime_fails() -> None:
    events, timings = recorded()
    verdict = judge(POWER_OFF, events, timings, LOOSE.over(Thresholds(downtime=10)), "dcn1")  # type: ignore[arg-type]
    (failure,) = verdict.failures
    assert failure.what == "downtime"
    assert failure.expected == "at most 10s"
    assert failure.observed.startswith("39.9s")


def ev(t: float, kind: EventKind, node: str | None = None, resource: str | None = None) -> Event:
    return Event(t, kind, "test", node, resource)


FAULT = ev(100.0, K.FAULT_INJECTED, "dcn2")


def test_restart_in_place() -> None:
    events = [
        ev(90.0, K.RESOURCE_STARTED, "dcn2", "web"),  # before the fault: not evidence
        FAULT,
        ev(104.0, K.RESOURCE_FAILED, "dcn2", "web"),
        ev(109.0, K.RESOURCE_STARTED, "dcn2", "web"),
    ]
    seen = observe(events, "web", "dcn2", FAULT)
    assert seen.outcome is Outcome.RESTARTED
    assert seen.where == "dcn2"
    assert not seen.fenced
    timings = derive(events, "web")
    verdict = judge(Expectation("kill-workload", "web", Outcome.RESTARTED, False), events, timings, LOOSE, "dcn2")
    assert verdict.passed, verdict.message()


def test_nothing_happened() -> None:
    events = [ev(90.0, K.RESOURCE_STARTED, "dcn2", "web"), FAULT, ev(101.0, K.FAULT_HEALED, "dcn2")]
    assert observe(events, "web", "dcn2", FAULT).outcome is Outcome.UNAFFECTED
    verdict = judge(
        Expectation("nic-cut", "web", Outcome.UNAFFECTED, False), events, derive(events, "web"), LOOSE, "dcn2"
    )
    assert verdict.passed, verdict.message()
    # ...which a relocation expectation does not accept, and it says what was missing.
    verdict = judge(POWER_OFF, events, derive(events, "web"), LOOSE, "dcn2")
    failed = {f.what: f.observed for f in verdict.failures}
    assert failed["outcome"] == "unaffected"
    assert failed["fenced"] == "dcn2 not fenced"
    assert failed["fencing"].startswith("not observed")
    assert failed["detection"].startswith("not observed")
    assert failed["recovery"].startswith("not observed")


def test_a_relocation_elsewhere_than_the_target_wins_over_a_restart() -> None:
    events = [
        FAULT,
        ev(104.0, K.RESOURCE_STOPPED, "dcn2", "web"),
        ev(106.0, K.RESOURCE_STARTED, "dcn2", "web"),
        ev(120.0, K.RESOURCE_STARTED, "dcn3", "web"),
    ]
    seen = observe(events, "web", "dcn2", FAULT)
    assert seen.outcome is Outcome.RELOCATED
    assert seen.where == "dcn3"
    assert seen.started_at == 120.0


def test_a_cut_off_nodes_own_view_is_a_restart_only_until_the_move() -> None:
    """Recorded shape (single_link, nic-cut-web): the survivors' view shows
    web stopped, the cut-off dcn1's own view then shows it started there
    until the fence. Until web is seen elsewhere the outcome reads as a
    restart in place, and when that start was seen is what a client answer
    must come after (the failover suite waits on it)."""
    events = [
        FAULT,
        ev(113.3, K.RESOURCE_STOPPED, "dcn2", "web"),
        ev(113.6, K.RESOURCE_STARTED, "dcn2", "web"),
        ev(113.8, K.FENCE_CONFIRMED, "dcn2"),
    ]
    seen = observe(events, "web", "dcn2", FAULT)
    assert (seen.outcome, seen.where, seen.started_at, seen.fenced) == (Outcome.RESTARTED, "dcn2", 113.6, True)
    seen = observe([*events, ev(118.2, K.RESOURCE_STARTED, "dcn3", "web")], "web", "dcn2", FAULT)
    assert (seen.outcome, seen.where, seen.started_at) == (Outcome.RELOCATED, "dcn3", 118.2)
    assert observe([FAULT], "web", "dcn2", FAULT).started_at is None


def test_no_fault_on_the_timeline_is_a_failure_not_a_pass() -> None:
    verdict = judge(POWER_OFF, [], derive([], "web"), LOOSE, "dcn1")
    assert not verdict.passed
    assert verdict.failures[0].what == "fault"


def test_unset_thresholds_check_nothing() -> None:
    events, timings = recorded()
    verdict = judge(POWER_OFF, events, timings, Thresholds(), "dcn1")  # type: ignore[arg-type]
    assert [f.what for f in verdict.findings] == ["outcome", "fenced"]


# ----------------------------------------------------------- configuration


def test_overrides_from_the_command_line() -> None:
    table = parse_overrides(["default.downtime=100", "power-off.downtime=60", "power-off.detection=9.5"])
    assert table["default"] == Thresholds(downtime=100)
    assert thresholds_for("power-off", table) == Thresholds(detection=9.5, downtime=60)
    assert thresholds_for("freeze", table) == Thresholds(downtime=100)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("power-off=60", "write FAULT.TIMING=SECONDS"),
        ("reboot.downtime=60", "unknown fault 'reboot'"),
        ("power-off.outage=60", "unknown timing 'outage'"),
        ("power-off.downtime=soon", "not a number of seconds, 0 or more"),
        ("power-off.detection=0", "not a positive number"),
        ("grow-shrink.detection=5", "unknown timing 'detection'; use one of: downtime"),
        ("grow-shrink.downtime=-1", "not a number of seconds, 0 or more"),
    ],
)
def test_bad_overrides_say_how_to_write_them(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_overrides([item])


def test_the_default_spec_ships_thresholds() -> None:
    table = load_spec(DEFAULT_SPEC).threshold_table()
    assert table["default"] == Thresholds(detection=20, fencing=30, recovery=120, downtime=150)


def test_spec_thresholds_per_fault_with_durations() -> None:
    spec = parse_spec(
        "certification:\n  thresholds:\n    default: {downtime: 2min}\n    kill-workload: {downtime: 500ms}\n",
        "t.yaml",
    )
    table = spec.threshold_table()
    assert thresholds_for("kill-workload", table) == Thresholds(downtime=0.5)
    assert thresholds_for("power-off", table) == Thresholds(downtime=120)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("certification:\n  thresholds:\n    reboot: {downtime: 1}\n", "t.yaml:3: unknown key 'reboot'"),
        ("certification:\n  thresholds:\n    default: {outage: 1}\n", "t.yaml:3: unknown key 'outage'"),
        ("certification:\n  thresholds:\n    default:\n      downtime: soon\n", "t.yaml:4: .*downtime is 'soon'"),
        ("certification:\n  limits: {}\n", "t.yaml:2: unknown key 'limits'"),
        ("certification:\n  thresholds:\n    grow-shrink: {recovery: 1}\n", "t.yaml:3: unknown key 'recovery'"),
        ("certification:\n  thresholds:\n    default: {detection: 0}\n", "t.yaml:3: .*detection must be longer than 0"),
    ],
)
def test_spec_threshold_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(text, "t.yaml")


def test_a_group_restarted_through_its_member() -> None:
    # The journal and failed actions name the member (http); the group (web)
    # is never seen down by the sampler when the restart falls between samples.
    events = [
        FAULT,
        ev(104.0, K.RESOURCE_FAILED, "dcn2", "http"),
        ev(111.0, K.RESOURCE_STARTED, "dcn2", "http"),
    ]
    assert observe(events, "web", "dcn2", FAULT).outcome is Outcome.UNAFFECTED
    seen = observe(events, "web", "dcn2", FAULT, members=("vip", "http"))
    assert seen.outcome is Outcome.RESTARTED
    assert seen.where == "dcn2"
    # A member starting elsewhere alone is not the group relocating.
    lone = [FAULT, ev(104.0, K.RESOURCE_STARTED, "dcn3", "vip")]
    assert observe(lone, "web", "dcn2", FAULT, members=("vip", "http")).outcome is Outcome.UNAFFECTED


# ------------------------------------------------------------ grow/shrink


def test_grow_shrink_downtime_is_zero_unless_configured_and_not_the_default() -> None:
    assert membership_change_limit({"default": LOOSE}) == 0.0
    spec = parse_spec("certification:\n  thresholds:\n    grow-shrink: {downtime: 0}\n", "t.yaml")
    assert membership_change_limit(spec.threshold_table()) == 0.0
    assert membership_change_limit(load_spec(DEFAULT_SPEC).threshold_table()) == 30.0
    assert membership_change_limit(parse_overrides(["grow-shrink.downtime=2.5"])) == 2.5


def _attempts(pattern: str, step: float = 0.1) -> list[Attempt]:
    """One attempt per character, ``step`` apart: ``.`` answered by dcn1, ``x`` timed out."""
    return [
        Attempt("web", i, 100 + i * step, 0.01, c == ".", "dcn1" if c == "." else None, 200 if c == "." else None,
                None if c == "." else "timeout")
        for i, c in enumerate(pattern)
    ]  # fmt: skip


def test_downtime_over_a_limit() -> None:
    # Recorded shape (grow_shrink on TCG): one request over the 1 s timeout
    # between answered ones, and later a run of twelve.
    av = analyse(_attempts("....x......" + "x" * 12 + "..."))
    single, run = av.outages
    assert downtime_over(av.outages, 0.0) == [single, run]  # zero: not one failed request
    assert downtime_over(av.outages, 1.0) == [run]
    assert run.duration == pytest.approx(1.2)
    assert describe_outage(run) == "web: 1.20s at t=101.1 (12 failed requests: timeout x12; served by dcn1)"
    events = [
        Event(99.0, K.NOTE, "grow_shrink", detail="join dcn4"),
        Event(101.5, K.CLIENT_FAILURE_FIRST, "probe:web", node="dcn1", resource="web"),
        Event(130.0, K.NOTE, "grow_shrink", detail="remove dcn4"),
    ]
    text = window(events, run.start, run.end or run.last_failed)
    assert "join dcn4" in text
    assert "client_failure_first" in text
    assert "remove dcn4" not in text
