"""kill-controld's two correct ends, judged on a recorded run.

The recording (a full failover run on this lab, see data/README.md): the
controller of dcn3 (running web, a group of vip and http) was killed,
pacemakerd respawned it, it rejoined before the DC (dcn2) acted, and the DC
re-probed dcn3 instead of fencing it. The sampler saw web stopped and
started on dcn3; the journals show the probes finding it running, and no
client request failed."""

import json
from pathlib import Path

from dcnlab.certify.verdict import Alternative, Expectation, Outcome, judge, observe
from dcnlab.cluster.thresholds import Thresholds
from dcnlab.observe.journal import parse_journal
from dcnlab.observe.probe import analyse, parse_output
from dcnlab.observe.timeline import Event, EventKind, Recorder, Timings, derive, select

DATA = Path(__file__).parent / "data"
K = EventKind
MEMBERS = ("vip", "http")
LIMITS = Thresholds(detection=20, fencing=30, recovery=120, downtime=150)
FENCED = Expectation("kill-controld", "web", Outcome.RELOCATED, fenced=True)
EITHER = Expectation(
    "kill-controld", "web", Outcome.RELOCATED, fenced=True, alternatives=(Alternative(Outcome.REPROBED, False),)
)


def recorded(*, journals: bool = True) -> tuple[list[Event], Recorder]:
    rec = Recorder.from_dict(json.loads((DATA / "timeline_kill_controld_reprobe.json").read_text()))
    if journals:
        fault = select(rec.events(), K.FAULT_INJECTED)[0]
        for node in ("dcn2", "dcn3"):
            text = (DATA / f"journal_kill_controld_reprobe_{node}.txt").read_text()
            found = parse_journal(text, node, rec.anchor, rec.guest_clocks.get(node), since=fault.lower - 5.0)
            # The recorded timeline already holds these journal lines' other events.
            rec.extend(e for e in found if e.kind is K.RESOURCE_FOUND)
    return rec.events(), rec


def timings_of(events: list[Event]) -> Timings:
    run = parse_output((DATA / "probe_kill_controld_reprobe.jsonl").read_text())
    return derive(events, "web", analyse(run.of("web"), "web").outages, MEMBERS)


def test_the_journal_names_the_probes_that_found_web_running_on_dcn3() -> None:
    events, _ = recorded()
    found = [(e.node, e.resource) for e in select(events, K.RESOURCE_FOUND)]
    assert ("dcn3", "vip") in found
    assert ("dcn3", "http") in found
    assert all(node == "dcn3" for node, _ in found)  # dcn1's start-up probes were before the fault


def test_a_reprobe_is_not_a_restart() -> None:
    events, _ = recorded()
    fault = select(events, K.FAULT_INJECTED)[0]
    seen = observe(events, "web", "dcn3", fault, MEMBERS)
    assert (seen.outcome, seen.where, seen.fenced) == (Outcome.REPROBED, "dcn3", False)
    # Without the journals' probe lines the same views read as a restart.
    bare, _ = recorded(journals=False)
    assert observe(bare, "web", "dcn3", fault, MEMBERS).outcome is Outcome.RESTARTED


def test_kill_controld_accepts_the_reprobe_and_says_which_end_it_judged() -> None:
    events, _ = recorded()
    verdict = judge(EITHER, events, timings_of(events), LIMITS, "dcn3", MEMBERS)
    assert verdict.passed, verdict.message()
    found = {f.what: f for f in verdict.findings}
    assert found["outcome"].expected == "found running in place (accepted: relocated, found running in place)"
    assert found["outcome"].observed == "found running in place (now on dcn3)"
    assert found["fenced"].expected == "dcn3 not fenced"
    assert found["downtime"].observed.startswith("0.0s")
    assert "re-probe" in found["recovery"].observed
    assert EITHER.describe() == (
        "kill-controld: web relocated, its node fenced; or found running in place, no node fenced"
    )


def test_without_the_alternative_the_same_run_fails() -> None:
    events, _ = recorded()
    verdict = judge(FENCED, events, timings_of(events), LIMITS, "dcn3", MEMBERS)
    assert {f.what for f in verdict.failures} >= {"outcome", "fenced"}


def test_the_alternative_still_needs_its_own_fence_decision_and_downtime() -> None:
    events, _ = recorded()
    # The re-probe with a fence of the target is neither accepted end.
    found = select(events, K.RESOURCE_FOUND)[-1]
    fence = Event(found.t + 1.0, K.FENCE_CONFIRMED, "test", "dcn3")  # before the heal
    verdict = judge(EITHER, [*events, fence], timings_of(events), LIMITS, "dcn3", MEMBERS)
    assert [f.what for f in verdict.failures][:1] == ["fenced"]
    # A tighter downtime limit than observed would fail it: 0.0 s here, so 0 passes.
    assert judge(EITHER, events, timings_of(events), LIMITS.over(Thresholds(downtime=0)), "dcn3", MEMBERS).passed


def test_a_stop_operation_or_failure_makes_it_a_restart_again() -> None:
    events, _ = recorded()
    fault = select(events, K.FAULT_INJECTED)[0]
    found = select(events, K.RESOURCE_FOUND)[0]
    stop = Event(found.t - 0.5, K.RESOURCE_STOPPED, "journal:dcn3", "dcn3", "http")
    assert observe([*events, stop], "web", "dcn3", fault, MEMBERS).outcome is Outcome.RESTARTED
    failed = Event(found.t - 0.5, K.RESOURCE_FAILED, "sampler:dcn2", "dcn3", "http")
    assert observe([*events, failed], "web", "dcn3", fault, MEMBERS).outcome is Outcome.RESTARTED


def test_the_fenced_end_still_passes() -> None:
    t0 = 100.0
    events = [
        Event(t0, K.FAULT_INJECTED, "fault", "dcn3"),
        Event(t0 + 4.0, K.NODE_LOST, "sampler:dcn2", "dcn3"),
        Event(t0 + 6.0, K.FENCE_CONFIRMED, "journal:dcn2", "dcn3"),
        Event(t0 + 20.0, K.RESOURCE_STARTED, "sampler", "dcn1", "web"),
    ]
    verdict = judge(EITHER, events, derive(events, "web"), LIMITS, "dcn3")
    assert verdict.passed, verdict.message()
    assert {f.what: f.expected for f in verdict.findings}["fenced"] == "dcn3 fenced"
