"""A case's timeline as a chart a reviewer can read, drawn with matplotlib.

Rows, top to bottom: the derived timings (detection, fencing, recovery,
client downtime, and any span a caller adds, such as an outage after the
heal) as bars named on the left with their length on the bar; one row per
client endpoint (green while answered, red while failing); one row per node
with the cluster events seen on it, every kind its own marker named in the
legend. The fault window, from the fault to its heal, is shaded across all
rows. Times are seconds from the fault, and the axis runs to the last event
or client attempt, so the heal and what follows it are in view.

Reviewers open it from the Allure report or the case's tmp dir. In the SVG
every mark also has a tooltip (the event as the timeline table prints it)
and a class, which matplotlib's SVG has no way to give, so they are added to
the groups it writes for the marks' gids (the way matplotlib's own SVG
tooltip example does); tests read the classes too.

No pyplot: a bare :class:`Figure` on an Agg canvas needs no display and
changes no global state.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dcnlab.observe.probe import Availability
from dcnlab.observe.timeline import Event, EventKind, Timing, Timings, heal_of

LEAD = 5.0  # seconds shown before the fault: the steady state it broke
WIDTH = 13.0  # inches; 1300 px in the PNG
ROW = 0.45  # inches per row
# Offsets within a row (the y axis points down), so that a node lost and its
# resources stopped at the same sample do not hide each other, and a probe's
# events sit beside its client's bar rather than on it.
ABOVE = -0.25
BELOW = 0.25
OVER_BAR = -0.32
UNDER_BAR = 0.32
BAR = 0.4  # height of a bar, in rows
MARKER = 7.0  # points

UP = "#27ae60"
FAILING = "#c0392b"
FAULT_WINDOW = "#f5b041"
DERIVED = "#34495e"


@dataclass(frozen=True)
class Style:
    """How one kind of event is marked, and its name in the legend."""

    label: str
    marker: str
    colour: str
    filled: bool = True
    lane: float = 0.0


# Families share a marker (circles for resources, squares for fencing,
# triangles and diamonds for membership); the colour says good, bad or neutral.
STYLES: dict[EventKind, Style] = {
    EventKind.FAULT_INJECTED: Style("fault injected", "X", "#000000"),
    EventKind.FAULT_HEALED: Style("fault healed", "P", "#000000"),
    EventKind.NODE_LOST: Style("node lost", "v", FAILING, lane=ABOVE),
    EventKind.NODE_JOINED: Style("node joined", "^", UP, lane=ABOVE),
    EventKind.MEMBERSHIP_CHANGED: Style("membership changed", "d", "#8e44ad", lane=ABOVE),
    EventKind.QUORUM_LOST: Style("quorum lost", "<", FAILING, lane=ABOVE),
    EventKind.QUORUM_REGAINED: Style("quorum regained", ">", UP, lane=ABOVE),
    EventKind.NODE_UNREACHABLE: Style("unreachable by the harness", "x", "#7f8c8d", lane=ABOVE),
    EventKind.NODE_REACHABLE: Style("reachable by the harness", "+", "#7f8c8d", lane=ABOVE),
    EventKind.FENCE_STARTED: Style("fence requested", "s", "#e67e22", filled=False),
    EventKind.FENCE_CONFIRMED: Style("fence confirmed", "s", "#e67e22"),
    EventKind.FENCE_FAILED: Style("fence failed", "s", FAILING),
    EventKind.RESOURCE_STOPPED: Style("resource stopped", "o", "#7f8c8d", lane=BELOW),
    EventKind.RESOURCE_STARTED: Style("resource started", "o", "#2980b9", lane=BELOW),
    EventKind.RESOURCE_FOUND: Style("resource found running", "o", "#2980b9", filled=False, lane=BELOW),
    EventKind.RESOURCE_FAILED: Style("resource failed", "o", FAILING, lane=BELOW),
    EventKind.CLIENT_FAILURE_FIRST: Style("client failure", "D", FAILING, lane=OVER_BAR),
    EventKind.CLIENT_RECOVERED: Style("client recovered", "D", UP, lane=OVER_BAR),
    EventKind.CLIENT_NODE_CHANGED: Style("client answered by another node", "*", "#16a085", lane=UNDER_BAR),
    EventKind.INVARIANT_VIOLATED: Style("invariant violated", "*", "#e000e0"),
    EventKind.INVARIANT_RESTORED: Style("invariant restored", "*", "#e000e0", filled=False),
    EventKind.CLUSTER_HEALTHY: Style("cluster healthy", "h", UP),
    EventKind.NOTE: Style("note", "1", "#7f8c8d"),
}


@dataclass(frozen=True)
class Span:
    """A client endpoint answered (``ok``) or failed from ``start`` to ``end``."""

    start: float  # seconds from the fault
    end: float
    ok: bool


@dataclass(frozen=True)
class Period:
    """A derived timing or a caller's span: a labelled bar, or the reason it
    was not observed (``start`` and ``end`` None)."""

    label: str
    start: float | None  # seconds from the fault
    end: float | None
    text: str  # the length and bounds, or why not observed


@dataclass(frozen=True)
class Chart:
    """What one chart shows, in seconds from the fault; drawn on each call."""

    title: str
    start: float  # seconds from the fault at the left edge
    end: float  # the last event, client attempt or span (the axis adds a margin)
    fault: tuple[float, float | None]  # injected, healed (None: not healed in view)
    clients: Mapping[str, Sequence[Span]]
    nodes: Sequence[str]
    events: Sequence[Event]  # times relative to the fault; the fault and its heal are the vertical lines
    periods: Sequence[Period] = ()

    def figure(self) -> Figure:
        return self._draw()[0]

    def svg(self) -> str:
        return _svg(*self._draw())

    def png(self) -> bytes:
        out = io.BytesIO()
        self.figure().savefig(out, format="png")
        return out.getvalue()

    def _draw(self) -> tuple[Figure, _Marks]:
        marks = _Marks()
        clients = {name: len(self.periods) + i for i, name in enumerate(self.clients)}
        nodes = {name: len(self.periods) + len(clients) + i for i, name in enumerate(self.nodes)}
        events = [e for e in self.events if self.start <= e.t <= self.end]
        rows = {e: _row_of(e, clients, nodes) for e in events}
        # Events on no node of the chart (a note, the cluster healthy again) get a row of their own.
        loose = len(self.periods) + len(clients) + len(nodes)
        labels = [p.label for p in self.periods] + [f"client {c}" for c in clients] + list(nodes)
        if any(row is None for row in rows.values()):
            labels.append("cluster")
        kinds = [k for k in STYLES if any(e.kind is k for e in events)]
        legend = self._legend(kinds)

        height = max(1.8 + ROW * len(labels), 0.9 + 0.24 * len(legend))
        fig = Figure(figsize=(WIDTH, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.set_title(self.title, loc="left")
        ax.set_xlim(self.start, self.end + 0.02 * (self.end - self.start))
        ax.set_ylim(max(len(labels), 1) - 0.5, -0.5)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("seconds from the fault")
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
        for y in (len(self.periods), len(self.periods) + len(clients), loose):
            if 0 < y < len(labels):
                ax.axhline(y - 0.5, color="#b0b0b0", linewidth=0.8)

        injected, healed = self.fault
        window = ax.axvspan(injected, self.end if healed is None else healed, color=FAULT_WINDOW, alpha=0.2)
        until = "not healed in view" if healed is None else f"healed at {healed:+.2f}s"
        marks.add(window, "fault", f"fault window: injected at {injected:+.2f}s, {until}")
        ax.axvline(injected, color="#000000", linewidth=1.2)
        if healed is not None:
            ax.axvline(healed, color="#000000", linewidth=1.2, linestyle="--")

        for y, period in enumerate(self.periods):
            self._period(ax, marks, y, period)
        for name, spans in self.clients.items():
            for s in spans:
                (bar,) = ax.barh(
                    clients[name], s.end - s.start, left=s.start, height=BAR, color=UP if s.ok else FAILING
                )
                marks.add(bar, "up" if s.ok else "outage", _span_title(name, s))
        for e in events:
            style = STYLES[e.kind]
            row = rows[e]
            (point,) = ax.plot(
                [e.t],
                [(loose if row is None else row) + style.lane],
                linestyle="",
                marker=style.marker,
                markersize=MARKER,
                color=style.colour,
                markerfacecolor=style.colour if style.filled else "none",
            )
            marks.add(point, f"event {e.kind.value}", e.describe())
        fig.legend(handles=legend, loc="outside right upper", fontsize="small")
        return fig, marks

    def _period(self, ax: Axes, marks: _Marks, y: int, period: Period) -> None:
        if period.start is None or period.end is None:
            ax.text(
                0.0, y, f"  {period.text}", va="center", fontsize="small", clip_on=True, style="italic", color="#7f8c8d"
            )
            return
        (bar,) = ax.barh(y, period.end - period.start, left=period.start, height=BAR, color=DERIVED)
        marks.add(bar, "timing", f"{period.label}: {period.text} ({period.start:+.2f}s .. {period.end:+.2f}s)")
        # The length goes beside the bar where there is room, inside it otherwise;
        # clipped, so that a long reason cannot push the plot aside.
        width = self.end - self.start
        if self.end - period.end > 0.3 * width:
            ax.text(period.end, y, f"  {period.text}", va="center", ha="left", fontsize="small", clip_on=True)
        elif period.start - self.start > 0.3 * width:
            ax.text(period.start, y, f"{period.text}  ", va="center", ha="right", fontsize="small", clip_on=True)
        else:
            ax.text(
                period.start,
                y,
                f"  {period.text}",
                va="center",
                ha="left",
                fontsize="small",
                clip_on=True,
                color="#ffffff",
            )

    def _legend(self, kinds: Sequence[EventKind]) -> list[Artist]:
        handles: list[Artist] = [
            Patch(
                color=FAULT_WINDOW,
                alpha=0.2,
                label="fault window" if self.fault[1] is not None else "fault window (no heal in view)",
            ),
            Line2D([], [], color="#000000", linewidth=1.2, label=STYLES[EventKind.FAULT_INJECTED].label),
        ]
        if self.fault[1] is not None:
            handles.append(
                Line2D(
                    [], [], color="#000000", linewidth=1.2, linestyle="--", label=STYLES[EventKind.FAULT_HEALED].label
                )
            )
        if any(p.start is not None for p in self.periods):
            handles.append(Patch(color=DERIVED, label="derived timing (named at left)"))
        if self.clients:
            handles += [Patch(color=UP, label="client answered"), Patch(color=FAILING, label="client failing")]
        for kind in kinds:
            style = STYLES[kind]
            label = style.label
            if kind in (EventKind.FAULT_INJECTED, EventKind.FAULT_HEALED):
                label += " (another fault)"  # this chart's fault and heal are the lines
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="",
                    marker=style.marker,
                    markersize=MARKER,
                    color=style.colour,
                    markerfacecolor=style.colour if style.filled else "none",
                    label=label,
                )
            )
        return handles


def _row_of(e: Event, clients: Mapping[str, int], nodes: Mapping[str, int]) -> int | None:
    """A probe's events go on its client's row, the others on their node's."""
    client = e.source.removeprefix("probe:")
    if e.source.startswith("probe:") and client in clients:
        return clients[client]
    return nodes.get(e.node) if e.node is not None else None


