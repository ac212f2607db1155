from datetime import UTC, datetime
from pathlib import Path

import pytest
from crmxml import crm_xml, quorum_text

from dcnlab.cluster.invariants import replay
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.observe.probe import analyse, client_events, parse_output
from dcnlab.observe.sampler import (
    MARK,
    WATCH_END,
    WATCH_FILE,
    Sample,
    Tracker,
    parse_sample,
    parse_watch,
    replay_log,
    watch_collect_script,
    watch_script,
)
from dcnlab.observe.timeline import ClockAnchor, Event, EventKind, GuestClock, Match, chain, derive

K = EventKind
SPEC = load_spec(DEFAULT_SPEC)
BAD = load_spec(Path(__file__).parents[2] / "suites/specs/bad/no_fencing_ignore_quorum.yaml")
ALL = ["dcn1", "dcn2", "dcn3"]
HEALTHY = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
# Host wall clock 2025-11-25 10:03:00 UTC was host monotonic 1000.0.
ANCHOR = ClockAnchor(wall=datetime(2025, 11, 25, 10, 3, 0, tzinfo=UTC).timestamp(), monotonic=1000.0)


def sample_text(node: str, guest_wall: float, members: list[str] | None, *args: object, **kwargs: object) -> str:
    quorate = bool(kwargs.get("quorate", True))
    quorum = quorum_text(node, members, quorate) if members is not None else "Cannot initialize QUORUM service"
    return (
        f"{guest_wall:.9f}\n{MARK} crm_mon\n{crm_xml(*args, **kwargs)}\n{MARK} rc 0\n"  # type: ignore[arg-type]
        f"{MARK} quorum\n{quorum}{MARK} rc {0 if members is not None else 1}\n"
    )


def sample(node: str, t: float, members: list[str] | None, *args: object, **kwargs: object) -> Sample:
    wall = ANCHOR.wall + (t - 0.1 - ANCHOR.monotonic)
    return parse_sample(node, t - 0.2, t, sample_text(node, wall, members, *args, **kwargs))


def tracker(spec=SPEC) -> Tracker:  # type: ignore[no-untyped-def]
    clocks = {n: GuestClock(n, 0.0, 0.05) for n in ALL}
    return Tracker(spec, ANCHOR, armed=1000.0, max_age=5.0, clocks=clocks)


def test_parse_sample() -> None:
    s = sample("dcn2", 1001.0, ALL, ALL, HEALTHY)
    assert s.reached
    assert s.error is None
    assert s.guest_wall == pytest.approx(ANCHOR.wall + 0.9)
    assert s.quorum is not None
    assert s.quorum.member_names() == ALL
    assert s.state is not None
    assert s.state.where("web") == ["dcn1"]
    view = s.view()
    assert view is not None
    assert view.partition == frozenset(ALL)
    assert view.t == 1001.0


def test_parse_sample_with_the_stack_down() -> None:
    text = (
        f'1764064980.5\n{MARK} crm_mon\n<pacemaker-result><status code="102" message="Not connected"/>'
        f"</pacemaker-result>\n{MARK} rc 102\n{MARK} quorum\nCannot initialize QUORUM service\n{MARK} rc 1\n"
    )
    s = parse_sample("dcn1", 1.0, 2.0, text)
    assert s.reached
    assert s.state is None
    assert s.quorum is None
    assert s.view() is None
    assert s.error is not None
    assert "exit 102" in s.error
    assert "exit 1" in s.error
    garbage = parse_sample("dcn1", 1.0, 2.0, "bash: oops\n")
    assert not garbage.reached
    assert "unexpected" in (garbage.error or "")


