"""A case's timeline as an SVG chart, with no plotting library.

Lanes, top to bottom: one per client endpoint (green while answered, red
while failing, from the probe's windows and outages), then one per node with
the cluster events seen on it as ticks (membership, fencing, resources), and
the fault window shaded across all lanes. Times are seconds from the fault.
Reviewers open it from the Allure report or the case's tmp dir.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from harness.probe import Availability
from harness.timeline import Event, EventKind, heal_of

WIDTH = 960
LANE = 28
LEFT = 150  # room for lane labels
TOP = 40
BOTTOM = 40

COLOURS = {
    EventKind.FAULT_INJECTED: "#000000",
    EventKind.FAULT_HEALED: "#000000",
    EventKind.NODE_LOST: "#c0392b",
    EventKind.NODE_JOINED: "#27ae60",
    EventKind.MEMBERSHIP_CHANGED: "#8e44ad",
    EventKind.FENCE_STARTED: "#d35400",
    EventKind.FENCE_CONFIRMED: "#d35400",
    EventKind.FENCE_FAILED: "#e74c3c",
    EventKind.RESOURCE_STOPPED: "#7f8c8d",
    EventKind.RESOURCE_STARTED: "#2980b9",
    EventKind.RESOURCE_FOUND: "#2980b9",
    EventKind.RESOURCE_FAILED: "#e74c3c",
    EventKind.INVARIANT_VIOLATED: "#ff00ff",
}


@dataclass(frozen=True)
class Span:
    start: float  # seconds from the fault
    end: float
    ok: bool


@dataclass(frozen=True)
class Chart:
    title: str
    start: float  # seconds from the fault at the left edge
    end: float
    fault: tuple[float, float | None]  # injected, healed (None: not healed in view)
    clients: Mapping[str, Sequence[Span]]
    nodes: Sequence[str]
    events: Sequence[Event]  # times already relative to the fault

    def x(self, t: float) -> float:
        span = max(self.end - self.start, 1e-9)
        return LEFT + (min(max(t, self.start), self.end) - self.start) / span * (WIDTH - LEFT - 20)

    def svg(self) -> str:
        lanes = [*(f"client {name}" for name in self.clients), *self.nodes]
        height = TOP + LANE * len(lanes) + BOTTOM
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
            f'<text x="{LEFT}" y="20" font-size="14">{escape(self.title)}</text>',
        ]
        injected, healed = self.fault
        left = self.x(injected)
        right = self.x(healed) if healed is not None else self.x(self.end)
        out.append(
            f'<rect class="fault" x="{left:.1f}" y="{TOP - 6}" width="{max(right - left, 1):.1f}" '
            f'height="{LANE * len(lanes) + 6}" fill="#f5b041" fill-opacity="0.25"/>'
        )
        y = TOP
        for name, spans in self.clients.items():
            out.append(f'<text x="8" y="{y + LANE / 2 + 4:.0f}">{escape(f"client {name}")}</text>')
            for s in spans:
                colour = "#27ae60" if s.ok else "#c0392b"
                cls = "up" if s.ok else "outage"
                x0, x1 = self.x(s.start), self.x(s.end)
                out.append(
                    f'<rect class="{cls}" x="{x0:.1f}" y="{y + 6}" width="{max(x1 - x0, 1):.1f}" '
                    f'height="{LANE - 12}" fill="{colour}"><title>{escape(_span_title(name, s))}</title></rect>'
                )
            y += LANE
        for node in self.nodes:
            out.append(f'<text x="8" y="{y + LANE / 2 + 4:.0f}">{escape(node)}</text>')
            out.append(f'<line x1="{LEFT}" y1="{y + LANE / 2}" x2="{WIDTH - 20}" y2="{y + LANE / 2}" stroke="#ddd"/>')
            for e in self.events:
                if e.node != node or e.kind not in COLOURS or not self.start <= e.t <= self.end:
                    continue
                x = self.x(e.t)
                what = " ".join(p for p in (e.kind.value, e.resource or "", e.detail) if p)
                out.append(
                    f'<line class="event {e.kind.value}" x1="{x:.1f}" y1="{y + 4}" x2="{x:.1f}" y2="{y + LANE - 4}" '
                    f'stroke="{COLOURS[e.kind]}" stroke-width="2"><title>{escape(f"{e.t:+.2f}s {what}")}</title></line>'
                )
            y += LANE
        for tick in _ticks(self.start, self.end):
            x = self.x(tick)
            out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 5}" stroke="#000"/>')
            out.append(f'<text x="{x:.1f}" y="{y + 18}" text-anchor="middle">{tick:g}s</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"


def _span_title(name: str, s: Span) -> str:
    state = "answered" if s.ok else "failing"
    return f"{name} {state} {s.start:+.2f}s .. {s.end:+.2f}s ({s.end - s.start:.2f}s)"


def _ticks(start: float, end: float) -> list[float]:
    span = end - start
    step = next((s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600) if span / s <= 12), 1200)
    first = (int(start // step) + (1 if start % step else 0)) * step
    ticks = []
    t = float(first)
    while t <= end:
        ticks.append(t)
        t += step
    return ticks


def chart_of(
    title: str,
    events: Sequence[Event],
    fault: Event,
    clients: Mapping[str, Sequence[Span]],
    nodes: Sequence[str],
    *,
    before: float = 5.0,
    after: float | None = None,
) -> Chart:
    """A chart of ``events`` (monotonic times) around ``fault``: from ``before``
    seconds earlier to the heal (or the last event, or ``after`` seconds)."""
    rel = [Event(e.t - fault.t, e.kind, e.source, e.node, e.resource, e.detail, None) for e in events]
    heal = heal_of(events, fault)
    healed = heal.t - fault.t if heal is not None else None
    last_client = max((s.end for spans in clients.values() for s in spans), default=0.0)
    end = after if after is not None else max(healed or 0.0, last_client, 1.0) + 5.0
    return Chart(title, -before, end, (0.0, healed), clients, nodes, rel)


def client_spans(av: Availability, origin: float) -> list[Span]:
    """An endpoint's windows (up) and outages (failing), seconds from ``origin``."""
    spans = [Span(w.start - origin, w.end - origin, True) for w in av.windows]
    spans += [
        Span(o.start - origin, (o.end if o.end is not None else o.last_failed) - origin, False) for o in av.outages
    ]
    return sorted(spans, key=lambda s: s.start)