def _span_title(name: str, s: Span) -> str:
    state = "answered" if s.ok else "failing"
    return f"{name} {state} {s.start:+.2f}s .. {s.end:+.2f}s ({s.end - s.start:.2f}s)"


class _Marks:
    """The class and tooltip of each mark, by the gid given to its artist."""

    def __init__(self) -> None:
        self.notes: dict[str, tuple[str, str]] = {}

    def add(self, artist: Artist, cls: str, title: str) -> None:
        gid = f"mark-{len(self.notes)}"
        artist.set_gid(gid)
        self.notes[gid] = (cls, title)


def _svg(fig: Figure, marks: _Marks) -> str:
    out = io.StringIO()
    # A fixed salt and no date: the same timeline gives the same file, byte
    # for byte. Text as paths: it looks as in the PNG whatever fonts the
    # viewer has (matplotlib keeps each string in a comment beside it).
    with matplotlib.rc_context({"svg.hashsalt": "dcnlab", "svg.fonttype": "path"}):
        fig.savefig(out, format="svg", metadata={"Date": None})

    def annotate(found: re.Match[str]) -> str:
        cls, title = marks.notes[found[1]]
        return f'<g id="{found[1]}" class="{escape(cls)}">\n<title>{escape(title)}</title>'

    return re.sub(r'<g id="(mark-\d+)">', annotate, out.getvalue())


