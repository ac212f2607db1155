"""Benchmark: the main job, ``./dev certify``, against the single-boot floor.

    .venv/bin/python bench/main_job.py --label after [--checkout DIR] [--job test] [PYTEST ARGS...]

In one run on one machine, one after the other (never two fleets at once):

1. the floor: a one-node fleet, from nothing to its node answering SSH (a
   single bare VM boot, the least any start-up can cost here);
2. ``./dev setup`` in the checkout (not timed: installing is not the job);
3. ``./dev certify`` in the checkout (default: this one; ``--checkout DIR``
   runs another, e.g. a worktree of the commit before a change), timed from
   start to exit, with its junit XML and timing report; its cluster is built
   cold and saved (``--dcn-ready-cache refresh``), as on a clean machine.
   ``--job test`` times ``./dev test`` (what CI runs) the same way instead.

Every figure is in seconds and as a multiple of the floor: the whole job,
each suite (the sum of its tests' set-up, call and teardown), each test, and
where the time went (set-up, fault to verdict, heal, wait for health, other)
when the checkout's timing report has its ``phases``. Results go under
``runs.LABEL`` of bench/results/main_job.json, next to the other labels
already there (``before`` and ``after`` in the same session compare).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import benchlib

from dcnlab.image.builder import build_image

ROOT = benchlib.ROOT
RESULT = benchlib.RESULTS / "main_job.json"


def junit_cases(junit: Path) -> list[dict[str, Any]]:
    """Per test: its pytest node id as far as junit keeps it, its verdict
    and its seconds (pytest's junit time: set-up, call and teardown)."""
    verdicts = dict((name, verdict) for name, verdict, _ in benchlib.junit_verdicts(junit))
    cases = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        name = f"{tc.get('classname')}::{tc.get('name')}"
        cases.append({"test": name, "verdict": verdicts[name], "seconds": float(tc.get("time") or 0.0)})
    return cases


def suite_of(test: str) -> str:
    """``suites.failover.test_failover::test_failover[x]`` -> ``failover``."""
    module = test.split("::", 1)[0].split(".")
    return module[-2] if len(module) > 1 else module[0]


def summarise(cases: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    suites: dict[str, dict[str, Any]] = {}
    for case in cases:
        s = suites.setdefault(suite_of(case["test"]), {"tests": 0, "seconds": 0.0, "verdicts": {}})
        s["tests"] += 1
        s["seconds"] += case["seconds"]
        s["verdicts"][case["verdict"]] = s["verdicts"].get(case["verdict"], 0) + 1
    for s in suites.values():
        s.update(benchlib.vs_floor(s["seconds"], floor))
    return suites


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="where the result goes in main_job.json (before, after...)")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the dcnlab checkout to run (default: this one)")
    ap.add_argument("--networks", type=int, default=2, help="networks of the floor's node (default 2)")
    ap.add_argument(
        "--job", choices=("certify", "test"), default="certify", help="the ./dev command to time (default certify)"
    )
    args, pytest_args = ap.parse_known_args()
    checkout = args.checkout.resolve()
    dev = checkout / "dev"
    if not dev.is_file():
        ap.error(f"--checkout {checkout}: no ./dev there; give a dcnlab checkout (git worktree add DIR COMMIT)")
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    image = build_image(progress=print)
    floor, floor_phases, accel = benchlib.measure_floor(image, args.networks, f"mj{os.getpid() % 100000}")
    print(f"[main_job] floor: {floor:.1f} s ({accel.name})", flush=True)

    subprocess.run([str(dev), "setup"], cwd=checkout, check=True)
    log = benchlib.RESULTS / f"main_job-{args.label}.log"
    with tempfile.TemporaryDirectory(prefix="dcnlab-main-job-") as tmp:
        junit, report = Path(tmp) / "junit.xml", Path(tmp) / "report"
        argv = [str(dev), args.job, "-p", "no:cacheprovider", f"--junitxml={junit}", "--dcn-report", str(report)]
        # A clean machine has no cluster-ready state: build it (and save it)
        # as the first run there would, unless the caller says otherwise.
        if not any(a.startswith("--dcn-ready-cache") for a in pytest_args):
            argv += ["--dcn-ready-cache", "refresh"]
        argv += pytest_args
        print(f"[main_job] {' '.join(argv)}  (log: {log})", flush=True)
        t0 = time.monotonic()
        with log.open("w") as out:
            # No timeout: every wait inside the harness has its own deadline.
            code = subprocess.run(argv, cwd=checkout, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        wall = time.monotonic() - t0
        cases = junit_cases(junit) if junit.exists() else []
        timing = report / "timing-report.json"
        phases = json.loads(timing.read_text()).get("phases", []) if timing.exists() else []

    for case in cases:
        case.update(benchlib.vs_floor(case.pop("seconds"), floor))
    run = {
        **benchlib.header("main_job", accelerator=accel.name),
        "commit": commit,
        "command": f"./dev {args.job}",
        "pytest_args": pytest_args,
        "exit_code": code,
        "floor": {"seconds": round(floor, 2), "phases": floor_phases},
        "job": benchlib.vs_floor(wall, floor),
        "verdicts": {v: sum(c["verdict"] == v for c in cases) for v in ("passed", "failed", "error", "skipped")},
        "suites": summarise(cases, floor),
        "cases": cases,
        "phases": phases,
        "log": str(log.relative_to(ROOT)),
    }
    result: dict[str, Any] = {"benchmark": "main_job", "runs": {}}
    if RESULT.exists():
        result = json.loads(RESULT.read_text())
    runs: dict[str, Any] = result["runs"]
    runs[args.label] = run
    if "before" in runs and "after" in runs:
        before, after = runs["before"]["job"], runs["after"]["job"]
        result["after_vs_before"] = round(after["seconds"] / before["seconds"], 3)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: run[k] for k in ("commit", "exit_code", "floor", "job", "verdicts")}, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
