import itertools
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dcnlab.observe.timeline import (
    ClockAnchor,
    Event,
    EventKind,
    GuestClock,
    Match,
    Recorder,
    chain,
    client_downtime,
    derive,
    detection,
    fencing,
    recovery,
)

K = EventKind


def ev(t: float, kind: EventKind, node: str | None = None, resource: str | None = None, **kw: object) -> Event:
    return Event(t, kind, kw.pop("source", "test"), node, resource, earliest=kw.pop("earliest", None))  # type: ignore[arg-type]


# A power-off of dcn1 as the sampler and the probe saw it (times in seconds).
POWER_OFF = [
    ev(100.0, K.FAULT_INJECTED, "dcn1", earliest=99.8, source="fault:power-off dcn1"),
    ev(100.3, K.NODE_UNREACHABLE, "dcn1"),
    ev(106.9, K.MEMBERSHIP_CHANGED, "dcn2", earliest=105.6),
    ev(106.9, K.NODE_LOST, "dcn1", earliest=105.6),
    ev(109.0, K.FENCE_CONFIRMED, "dcn1", earliest=107.7),
    ev(110.2, K.RESOURCE_STOPPED, "dcn1", "web", earliest=109.1),
    ev(113.2, K.RESOURCE_STARTED, "dcn2", "vip", earliest=112.0),
    ev(119.5, K.RESOURCE_STARTED, "dcn2", "web", earliest=118.4),
    ev(100.4, K.CLIENT_FAILURE_FIRST, "dcn1", "web", earliest=100.3),
    ev(119.8, K.CLIENT_RECOVERED, "dcn2", "web", earliest=119.7),
    ev(300.0, K.FAULT_HEALED, "dcn1", earliest=295.0, source="fault:power-off dcn1"),
]


@dataclass(frozen=True)
class Out:
    start: float
    end: float | None
    last_ok_before: float | None
    last_failed: float


def test_detection_fencing_recovery_of_a_power_off() -> None:
    d = detection(POWER_OFF)
    assert d.seconds == pytest.approx(6.9)
    assert d.low == pytest.approx(5.6)  # the previous sample had not seen it
    assert d.high == pytest.approx(7.1)  # the fault may have hit at the call's start
    assert d.end is not None
    assert d.end.kind is K.NODE_LOST
    f = fencing(POWER_OFF)
    assert f.seconds == pytest.approx(2.1)
    assert (f.low, f.high) == (pytest.approx(0.8), pytest.approx(3.4))
    r = recovery(POWER_OFF, "web")
    assert r.seconds == pytest.approx(19.5)
    assert r.end is not None
    assert r.end.node == "dcn2"


def test_not_observed_says_what_is_missing() -> None:
    events = [e for e in POWER_OFF if e.kind not in (K.FENCE_CONFIRMED, K.RESOURCE_STARTED)]
    f = fencing(events)
    assert not f.observed
    assert "no fence of dcn1" in f.why
    r = recovery(events, "web")
    assert not r.observed
    assert "web was not seen started elsewhere than dcn1" in r.why
    assert not detection([]).observed
    assert "not observed" in str(r)
    assert r.to_dict()["seconds"] is None


def test_recovery_ignores_a_restart_in_place() -> None:
    events = [
        ev(10.0, K.FAULT_INJECTED, "dcn1"),
        ev(15.0, K.RESOURCE_STARTED, "dcn1", "web"),
        ev(30.0, K.RESOURCE_STARTED, "dcn3", "web"),
    ]
    assert recovery(events, "web").seconds == pytest.approx(20.0)


def test_detection_falls_back_to_a_membership_change() -> None:
    events = [ev(10.0, K.FAULT_INJECTED), ev(14.0, K.MEMBERSHIP_CHANGED, "dcn2")]
    assert detection(events).seconds == pytest.approx(4.0)


def test_client_downtime_is_the_longest_outage_overlapping_the_fault() -> None:
    fault, healed = POWER_OFF[0], POWER_OFF[-1]
    outages = [
        Out(50.0, 60.0, 49.9, 59.9),  # before the fault: not counted
        Out(100.4, 119.8, 100.3, 119.7),
        Out(130.0, 131.0, 129.9, 130.9),
        Out(400.0, 410.0, 399.9, 409.9),  # after the heal
    ]
    t = client_downtime(outages, fault, healed)
    assert t.seconds == pytest.approx(19.4)
    assert t.low == pytest.approx(19.3)
    assert t.high == pytest.approx(19.5)
    assert client_downtime([], fault).seconds == 0.0
    assert not client_downtime(outages, None).observed


def test_an_outage_still_open_is_a_lower_bound() -> None:
    t = client_downtime([Out(101.0, None, 100.9, 140.0)], POWER_OFF[0])
    assert t.seconds == pytest.approx(39.0)
    assert "lower bound" in t.why


def test_derive_pairs_the_heal_with_its_fault() -> None:
    timings = derive(POWER_OFF, "web", [Out(100.4, 119.8, 100.3, 119.7)])
    data = timings.to_dict()
    assert set(data) == {"detection", "fencing", "recovery of web", "client downtime"}
    assert data["client downtime"]["seconds"] == pytest.approx(19.4)
    json.dumps(data)
    assert "detection: 6.90s" in str(timings)


STEPS = [
    Match(K.FAULT_INJECTED, node="dcn1"),
    Match(K.NODE_LOST, node="dcn1"),
    Match(K.FENCE_CONFIRMED, node="dcn1"),
    Match(K.RESOURCE_STARTED, resource="web", not_node="dcn1"),
    Match(K.CLIENT_RECOVERED, resource="web"),
]


