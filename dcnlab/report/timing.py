"""The timing report of a certification run: one record per case, as JSON
(validated against ``dcnlab/report/schemas/timing-report.schema.json``) and as a
human summary (a table per fault: detection, fencing, recovery, client
downtime; p50/p95/max and the failure rate when cases repeat).

Pure data and formatting: the pytest plugin collects :class:`CaseRecord` s
and writes :class:`RunReport` at the end of the session.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dcnlab.certify.verdict import Verdict
from dcnlab.cluster.thresholds import TIMING_NAMES
from dcnlab.observe.timeline import Event, Timings
from dcnlab.report.chart import distribution_svg

SCHEMA = Path(__file__).with_name("schemas") / "timing-report.schema.json"
SCHEMA_ID = "urn:dcnlab:timing-report:1"
TIMINGS = TIMING_NAMES


@dataclass(frozen=True)
class CaseRecord:
    """One case of one run: what was faulted, what was measured, the verdict."""

    test: str  # pytest node id
    suite: str  # failover, colocation, ...
    fault: str  # dcnlab.cluster.thresholds.FAULT_KINDS
    workload: str
    target: str  # the faulted node
    repeat: int  # 0-based repeat index
    passed: bool
    expected: str  # the expectation, in words
    seconds: dict[str, float | None]  # timing name -> seconds (None: not observed)
    thresholds: dict[str, float | None]
    findings: list[dict[str, Any]]
    timeline: list[dict[str, Any]]  # events, seconds relative to the fault
    restore_seconds: float | None = None  # the heal back to a healthy cluster
    # Timing name -> why it was not measured (not "not observed": nothing
    # could measure it, e.g. a workload that declares no client endpoint).
    unmeasured: dict[str, str] = field(default_factory=dict)
    # Timings beyond the four thresholds apply to (the heal-phase outage).
    extra: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_verdict(
        cls,
        *,
        test: str,
        suite: str,
        verdict: Verdict,
        timings: Timings,
        events: Iterable[Event],
        fault_t: float,
        workload: str,
        repeat: int = 0,
        restore_seconds: float | None = None,
        unmeasured: dict[str, str] | None = None,
    ) -> CaseRecord:
        """A case from its verdict, its timings and its timeline (times made
        relative to the fault at monotonic ``fault_t``); ``unmeasured`` names
        the timings nothing could measure, and why."""
        seconds = dict(zip(TIMINGS, (t.to_dict()["seconds"] for t in timings.standard()), strict=True))
        relative = []
        for e in events:
            data = e.to_dict()
            data["t"] = round(e.t - fault_t, 3)
            if e.earliest is not None:
                data["earliest"] = round(e.earliest - fault_t, 3)
            relative.append(data)
        summary = verdict.to_dict()
        return cls(
            test=test,
            suite=suite,
            fault=verdict.expectation.fault,
            workload=workload,
            target=verdict.target,
            repeat=repeat,
            passed=verdict.passed,
            expected=verdict.expectation.describe(),
            seconds=seconds,
            thresholds=verdict.thresholds.to_dict(),
            findings=summary["findings"],
            timeline=relative,
            restore_seconds=restore_seconds,
            unmeasured=dict(unmeasured or {}),
            extra={t.name: t.to_dict()["seconds"] for t in timings.extra},
        )


@dataclass(frozen=True)
class Environment:
    image_recipe: str
    image_digest: str
    image_path: str
    spec: str
    accelerator: str
    hypervisor: str  # "embedded" or the libvirt URI
    versions: dict[str, str] = field(default_factory=dict)  # package -> version on the nodes
    placement: dict[str, str] = field(default_factory=dict)  # node -> host, on a fleet over several hosts


@dataclass(frozen=True)
class ClusterStart:
    """How a session got a cluster: ``built`` with pcs, ``restored`` from the
    ready-state cache (dcnlab.ready.store), and when: for the session
    (``before`` empty) or renewed before a test (a destructive test, or the
    test after one)."""

    how: str  # "built" or "restored"
    seconds: float  # until verified healthy (Cluster.verify_ready)
    before: str = ""  # the pytest node id it was renewed for; "" for the session's first
    why: str = ""

    def describe(self) -> str:
        when = f" before {self.before} ({self.why})" if self.before else ""
        return f"{self.how} in {self.seconds:.0f}s{when}"


# Where a test's wall time goes, in the order it happens (issue 25).
PHASES = ("setup", "fault to verdict", "heal", "wait for health", "other")


@dataclass(frozen=True)
class CasePhases:
    """Where one test's wall time went: its set-up (the fleet booted, its
    cluster built, restored or reused), from the first fault to the start of
    the heal (observing what the fault did), the heal itself, the wait for a
    healthy cluster after it, and everything else (judging, artifacts,
    teardown). A test that injects no fault spends it all in set-up and
    other."""

    test: str  # pytest node id
    cluster: str  # how the test got its cluster: built, restored, reused; "" none
    seconds: dict[str, float]  # PHASES -> seconds

    @classmethod
    def of(
        cls,
        test: str,
        cluster: str,
        *,
        setup: float,
        call: float,
        teardown: float,
        fault: float = 0.0,
        heal: float = 0.0,
        health: float = 0.0,
    ) -> CasePhases:
        """From pytest's set-up, call and teardown durations and the fault
        injector's clock (which runs inside call and teardown)."""
        other = max(0.0, call + teardown - fault - heal - health)
        values = (setup, fault, heal, health, other)
        return cls(test, cluster, {name: round(v, 1) for name, v in zip(PHASES, values, strict=True)})

    @property
    def suite(self) -> str:
        """The folder the test lives in: ``failover`` for suites/failover/..."""
        path = self.test.split("::", 1)[0].split("/")
        return path[-2] if len(path) > 1 else path[0]

    @property
    def total(self) -> float:
        return round(sum(self.seconds.values()), 1)


