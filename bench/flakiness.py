"""Benchmark: how stable are the smoke set's verdicts on one image and spec?

    .venv/bin/python bench/flakiness.py [--runs 10] [--fresh] [PYTEST ARGS...]

Default: one pytest session, ``pytest suites -m smoke --dcn-repeat RUNS``:
one fleet and one cluster, and every smoke case run RUNS times in a row, each
run healed back to a verified healthy cluster before the next (the way a
certification session runs). ``--fresh``: RUNS separate sessions instead,
each booting its own fleet and cluster (under TCG, ~6 minutes of set-up each).
Extra arguments go to pytest (e.g. ``--dcn-image``, ``--dcn-cluster-spec``).

Writes bench/results/flakiness.json: for each case the verdict of every run
(passed, failed, error, skipped) and whether they are all the same, the
harness errors (a harness exception or a fixture error, not a verdict about
the product: these must be zero), and the failover timings' p50/p95/max over
the runs from the timing report.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

ROOT = benchlib.ROOT
# The id --dcn-repeat adds, first or last among a case's parameters (pytest
# orders them as they were parametrized): test_x[r3], test_x[r3-case], test_x[case-r3].
PARAMS = re.compile(r"^(?P<base>.*)\[(?P<params>[^\]]*)\]$")
REPEAT = re.compile(r"r(\d+)")
HARNESS_ERROR = re.compile(r"^dcnlab\.[\w.]+: ")  # as dcnlab/report/allure_report.py's categories


@dataclass(frozen=True)
class Outcome:
    case: str  # the case without its repeat id
    run: int
    verdict: str  # passed, failed, error, skipped
    harness_error: bool
    message: str


def case_and_run(name: str, session: int) -> tuple[str, int]:
    """``test_x[case-r3]`` or ``test_x[r3-case]`` -> (``test_x[case]``, 3);
    ``test_x[r3]`` -> (``test_x``, 3); without a repeat id the run is the
    session's number (--fresh)."""
    match = PARAMS.match(name)
    if match is None:
        return name, session
    params = match.group("params").split("-")
    for i in (0, len(params) - 1):
        repeat = REPEAT.fullmatch(params[i])
        if repeat is not None:
            rest = "-".join(params[:i] + params[i + 1 :])
            return (f"{match.group('base')}[{rest}]" if rest else match.group("base")), int(repeat.group(1))
    return name, session


def outcomes(junit: Path, session: int) -> list[Outcome]:
    found = []
    for name, verdict, message in benchlib.junit_verdicts(junit):
        case, run = case_and_run(name, session)
        # An error (set-up or teardown) never is a verdict; a failure is one
        # unless the harness raised it.
        harness = verdict == "error" or (verdict == "failed" and bool(HARNESS_ERROR.match(message)))
        found.append(Outcome(case, run, verdict, harness, message[:500]))
    return found


def summarise(found: list[Outcome], runs: int) -> dict[str, Any]:
    by_case: dict[str, dict[int, Outcome]] = defaultdict(dict)
    for o in found:
        by_case[o.case][o.run] = o
    cases = {}
    for case, seen in sorted(by_case.items()):
        verdicts = [seen[r].verdict if r in seen else "missing" for r in range(runs)]
        cases[case] = {
            "verdicts": verdicts,
            "stable": len(set(verdicts)) == 1,
            "problems": {r: seen[r].message for r in sorted(seen) if seen[r].verdict in ("failed", "error")},
        }
    stable = sum(1 for c in cases.values() if c["stable"])
    return {
        "cases": cases,
        "stable_cases": f"{stable}/{len(cases)}",
        "all_identical": stable == len(cases) and bool(cases),
        "harness_errors": sum(1 for o in found if o.harness_error),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of every smoke case (default 10)")
    ap.add_argument("--fresh", action="store_true", help="one pytest session (own fleet and cluster) per run")
    args, pytest_args = ap.parse_known_args()
    if args.runs < 2:
        ap.error("--runs: stability needs at least 2 runs")
    results = benchlib.RESULTS
    results.mkdir(parents=True, exist_ok=True)
    log = results / "flakiness.log"
    log.write_text("")
    start = time.monotonic()
    found: list[Outcome] = []
    codes = []
    summary = None
    with tempfile.TemporaryDirectory(prefix="dcnlab-flakiness-") as tmp:
        work = Path(tmp)
        sessions = range(args.runs) if args.fresh else range(1)
        for session in sessions:
            junit, report = work / f"junit-{session}.xml", work / f"report-{session}"
            extra = pytest_args if args.fresh else ["--dcn-repeat", str(args.runs), *pytest_args]
            codes.append(benchlib.run_smoke(extra, junit, report, log))
            if junit.exists():
                found += outcomes(junit, session)
                shutil.copy(junit, results / f"flakiness-junit-{session}.xml")
            timing = report / "timing-report.json"
            if timing.exists() and not args.fresh:  # fresh sessions each have their own
                summary = json.loads(timing.read_text())["summary"]
    result = benchlib.header("flakiness")
    result.update(
        {
            "mode": "fresh sessions" if args.fresh else "one session, --dcn-repeat",
            "runs": args.runs,
            "pytest_args": pytest_args,
            "pytest_exit_codes": codes,
            "wall_seconds": round(time.monotonic() - start, 1),
            **summarise(found, args.runs),
            "failover_timings": summary,
            "log": str(log.relative_to(ROOT)),
        }
    )
    benchlib.write(result)
    # Stability is the measure: ten identical FAILs are stable (and the exit
    # codes say the image failed); a harness error never is acceptable.
    return 0 if result["all_identical"] and result["harness_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