def distribution_svg(rows: Mapping[str, Mapping[str, tuple[Sequence[float], float]]], title: str) -> str:
    """Repeats at a glance: one lane per ``label`` (fault and workload) and
    timing, a dot per repeat's value on a shared seconds axis, and the p50
    as a bar. ``rows``: label -> timing name -> (the values observed, p50)."""
    lanes = [
        (label, name, values, p50)
        for label, timings in rows.items()
        for name, (values, p50) in timings.items()
        if values
    ]
    top = max((v for _l, _n, values, _p in lanes for v in values), default=1.0)
    end = max(top * 1.05, 1.0)
    height = TOP + LANE * max(len(lanes), 1) + BOTTOM

    def x(v: float) -> float:
        return LEFT + 60 + v / end * (WIDTH - LEFT - 80)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
    ]
    y = TOP
    for label, name, values, p50 in lanes:
        out.append(f'<text x="8" y="{y + LANE / 2 + 4:.0f}">{escape(f"{label} {name}")}</text>')
        out.append(f'<line x1="{x(0):.1f}" y1="{y + LANE / 2}" x2="{x(end):.1f}" y2="{y + LANE / 2}" stroke="#ddd"/>')
        out.append(
            f'<line class="p50" x1="{x(p50):.1f}" y1="{y + 3}" x2="{x(p50):.1f}" y2="{y + LANE - 3}" '
            f'stroke="#000" stroke-width="2"><title>p50 {p50:.1f}s</title></line>'
        )
        for v in values:
            out.append(
                f'<circle class="value" cx="{x(v):.1f}" cy="{y + LANE / 2}" r="4" fill="#2980b9" '
                f'fill-opacity="0.6"><title>{v:.1f}s</title></circle>'
            )
        y += LANE
    for tick in _ticks(0.0, end):
        out.append(f'<line x1="{x(tick):.1f}" y1="{y}" x2="{x(tick):.1f}" y2="{y + 5}" stroke="#000"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{y + 18}" text-anchor="middle">{tick:g}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