def test_power_off_of_the_web_node() -> None:
    tr = tracker()
    tr.quiet = True
    for n in ALL:
        assert tr.feed(sample(n, 1001.0, ALL, ALL, HEALTHY)) == []
    tr.quiet = False
    assert tr.placement()["web"] == {"dcn1"}
    events = []
    # 1002: dcn1 destroyed; the sampler cannot reach it.
    events += tr.feed(Sample("dcn1", 1002.0, 1002.0, error="domain is shut-off"))
    events += tr.feed(sample("dcn2", 1002.1, ALL, ALL, HEALTHY))
    # 1008: corosync on the survivors has a new membership; crm_mon shows dcn1 unclean.
    lost = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
    two = ["dcn2", "dcn3"]
    events += tr.feed(sample("dcn2", 1008.0, two, two, lost, unclean=["dcn1"]))
    events += tr.feed(sample("dcn3", 1008.2, two, two, lost, unclean=["dcn1"]))
    # 1011: the fence completed at 10:03:10 (host monotonic 1010.0); web stopped.
    fence = {"action": "off", "target": "dcn1", "client": "pacemaker-controld.1187", "origin": "dcn2",
             "status": "success", "delegate": "dcn3", "completed": "2025-11-25 10:03:10Z"}  # fmt: skip
    stopped = {"vip": [], "http": [], "app": [], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
    events += tr.feed(sample("dcn2", 1011.0, two, two, stopped, offline=["dcn1"], fences=[fence]))
    events += tr.feed(sample("dcn3", 1011.1, two, two, stopped, offline=["dcn1"], fences=[fence]))
    # 1015: mid-move, vip is up on dcn3 but http is not yet: web is not started.
    half = {"vip": ["dcn3"], "http": [], "app": [], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
    events += tr.feed(sample("dcn2", 1015.0, two, two, half, offline=["dcn1"], fences=[fence]))
    # 1020: web and app run on dcn3 (witness stays on dcn2).
    moved = {"vip": ["dcn3"], "http": ["dcn3"], "app": ["dcn3"], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
    events += tr.feed(sample("dcn2", 1020.0, two, two, moved, offline=["dcn1"], fences=[fence]))

    kinds = [(e.kind, e.node, e.resource) for e in events]
    assert (K.NODE_UNREACHABLE, "dcn1", None) in kinds
    assert kinds.count((K.NODE_LOST, "dcn1", None)) == 1  # one partition lost it, seen by two observers
    assert kinds.count((K.MEMBERSHIP_CHANGED, "dcn2", None)) == 1
    assert kinds.count((K.MEMBERSHIP_CHANGED, "dcn3", None)) == 1
    (fenced,) = [e for e in events if e.kind is K.FENCE_CONFIRMED]
    assert fenced.node == "dcn1"
    assert fenced.source == "fence-history:dcn2"
    assert fenced.earliest == pytest.approx(1010.0 - 0.05)
    assert fenced.t == pytest.approx(1011.0)  # capped by the sample that showed it
    assert "done by dcn3" in fenced.detail
    stops = [e for e in events if e.kind is K.RESOURCE_STOPPED]
    # Not at 1008 (dcn1 unclean: nobody can tell), but once it is fenced.
    assert {e.resource for e in stops} == {"vip", "http", "app", "web"}
    assert all(e.t == 1011.0 and e.node == "dcn1" for e in stops)
    starts = {(e.resource, e.node): e.t for e in events if e.kind is K.RESOURCE_STARTED}
    assert starts == {
        ("vip", "dcn3"): 1015.0,
        ("http", "dcn3"): 1020.0,
        ("app", "dcn3"): 1020.0,
        ("web", "dcn3"): 1020.0,
    }
    assert not [e for e in events if e.kind is K.INVARIANT_VIOLATED]
    fault = [e for e in events if e.kind is K.NODE_UNREACHABLE]
    c = chain(
        events,
        [
            Match(K.NODE_UNREACHABLE, node="dcn1"),
            Match(K.NODE_LOST, node="dcn1"),
            Match(K.FENCE_CONFIRMED, node="dcn1"),
            Match(K.RESOURCE_STARTED, resource="web", not_node="dcn1"),
        ],
    )
    assert fault
    assert c.consistent, c.describe()


def test_fence_history_from_before_arming_is_not_news() -> None:
    tr = tracker()
    old = {"action": "off", "target": "dcn3", "client": "stonith_admin.1", "origin": "dcn1",
           "status": "success", "completed": "2025-11-25 09:00:00Z"}  # fmt: skip
    events = tr.feed(sample("dcn1", 1001.0, ALL, ALL, HEALTHY, fences=[old]))
    assert not [e for e in events if e.kind is K.FENCE_CONFIRMED]


def test_a_pending_fence_and_a_failed_one() -> None:
    tr = tracker()
    base = {"action": "off", "target": "dcn1", "client": "pacemaker-controld.1", "origin": "dcn2"}
    events = tr.feed(sample("dcn2", 1005.0, ALL, ALL, HEALTHY, fences=[{**base, "status": "pending"}]))
    failed = {**base, "status": "failed", "completed": "2025-11-25 10:03:06Z", "exit-reason": "timed out"}
    events += tr.feed(sample("dcn2", 1007.0, ALL, ALL, HEALTHY, fences=[failed]))
    assert [e.kind for e in events if e.kind.value.startswith("fence")] == [K.FENCE_STARTED, K.FENCE_FAILED]
    assert "timed out" in events[-1].detail or any("timed out" in e.detail for e in events)


def test_failed_actions_become_events_once() -> None:
    tr = tracker()
    fail = {"op_key": "http_monitor_5000", "node": "dcn1", "exitstatus": "not running", "exitreason": "",
            "exitcode": "7", "call": "44", "status": "complete", "last-rc-change": "2025-11-25 10:03:05Z",
            "queued": "0", "exec": "0", "interval": "5000", "task": "monitor"}  # fmt: skip
    events = tr.feed(sample("dcn2", 1006.0, ALL, ALL, HEALTHY, failures=[fail]))
    events += tr.feed(sample("dcn2", 1007.0, ALL, ALL, HEALTHY, failures=[fail]))
    failed = [e for e in events if e.kind is K.RESOURCE_FAILED]
    assert [(e.resource, e.node) for e in failed] == [("http", "dcn1")]


def test_split_brain_seen_live_and_its_end() -> None:
    tr = tracker(BAD)
    tr.quiet = True
    for n in ALL:
        tr.feed(sample(n, 1001.0, ALL, ALL, HEALTHY))
    tr.quiet = False
    mine = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"]}
    theirs = {"vip": ["dcn2"], "http": ["dcn2"], "app": ["dcn2"], "witness": ["dcn3"]}
    two = ["dcn2", "dcn3"]
    events = tr.feed(sample("dcn1", 1010.0, ["dcn1"], ["dcn1"], mine, offline=two, quorate=False))
    events += tr.feed(sample("dcn2", 1010.3, two, two, theirs, offline=["dcn1"]))
    violated = [e for e in events if e.kind is K.INVARIANT_VIOLATED]
    assert {e.resource for e in violated} == {"vip", "http", "app"}
    assert all(e.t == 1010.3 for e in violated)
    assert {v.resource for v in tr.violations} == {"vip", "http", "app"}
    # Healed: Pacemaker stops the copy on dcn1.
    healed = {"vip": ["dcn2"], "http": ["dcn2"], "app": ["dcn2"], "witness": ["dcn3"]}
    events = tr.feed(sample("dcn1", 1030.0, ALL, ALL, healed))
    events += tr.feed(sample("dcn2", 1030.2, ALL, ALL, healed))
    restored = [e for e in events if e.kind is K.INVARIANT_RESTORED]
    assert {e.resource for e in restored} == {"vip", "http", "app"}
    quorum = [e.kind for e in events if e.kind in (K.QUORUM_LOST, K.QUORUM_REGAINED)]
    assert quorum == [K.QUORUM_REGAINED]


def test_unreachable_views_are_dropped() -> None:
    tr = tracker()
    tr.feed(sample("dcn1", 1001.0, ALL, ALL, HEALTHY))
    assert [v.observer for v in tr.fresh_views(1001.0)] == ["dcn1"]
    assert tr.fresh_views(1010.0) == []  # too old
    events = tr.feed(Sample("dcn1", 1002.0, 1004.0, error="timed out"))
    assert [e.kind for e in events] == [K.NODE_UNREACHABLE]
    assert events[0].earliest == pytest.approx(1000.8)
    assert tr.fresh_views(1004.0) == []
    events = tr.feed(sample("dcn1", 1006.0, ALL, ALL, HEALTHY))
    assert [e.kind for e in events] == [K.NODE_REACHABLE]


def test_watch_output_round_trip() -> None:
    clock = GuestClock("dcn1", offset=1.5, error=0.1)
    guest = ANCHOR.wall + 1.5  # guest clock at host monotonic 1000.0
    blocks = []
    for i in range(3):
        xml = crm_xml(["dcn1"], {"vip": ["dcn1"]}, offline=["dcn2", "dcn3"])
        blocks.append(f"{guest + 2 * i:.6f}\n{xml}\n{WATCH_END}\n{guest + 2 * i + 0.4:.6f}\n{WATCH_FILE}\n")
    blocks.append(f"{guest + 9}\n{WATCH_END}\n{guest + 9.1}\n{WATCH_FILE}\n")  # crm_mon printed nothing
    views = parse_watch("".join(blocks), "dcn1", ANCHOR, clock)
    assert [round(v.t, 3) for v in views] == [1000.4, 1002.4, 1004.4]
    assert views[0].partition == frozenset({"dcn1"})
    assert views[0].state.where("web") == ["dcn1"]


def test_watch_scripts_are_bounded() -> None:
    script = watch_script(2.0, 100, 300)
    assert "timeout 300" in script
    assert "-lt 100" in script
    assert "/run/dcnlab-watch/stop" in script
    assert "crm_mon --one-shot" in script
    assert "touch /run/dcnlab-watch/stop" in watch_collect_script()


def test_a_recorded_power_off() -> None:
    """A real run (TCG, a loaded host, see data/README.md): dcn1, running web,
    destroyed; the samples as the sampler logged them, the probe's attempts."""
    data = Path(__file__).parent / "data"
    probe_run = parse_output((data / "probe_power_off_dcn1.jsonl").read_text())
    anchor = ClockAnchor(probe_run.started_wall, probe_run.started)  # guests' clocks taken as the host's
    events, tr = replay_log((data / "samples_power_off_dcn1.jsonl").read_text(), SPEC, anchor)
    web = analyse(probe_run.of("web"), "web")
    outage = web.longest_outage
    assert outage is not None
    assert outage.last_ok_before is not None
    # The fault itself was not logged in this run: the probe brackets it.
    fault = Event(outage.start, K.FAULT_INJECTED, "fault:power-off dcn1", node="dcn1", earliest=outage.last_ok_before)
    events = [fault, *events, *client_events(web)]
    c = chain(
        events,
        [
            Match(K.FAULT_INJECTED, node="dcn1"),
            Match(K.NODE_LOST, node="dcn1"),
            Match(K.FENCE_CONFIRMED, node="dcn1"),
            Match(K.RESOURCE_STARTED, resource="web", not_node="dcn1"),
            Match(K.CLIENT_RECOVERED, resource="web"),
        ],
    )
    assert c.consistent, c.describe()
    timings = derive(events, "web", web.outages)
    assert timings.detection.seconds == pytest.approx(10.24, abs=0.05)
    assert timings.fencing.seconds == pytest.approx(1.09, abs=0.05)
    assert timings.fencing.high == pytest.approx(6.31, abs=0.05)  # samples 1-5 s apart: wide bounds
    assert timings.recovery.seconds == pytest.approx(27.23, abs=0.05)
    assert timings.downtime.seconds == pytest.approx(37.40, abs=0.05)
    assert (outage.node_before, outage.node_after) == ("dcn1", "dcn3")
    assert tr.violations == []


def test_a_joining_node_does_not_speak_for_placement() -> None:
    # grow_shrink, recorded: the joining dcn4 first has no CIB at all (crm_mon
    # prints an error and no summary), then one without a DC. Neither may
    # read as "every resource stopped" while they run on dcn1 undisturbed.
    four = [*ALL, "dcn4"]
    tr = tracker()
    tr.quiet = True
    for n in ALL:
        tr.feed(sample(n, 1001.0, ALL, ALL, HEALTHY))
    tr.quiet = False
    events = [e for n in ALL for e in tr.feed(sample(n, 1002.0, four, four, HEALTHY))]  # dcn4 is in: one side
    text = sample_text("dcn4", ANCHOR.wall + 2.0, four, four, HEALTHY)
    crm = (Path(__file__).parent / "data" / "crm_mon_joining_node.xml").read_text()
    start, end = text.index(f"{MARK} crm_mon\n") + len(f"{MARK} crm_mon\n"), text.index(f"\n{MARK} rc 0")
    no_cib = parse_sample("dcn4", 1003.0, 1003.2, text[:start] + crm + text[end:])
    assert no_cib.state is None
    assert "no cluster summary" in (no_cib.error or "")
    events += tr.feed(no_cib)
    no_dc = text.replace('present="true"', 'present="false"').replace('"vip"', '"x"')  # and a stale resource list
    events += tr.feed(parse_sample("dcn4", 1004.0, 1004.2, no_dc))
    assert [e for e in events if e.kind in (K.RESOURCE_STOPPED, K.RESOURCE_STARTED)] == []
    assert tr.placement()["web"] == frozenset({"dcn1"})


def _cut_off_then_fenced(tr: Tracker, fences: list[dict[str, str]]) -> list[Event]:
    """The recorded shape of isolate-app: dcn3's last view (taken just before
    every link was cut) still shows web there when the survivors, having
    fenced dcn3, start it on dcn1; dcn3's next sample is still pending."""
    here = {"vip": ["dcn3"], "http": ["dcn3"], "app": ["dcn3"], "witness": ["dcn2"], "fence_dcn": ["dcn2"]}
    tr.quiet = True
    for n in ALL:
        tr.feed(sample(n, 1007.0, ALL, ALL, here))
    tr.quiet = False
    two = ["dcn1", "dcn2"]
    events = tr.feed(sample("dcn1", 1010.5, two, two, here, unclean=["dcn3"]))
    moved = {"vip": ["dcn1"], "http": [], "app": [], "witness": ["dcn2"], "fence_dcn": ["dcn2"]}
    return events + tr.feed(sample("dcn2", 1011.0, two, two, moved, offline=["dcn3"], fences=fences))


def test_a_fenced_nodes_last_view_does_not_speak_after_its_fence() -> None:
    fence = {"action": "reboot", "target": "dcn3", "client": "pacemaker-controld.283", "origin": "dcn2",
             "status": "success", "delegate": "dcn2", "completed": "2025-11-25 10:03:10Z"}  # fmt: skip
    tr = tracker()
    events = _cut_off_then_fenced(tr, [fence])
    assert [e for e in events if e.kind is K.INVARIANT_VIOLATED] == []
    assert tr.violations == []
    assert tr.fenced == {"dcn3": [1011.0]}  # the latest the fence can have completed
    assert [v.observer for v in tr.fresh_views(1011.0)] == ["dcn1", "dcn2"]
    # Offline, the same views and fence: nothing either.
    assert replay(tr.views, SPEC, max_age=5.0, fences=tr.fenced) == []


def test_without_a_fence_the_cut_off_nodes_view_still_counts() -> None:
    # No fencing (the bad spec): nothing stopped dcn3's copy, so the two views
    # are a split brain as far as anyone can tell.
    tr = tracker(BAD)
    events = _cut_off_then_fenced(tr, [])
    assert {e.resource for e in events if e.kind is K.INVARIANT_VIOLATED} == {"vip"}
    assert {v.resource for v in replay(tr.views, BAD, max_age=5.0)} == {"vip"}