def test_chain_in_order() -> None:
    c = chain(POWER_OFF, STEPS)
    assert c.consistent
    assert c.strict
    assert [e.kind for e in c.events if e] == [s.kind for s in STEPS]
    assert c.missing is None
    assert "NOT OBSERVED" not in c.describe()


def test_chain_allows_overlapping_bounds_but_not_a_certain_inversion() -> None:
    # The node was seen lost in the same sample that showed the fence done; the
    # fence's second-precision time puts its upper bound before the sample's.
    overlapping = [
        ev(10.0, K.FAULT_INJECTED, "dcn1"),
        ev(18.0, K.NODE_LOST, "dcn1", earliest=16.5),
        ev(17.2, K.FENCE_CONFIRMED, "dcn1", earliest=16.0),
    ]
    c = chain(overlapping, STEPS[:3])
    assert c.consistent
    assert not c.strict
    # A fence certainly over before the node was lost cannot be the one.
    inverted = [
        ev(10.0, K.FAULT_INJECTED, "dcn1"),
        ev(18.0, K.NODE_LOST, "dcn1", earliest=17.5),
        ev(16.0, K.FENCE_CONFIRMED, "dcn1", earliest=15.0),
    ]
    c = chain(inverted, STEPS[:3])
    assert not c.consistent
    assert c.missing == STEPS[2]
    assert "NOT OBSERVED" in c.describe()


def test_chain_reports_the_first_missing_step() -> None:
    c = chain([e for e in POWER_OFF if e.kind is not K.FENCE_CONFIRMED], STEPS)
    assert not c.consistent
    assert c.missing == STEPS[2]
    assert c.events[3] is None  # later steps are not searched


def test_clock_anchor_converts_pacemaker_times() -> None:
    anchor = ClockAnchor(wall=1_764_064_980.0, monotonic=5000.0, error=0.001)
    completed = datetime(2025, 11, 25, 10, 3, 12, tzinfo=UTC)  # 1764064992
    assert anchor.to_monotonic(completed) == pytest.approx(5012.0)
    # A guest 2.5 s ahead of the host, known to within 0.1 s.
    guest = GuestClock("dcn2", offset=2.5, error=0.1)
    assert anchor.to_monotonic(completed, guest) == pytest.approx(5009.5)
    lo, hi = anchor.bounds(completed, precision=1.0, guest=guest)
    assert lo == pytest.approx(5009.5 - 0.101)
    assert hi == pytest.approx(5010.5 + 0.101)


def test_guest_clock_from_a_reading() -> None:
    anchor = ClockAnchor(wall=1000.0, monotonic=50.0)
    # Command sent at monotonic 60.0, answer at 60.4; the guest said 1012.7.
    clock = GuestClock.measure("dcn1", anchor, 60.0, 1012.7, 60.4)
    assert clock.offset == pytest.approx(2.5)
    assert clock.error == pytest.approx(0.2)
    worse = GuestClock("dcn1", 2.0, 0.5)
    assert clock.better(worse) is clock
    assert worse.better(clock) is clock


def test_recorder_is_thread_safe_sorted_and_round_trips() -> None:
    rec = Recorder(ClockAnchor(1000.0, 50.0))

    def add(base: float) -> None:
        for i in range(200):
            rec.record(K.NOTE, "t", t=base + i * 0.01)

    threads = [threading.Thread(target=add, args=(b,)) for b in (0.0, 0.005, 1.0)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = rec.events()
    assert len(events) == 600
    assert all(a.t <= b.t for a, b in itertools.pairwise(events))
    rec.note_guest_clock(GuestClock("dcn1", 1.0, 0.3))
    rec.note_guest_clock(GuestClock("dcn1", 1.1, 0.1))
    rec.note_guest_clock(GuestClock("dcn1", 0.0, 0.9))
    assert rec.guest_clocks["dcn1"].error == 0.1
    back = Recorder.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.events() == events
    assert back.anchor == rec.anchor
    assert back.guest_clocks == rec.guest_clocks


def test_recorder_filters_and_table() -> None:
    rec = Recorder(ClockAnchor(0.0, 0.0))
    rec.extend(POWER_OFF)
    assert rec.first(K.RESOURCE_STARTED, resource="web") == POWER_OFF[7]
    assert [e.node for e in rec.events(K.RESOURCE_STARTED, after=115.0)] == ["dcn2"]
    table = rec.table()
    assert table.splitlines()[0].startswith("    +0.00s")  # relative to the fault
    assert "fence_confirmed" in table


def test_a_restart_in_place_has_a_detection_and_a_recovery() -> None:
    # kill -9 of the web group's service on dcn1: the monitor fails, the
    # journal shows http stopped and started again there; no node is lost.
    events = [
        ev(100.0, K.FAULT_INJECTED, "dcn1", earliest=99.9, source="fault:kill-workload dcn1"),
        ev(104.0, K.RESOURCE_FAILED, "dcn1", "http", earliest=102.0),
        ev(105.0, K.RESOURCE_STOPPED, "dcn1", "http", earliest=105.0),
        ev(160.0, K.RESOURCE_STARTED, "dcn1", "http", earliest=160.0),
    ]
    timings = derive(events, "web", members=("vip", "http"))
    assert timings.detection.seconds == pytest.approx(4.0)
    assert timings.recovery.seconds == pytest.approx(60.0)
    assert "restarted in place on dcn1" in timings.recovery.why
    assert timings.fencing.seconds is None
    # Without the group's members the restart is not the group's.
    assert recovery(events, "web").seconds is None
    # A start on the node before anything failed there is no restart.
    assert recovery([*events[:1], events[3]], "web", members=("http",)).seconds is None
