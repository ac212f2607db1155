import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dcnlab.observe.probe import Outage, analyse, parse_output
from dcnlab.observe.timeline import Event, EventKind, Recorder, Timing, Timings, derive
from dcnlab.report.chart import OVER_BAR, STYLES, Chart, Span, chart_of, client_spans, distribution_svg

DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"
K = EventKind
NODES = ["dcn1", "dcn2", "dcn3"]


def ev(t: float, kind: EventKind, node: str | None = None, resource: str | None = None, source: str = "test") -> Event:
    return Event(t, kind, source, node, resource)


# A power-off of dcn1 and its heal, monotonic seconds; the fault at 100.
FAULT = ev(100.0, K.FAULT_INJECTED, "dcn1", source="fault:power-off dcn1")
HEAL = ev(160.0, K.FAULT_HEALED, "dcn1", source="fault:power-off dcn1")
POWER_OFF = [
    FAULT,
    ev(106.9, K.NODE_LOST, "dcn1"),
    ev(109.0, K.FENCE_CONFIRMED, "dcn1"),
    ev(110.2, K.RESOURCE_STOPPED, "dcn1", "web"),
    ev(119.5, K.RESOURCE_STARTED, "dcn2", "web"),
    HEAL,
]
WEB = [Span(-5.0, 0.0, True), Span(0.0, 20.0, False), Span(20.0, 40.0, True)]


def axes_of(fig: Figure) -> Axes:
    (ax,) = fig.axes
    return ax


def legend_of(fig: Figure) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def recorded() -> tuple[list[Event], Event, dict[str, list[Span]], list[Outage]]:
    """The issue-5 power-off of dcn1 (web's node), from the fault to the cluster healthy again."""
    events = Recorder.from_dict(json.loads((DATA / "timeline_power_off_web.json").read_text())).events()
    fault = next(e for e in events if e.kind is EventKind.FAULT_INJECTED)
    run = parse_output((DATA / "probe_power_off_web_full.jsonl").read_text())
    availability = {name: analyse(run.of(name), name) for name in ("web", "app")}
    clients = {name: client_spans(av, fault.t) for name, av in availability.items()}
    return events, fault, clients, list(availability["web"].outages)


def recorded_chart() -> Chart:
    events, fault, clients, outages = recorded()
    return chart_of("power-off dcn1", events, fault, clients, NODES, timings=derive(events, "web", outages))


def test_every_kind_of_event_has_a_mark_of_its_own() -> None:
    assert set(STYLES) == set(EventKind)
    assert len({(s.marker, s.colour, s.filled) for s in STYLES.values()}) == len(STYLES)
    assert len({s.label for s in STYLES.values()}) == len(STYLES)


def test_the_legend_names_the_kinds_present_and_only_them() -> None:
    fig = chart_of("power-off dcn1", POWER_OFF, FAULT, {"web": WEB}, NODES).figure()
    names = legend_of(fig)
    for kind in (K.NODE_LOST, K.FENCE_CONFIRMED, K.RESOURCE_STOPPED, K.RESOURCE_STARTED):
        assert STYLES[kind].label in names
    assert {"fault window", "fault injected", "fault healed", "client answered", "client failing"} <= set(names)
    for absent in (K.RESOURCE_FAILED, K.INVARIANT_VIOLATED, K.FENCE_STARTED, K.CLIENT_RECOVERED):
        assert STYLES[absent].label not in names
    assert len(names) == len(set(names))


def test_the_derived_timings_and_a_heal_phase_outage_are_labelled() -> None:
    events, fault, clients, outages = recorded()
    timings = derive(events, "web", outages)
    heal_phase = ("heal-phase outage", fault.t + 226.6, fault.t + 349.7)
    chart = chart_of("power-off dcn1", events, fault, clients, NODES, timings=timings, spans=[heal_phase])
    ax = axes_of(chart.figure())
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[:5] == ["detection", "fencing", "recovery of web", "client downtime", "heal-phase outage"]
    assert rows[5:] == ["client web", "client app", *NODES, "cluster"]  # cluster: events on no node
    texts = " | ".join(t.get_text() for t in ax.texts)
    for length in ("7.8s [7.5, 8.0]", "3.5s [3.2, 3.8]", "30.9s [30.8, 31.1]", "39.9s [39.8, 40.0]", "123.1s"):
        assert length in texts
    root = ET.fromstring(chart.svg())
    bars = [g for g in root.iter(f"{SVG}g") if g.get("class") == "timing"]
    titles = [g.findtext(f"{SVG}title") or "" for g in bars]
    assert len(titles) == 5
    assert any(t.startswith("fencing: 3.5s") and "+7.82s .. +11.30s" in t for t in titles), titles
    # Over the outage it measured (the probe saw it start before the fault), not from the fault.
    assert any(t.startswith("client downtime: 39.9s") and "-0.17s .. +39.73s" in t for t in titles), titles