@dataclass(frozen=True)
class Stats:
    count: int  # observed values
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            return cls(0, None, None, None)
        ordered = sorted(values)
        return cls(len(ordered), _percentile(ordered, 50), _percentile(ordered, 95), ordered[-1])


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every value shown was measured)."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


@dataclass(frozen=True)
class Row:
    fault: str
    workload: str
    runs: int
    failed: int
    stats: dict[str, Stats]
    unmeasured: dict[str, str] = field(default_factory=dict)  # timing -> why

    @property
    def failure_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0


def describe_placement(placement: dict[str, str]) -> str:
    """``dcn1@h1, dcn2@h2, dcn3@h1``."""
    return ", ".join(f"{node}@{host}" for node, host in placement.items())


@dataclass
class RunReport:
    environment: Environment | None = None
    cases: list[CaseRecord] = field(default_factory=list)
    clusters: list[ClusterStart] = field(default_factory=list)
    phases: list[CasePhases] = field(default_factory=list)

    def add(self, record: CaseRecord) -> None:
        self.cases.append(record)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """The inverse of :meth:`to_dict` (the summary is derived again)."""
        env = data.get("environment")
        return cls(
            environment=Environment(**env) if env else None,
            cases=[CaseRecord(**case) for case in data.get("cases", [])],
            clusters=[ClusterStart(**start) for start in data.get("clusters", [])],
            phases=[CasePhases(**p) for p in data.get("phases", [])],
        )

    def merge(self, other: RunReport) -> None:
        """Take ``other``'s cases (a pytest-xdist worker's report into the
        controller's); the first environment seen stands for the run."""
        self.cases.extend(other.cases)
        self.clusters.extend(other.clusters)
        self.phases.extend(other.phases)
        if self.environment is None:
            self.environment = other.environment

    def rows(self) -> list[Row]:
        """One row per (fault, workload), in first-seen order."""
        keys: dict[tuple[str, str], list[CaseRecord]] = {}
        for case in self.cases:
            keys.setdefault((case.fault, case.workload), []).append(case)
        rows = []
        for (fault, workload), cases in keys.items():
            stats = {
                name: Stats.of([c.seconds[name] for c in cases if c.seconds.get(name) is not None])  # type: ignore[misc]
                for name in TIMINGS
            }
            unmeasured = {name: why for c in cases for name, why in c.unmeasured.items()}
            rows.append(Row(fault, workload, len(cases), sum(not c.passed for c in cases), stats, unmeasured))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "$schema": SCHEMA_ID,
            "environment": asdict(self.environment) if self.environment else None,
            "cases": [asdict(c) for c in self.cases],
            "clusters": [asdict(c) for c in self.clusters],
            "phases": [asdict(p) for p in self.phases],
            "summary": [
                {
                    "fault": r.fault,
                    "workload": r.workload,
                    "runs": r.runs,
                    "failed": r.failed,
                    "failure_rate": round(r.failure_rate, 4),
                    "timings": {name: asdict(s) for name, s in r.stats.items()},
                }
                for r in self.rows()
            ],
        }

    def table(self) -> list[list[str]]:
        """The summary as rows of cells, the header first: a row per fault and
        workload; p50/p95/max per timing when any case repeated, else the value."""
        rows = self.rows()
        repeats = any(r.runs > 1 for r in rows)
        head = ["fault", "workload", "runs", "failed"]
        for name in TIMINGS:
            head += [f"{name} p50", f"{name} p95", f"{name} max"] if repeats else [f"{name} (s)"]
        out = [head]
        for r in rows:
            cells = [r.fault, r.workload, str(r.runs), f"{r.failed} ({r.failure_rate:.0%})"]
            for name in TIMINGS:
                s = r.stats[name]
                if r.unmeasured.get(name):
                    cells += ["not measured"] * (3 if repeats else 1)
                    continue
                cells += [_fmt(v) for v in ([s.p50, s.p95, s.max] if repeats else [s.max])]
            out.append(cells)
        return out

    def notes(self) -> list[str]:
        """Why timings were not measured, once per workload and reason."""
        seen: dict[str, None] = {}
        for case in self.cases:
            for name, why in case.unmeasured.items():
                seen.setdefault(f"{case.workload}: {name} not measured: {why}", None)
        return list(seen)

    def markdown(self) -> str:
        """The summary as Markdown: the environment, then :meth:`table`."""
        lines = []
        env = self.environment
        if env is not None:
            lines.append(
                f"Image {env.image_recipe} {env.image_digest}, spec {env.spec}, "
                f"{env.accelerator}, hypervisor {env.hypervisor}"
                + (f"; nodes on hosts: {describe_placement(env.placement)}" if env.placement else "")
            )
            lines.append("")
        if self.clusters:
            lines.append("Clusters: " + "; ".join(c.describe() for c in self.clusters))
            lines.append("")
        if self.cases:
            lines += _markdown_table(self.table())
        if notes := self.notes():
            lines += ["", *(f"- {note}" for note in notes)]
        if self.phases:
            lines += ["", "## Where the time went", "", "Per suite (seconds):", ""]
            lines += _markdown_table(self.phase_table())
            lines += ["", "Per test, in run order (seconds):", ""]
            lines += _markdown_table(self.phase_table(per_test=True))
        return "\n".join(lines) + "\n"

    def phase_table(self, *, per_test: bool = False, slowest: int | None = None) -> list[list[str]]:
        """Where the time went (:class:`CasePhases`), the header first: a row
        per suite with the sum of each phase and a total row, or a row per
        test (the ``slowest`` ones first when given)."""
        if per_test:
            chosen = sorted(self.phases, key=lambda p: -p.total)[:slowest] if slowest else self.phases
            out = [["test", "cluster", *PHASES, "total"]]
            for p in chosen:
                out.append([p.test, p.cluster or "-", *(f"{p.seconds[n]:.1f}" for n in PHASES), f"{p.total:.1f}"])
            return out
        suites: dict[str, list[CasePhases]] = {}
        for p in self.phases:
            suites.setdefault(p.suite, []).append(p)
        out = [["suite", "tests", *PHASES, "total"]]
        for name, ps in [*suites.items(), ("all", self.phases)]:
            sums = [sum(p.seconds[n] for p in ps) for n in PHASES]
            out.append([name, str(len(ps)), *(f"{v:.0f}" for v in sums), f"{sum(sums):.0f}"])
        return out

    def text(self) -> str:
        """The summary for the terminal: :meth:`table` aligned, then where
        the time went per suite and in the slowest tests."""
        lines = [*_aligned(self.table()), *self.notes()] if self.cases or not self.phases else []
        if self.phases:
            lines += ["", "where the time went (seconds):", *_aligned(self.phase_table())]
            lines += ["", "slowest tests:", *_aligned(self.phase_table(per_test=True, slowest=10))]
        return "\n".join(lines)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """``timing-report.json`` and ``.md``, and with repeats the
        distribution chart ``timing-distribution.svg``."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "timing-report.json"
        md_path = directory / "timing-report.md"
        json_path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        md_path.write_text("# dcnlab timing report\n\n" + self.markdown())
        if any(r.runs > 1 for r in self.rows()):
            (directory / "timing-distribution.svg").write_text(self.distribution_svg())
        return json_path, md_path

    def distribution_svg(self) -> str:
        """Every repeat's value per fault, workload and timing (dcnlab.report.chart)."""
        values: dict[str, dict[str, list[float]]] = {}
        for case in self.cases:
            timings = values.setdefault(f"{case.fault} {case.workload}", {name: [] for name in TIMINGS})
            for name in TIMINGS:
                value = case.seconds.get(name)
                if value is not None:
                    timings[name].append(value)
        rows = {
            label: {name: (vs, Stats.of(vs).p50 or 0.0) for name, vs in timings.items()}
            for label, timings in values.items()
        }
        return distribution_svg(rows, f"timings across repeats ({len(self.cases)} cases)")


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _markdown_table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ---------------------------------------------------------------- comparison