def _period_of(timing: Timing, origin: float, clients: Mapping[str, Sequence[Span]]) -> Period:
    if timing.seconds is None:
        return Period(timing.name, None, None, f"not observed: {timing.why}")
    text = f"{timing.seconds:.1f}s"
    if timing.low is not None and timing.high is not None and timing.high - timing.low >= 0.1:
        text += f" [{timing.low:.1f}, {timing.high:.1f}]"
    if timing.why:
        text += f" ({timing.why})"
    start = timing.start.t - origin if timing.start is not None else 0.0
    if timing.end is not None:
        return Period(timing.name, start, timing.end.t - origin, text)
    # An outage's timing (client downtime, an outage after the heal) has no
    # end event and starts at the fault or the heal, not where the outage
    # did: draw it over the failing span it measured, when one has its length.
    failing = [s for spans in clients.values() for s in spans if not s.ok]
    same = [s for s in failing if timing.seconds > 0 and abs(s.end - s.start - timing.seconds) < 0.01]
    found = min(same, key=lambda s: abs(s.start - start), default=None)
    if found is not None:
        return Period(timing.name, found.start, found.end, text)
    return Period(timing.name, start, start + timing.seconds, text)


def chart_of(
    title: str,
    events: Sequence[Event],
    fault: Event,
    clients: Mapping[str, Sequence[Span]],
    nodes: Sequence[str],
    *,
    timings: Timings | None = None,
    spans: Sequence[tuple[str, float, float]] = (),
) -> Chart:
    """A chart of ``events`` (monotonic times) around ``fault``, from
    :data:`LEAD` seconds before it to the last event or client attempt.

    ``clients``: each endpoint's spans, seconds from the fault (see
    :func:`client_spans`). ``timings``: the derived ones to draw as bars
    (:func:`dcnlab.observe.timeline.derive`). ``spans``: more bars, as (label,
    start, end) in monotonic times like ``events``, e.g. an outage after the
    workload had recovered.
    """
    origin = fault.t
    heal = heal_of(events, fault)
    periods = [_period_of(t, origin, clients) for t in (timings.all() if timings is not None else ())]
    periods += [Period(label, start - origin, end - origin, f"{end - start:.1f}s") for label, start, end in spans]
    rel = [
        Event(
            e.t - origin,
            e.kind,
            e.source,
            e.node,
            e.resource,
            e.detail,
            None if e.earliest is None else e.earliest - origin,
        )
        for e in events
        if e != fault and e != heal
    ]
    healed = heal.t - origin if heal is not None else None
    end = max(
        [
            *(e.t for e in rel),
            *(s.end for ss in clients.values() for s in ss),
            *(p.end for p in periods if p.end is not None),
            healed or 0.0,
            1.0,
        ]
    )
    return Chart(title, -LEAD, end, (0.0, healed), clients, nodes, rel, periods)