def test_an_outage_timing_is_drawn_over_the_outage_it_measured() -> None:
    web = [*WEB[:2], Span(20.0, 65.0, True), Span(70.0, 80.0, False), Span(80.0, 90.0, True)]
    timings = Timings(
        Timing("detection", 6.9, start=FAULT, end=POWER_OFF[1]),
        Timing("fencing", None, why="not asked"),
        Timing("recovery of web", 19.5, start=FAULT, end=POWER_OFF[4]),
        Timing("client downtime", 20.0, start=FAULT),
        extra=(Timing("heal-phase outage", 10.0, start=HEAL),),
    )
    chart = chart_of("power-off dcn1", POWER_OFF, FAULT, {"web": web}, NODES, timings=timings)
    assert [(p.label, p.start, p.end) for p in chart.periods] == [
        ("detection", 0.0, pytest.approx(6.9)),
        ("fencing", None, None),
        ("recovery of web", 0.0, pytest.approx(19.5)),
        ("client downtime", 0.0, 20.0),
        ("heal-phase outage", 70.0, 80.0),  # the heal was at 60
    ]


def test_a_timing_not_observed_says_why() -> None:
    timings = derive([FAULT], "web")
    ax = axes_of(chart_of("t", [FAULT], FAULT, {}, NODES, timings=timings).figure())
    texts = [t.get_text().strip() for t in ax.texts]
    assert "not observed: no node_lost, membership_changed or resource_failed after the fault" in texts


def test_the_x_range_runs_past_the_heal_to_the_last_event() -> None:
    chart = chart_of("power-off dcn1", POWER_OFF, FAULT, {"web": WEB}, NODES)
    assert chart.fault == (0.0, 60.0)
    assert chart.start == -5.0
    assert chart.end == 60.0  # the heal, past the last client attempt (40 s)
    left, right = axes_of(chart.figure()).get_xlim()
    assert left == -5.0
    assert right > 60.0

    chart = recorded_chart()
    heal = chart.fault[1]
    assert heal == pytest.approx(215.53, abs=0.01)
    assert chart.end == pytest.approx(511.88, abs=0.01)  # the cluster healthy again, long after the heal
    assert axes_of(chart.figure()).get_xlim()[1] > chart.end


def test_the_fault_and_its_heal_are_lines_not_marks() -> None:
    chart = chart_of("power-off dcn1", POWER_OFF, FAULT, {"web": WEB}, NODES)
    assert [e.kind for e in chart.events] == [K.NODE_LOST, K.FENCE_CONFIRMED, K.RESOURCE_STOPPED, K.RESOURCE_STARTED]
    assert chart.events[0].t == pytest.approx(6.9)


def test_a_probe_event_goes_on_its_client_row() -> None:
    recovered = ev(120.0, K.CLIENT_RECOVERED, "dcn2", "web", source="probe:web")
    root = ET.fromstring(chart_of("t", [FAULT, recovered], FAULT, {"web": WEB}, NODES).svg())
    (mark,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "event client_recovered"]
    assert "+20.00s  client_recovered" in (mark.findtext(f"{SVG}title") or "")
    ax = axes_of(chart_of("t", [FAULT, recovered], FAULT, {"web": WEB}, NODES).figure())
    (point,) = [line for line in ax.get_lines() if line.get_marker() == STYLES[K.CLIENT_RECOVERED].marker]
    assert np.asarray(point.get_ydata(), dtype=float)[0] == pytest.approx(OVER_BAR)  # over client web's bar, row 0


def test_recorded_power_off_renders_as_valid_svg_with_its_outage() -> None:
    root = ET.fromstring(recorded_chart().svg())
    assert root.tag == f"{SVG}svg"
    groups = list(root.iter(f"{SVG}g"))
    titles = [g.findtext(f"{SVG}title") or "" for g in groups if g.get("class") == "outage"]
    # The longest outage of web (39.9 s, from the probe's own attempts) is labelled with its length.
    assert any(t.startswith("web failing") and "(39.90s)" in t for t in titles), titles
    assert len([g for g in groups if g.get("class") == "fault"]) == 1
    assert any(g.get("class") == "event fence_confirmed" for g in groups), "fence events are marked"


def test_the_same_timeline_gives_the_same_file() -> None:
    assert recorded_chart().svg() == recorded_chart().svg()
    small = chart_of("power-off dcn1", POWER_OFF, FAULT, {"web": WEB}, NODES)
    assert small.png() == small.png()


def test_an_empty_timeline_still_renders() -> None:
    chart = chart_of("nothing seen", [], FAULT, {}, [])
    assert chart.fault == (0.0, None)
    assert (chart.start, chart.end) == (-5.0, 1.0)
    assert ET.fromstring(chart.svg()).tag == f"{SVG}svg"
    assert chart.png().startswith(b"\x89PNG\r\n\x1a\n")
    assert legend_of(chart.figure()) == ["fault window (no heal in view)", "fault injected"]


def test_rendering_needs_no_display_and_leaves_pyplot_alone() -> None:
    code = (
        "import sys\n"
        "from dcnlab.report.chart import chart_of, distribution_svg\n"
        "from dcnlab.observe.timeline import Event, EventKind\n"
        "fault = Event(1.0, EventKind.FAULT_INJECTED, 'fault:x', 'dcn1')\n"
        "chart = chart_of('t', [fault], fault, {}, ['dcn1'])\n"
        "chart.svg(); chart.png(); distribution_svg({}, 't')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_distribution_with_nothing_observed_still_renders() -> None:
    svg = distribution_svg({"power-off web": {"fencing": ([], 0.0)}}, "timings across repeats (0 cases)")
    assert ET.fromstring(svg).tag == f"{SVG}svg"
    assert "no timing observed" in svg
    assert 'class="value"' not in svg