def load_report(path: Path) -> dict[str, Any]:
    """A timing-report.json, checked enough to compare: a clear error otherwise."""
    from dcnlab.core.errors import ConfigError

    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read timing report {path}: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not JSON ({err}); pass a timing-report.json written by a dcnlab run") from err
    if not isinstance(data, dict) or data.get("$schema") != SCHEMA_ID or not isinstance(data.get("summary"), list):
        raise ConfigError(f"{path} is not a dcnlab timing report (no $schema {SCHEMA_ID!r} with a summary)")
    return data


def _label(data: dict[str, Any], fallback: str) -> str:
    env = data.get("environment") or {}
    if env:
        return f"{env.get('image_recipe', '?')} {env.get('image_digest', '?')} / {Path(env.get('spec', '?')).name}"
    return fallback


def compare(a: dict[str, Any], b: dict[str, Any], *, names: tuple[str, str] = ("A", "B")) -> str:
    """Per fault and workload, each timing's p50 in A and B and B - A, as a
    Markdown table; rows only one side has are listed with a dash."""
    rows_a = {(r["fault"], r["workload"]): r for r in a["summary"]}
    rows_b = {(r["fault"], r["workload"]): r for r in b["summary"]}
    keys = list(rows_a) + [k for k in rows_b if k not in rows_a]
    head = ["fault", "workload", "failed A", "failed B"]
    for name in TIMINGS:
        head += [f"{name} A", f"{name} B", f"{name} Δ"]
    lines = [
        f"A: {_label(a, names[0])}",
        f"B: {_label(b, names[1])}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for key in keys:
        ra, rb = rows_a.get(key), rows_b.get(key)
        cells = [key[0], key[1], _failed(ra), _failed(rb)]
        for name in TIMINGS:
            va = _p50(ra, name)
            vb = _p50(rb, name)
            delta = "-" if va is None or vb is None else f"{vb - va:+.1f}"
            cells += [_fmt(va), _fmt(vb), delta]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _p50(row: dict[str, Any] | None, name: str) -> float | None:
    if row is None:
        return None
    value = row["timings"][name]["p50"]
    return None if value is None else float(value)


def _failed(row: dict[str, Any] | None) -> str:
    return "-" if row is None else f"{row['failed']}/{row['runs']}"
