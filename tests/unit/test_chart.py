import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.chart import Span, _ticks, chart_of, client_spans
from harness.probe import analyse, parse_output
from harness.timeline import Event, EventKind, Recorder

DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"


def recorded_chart() -> str:
    events = Recorder.from_dict(json.loads((DATA / "timeline_power_off_web.json").read_text())).events()
    fault = next(e for e in events if e.kind is EventKind.FAULT_INJECTED)
    run = parse_output((DATA / "probe_power_off_web_full.jsonl").read_text())
    clients = {name: client_spans(analyse(run.of(name), name), fault.t) for name in ("web", "app")}
    return chart_of("power-off dcn1", events, fault, clients, ["dcn1", "dcn2", "dcn3"]).svg()


def test_recorded_power_off_renders_as_valid_svg_with_its_outage() -> None:
    root = ET.fromstring(recorded_chart())
    assert root.tag == f"{SVG}svg"
    rects = root.findall(f"{SVG}rect")
    outages = [r for r in rects if r.get("class") == "outage"]
    assert outages, "the web outage must be drawn"
    titles = [r.find(f"{SVG}title").text or "" for r in outages]  # type: ignore[union-attr]
    # The longest outage of web (39.9 s, from the probe's own attempts) is labelled with its length.
    assert any(t.startswith("web failing") and "(39.90s)" in t for t in titles), titles
    assert len([r for r in rects if r.get("class") == "fault"]) == 1
    ticks = [e for e in root.iter(f"{SVG}line") if "fence_confirmed" in (e.get("class") or "")]
    assert ticks, "fence events are marked on the nodes' lanes"


def test_positions_follow_time() -> None:
    fault = Event(100.0, EventKind.FAULT_INJECTED, "fault:x", "dcn1")
    chart = chart_of(
        "t", [fault], fault, {"web": [Span(-5, 0, True), Span(0, 10, False), Span(10, 20, True)]}, ["dcn1"]
    )
    assert chart.start == -5.0
    assert chart.end == 25.0  # the last client span, plus 5 s
    assert chart.x(-5.0) < chart.x(0.0) < chart.x(10.0) < chart.x(25.0)
    assert chart.x(1000.0) == chart.x(25.0)  # clamped to the chart


def test_ticks_stay_readable() -> None:
    assert _ticks(-5, 25) == [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert len(_ticks(0, 600)) <= 12