def client_spans(av: Availability, origin: float) -> list[Span]:
    """An endpoint's windows (up) and outages (failing), seconds from ``origin``."""
    spans = [Span(w.start - origin, w.end - origin, True) for w in av.windows]
    spans += [
        Span(o.start - origin, (o.end if o.end is not None else o.last_failed) - origin, False) for o in av.outages
    ]
    return sorted(spans, key=lambda s: s.start)


def distribution_svg(rows: Mapping[str, Mapping[str, tuple[Sequence[float], float]]], title: str) -> str:
    """Repeats at a glance: one row per ``label`` (fault and workload) and
    timing, a dot per repeat's value on a shared seconds axis, and the p50
    as a bar. ``rows``: label -> timing name -> (the values observed, p50)."""
    return _svg(*_distribution(rows, title))


def _distribution(rows: Mapping[str, Mapping[str, tuple[Sequence[float], float]]], title: str) -> tuple[Figure, _Marks]:
    lanes = [
        (label, name, values, p50)
        for label, timings in rows.items()
        for name, (values, p50) in timings.items()
        if values
    ]
    top = max((v for _l, _n, values, _p in lanes for v in values), default=1.0)
    fig = Figure(figsize=(11.0, max(2.5, 1.4 + ROW * len(lanes))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    marks = _Marks()
    ax.set_title(title, loc="left")
    ax.set_xlim(0.0, max(top * 1.05, 1.0))
    ax.set_ylim(max(len(lanes), 1) - 0.5, -0.5)
    ax.set_yticks(range(len(lanes)), [f"{label} {name}" for label, name, _v, _p in lanes])
    ax.set_xlabel("seconds")
    ax.grid(axis="x", color="#e5e5e5")
    ax.set_axisbelow(True)
    if not lanes:
        ax.text(0.5, 0.5, "no timing observed", transform=ax.transAxes, ha="center", va="center")
    for y, (_label, _name, values, p50) in enumerate(lanes):
        (median,) = ax.plot([p50], [y], linestyle="", marker="|", markersize=18, markeredgewidth=2.5, color="#000000")
        marks.add(median, "p50", f"p50 {p50:.1f}s")
        for v in values:
            (dot,) = ax.plot([v], [y], linestyle="", marker="o", markersize=7, color="#2980b9", alpha=0.6)
            marks.add(dot, "value", f"{v:.1f}s")
    legend = [
        Line2D([], [], linestyle="", marker="o", markersize=7, color="#2980b9", alpha=0.6, label="one repeat"),
        Line2D([], [], linestyle="", marker="|", markersize=18, markeredgewidth=2.5, color="#000000", label="p50"),
    ]
    fig.legend(handles=legend, loc="outside right upper", fontsize="small")
    return fig, marks
