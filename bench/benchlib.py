"""What every benchmark script shares: the result header and where it goes.

The scripts run as ``python bench/NAME.py``, so this module is importable
from them by its plain name.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PYTEST = Path(sys.executable).parent / "pytest"


def header(benchmark: str, **machine: Any) -> dict[str, Any]:
    """The start of a result: its name, when, and the machine facts needed to
    compare runs (cpus and kernel, plus what the benchmark adds)."""
    return {
        "benchmark": benchmark,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), **machine},
    }


def write(result: dict[str, Any]) -> Path:
    """Write ``result`` to results/<benchmark>.json and print it."""
    out = RESULTS / f"{result['benchmark']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    out.write_text(text)
    print(text, end="")
    return out


def vs_floor(seconds: float, floor: float) -> dict[str, float]:
    return {"seconds": round(seconds, 2), "x_floor": round(seconds / floor, 2)}


def measure_floor(image: Any, networks: int, tag: str) -> tuple[float, dict[str, float], Any]:
    """The floor every start-up is compared to: a one-node fleet of ``image``
    on ``networks`` networks, from nothing to its node answering SSH (a
    single bare VM boot). Returns the seconds, the fleet's phases and the
    accelerator it ran under."""
    from dcnlab.fleet.fleet import Fleet
    from dcnlab.fleet.spec import FleetSpec

    t0 = time.monotonic()
    fleet = Fleet.up(FleetSpec(name=f"{tag}-floor", nodes=1, networks=networks), image, progress=print)
    seconds = time.monotonic() - t0
    try:
        return seconds, {k: round(v, 2) for k, v in fleet.timings.items()}, fleet.accel
    finally:
        fleet.down()


def run_smoke(args: list[str], junit: Path, report: Path, log: Path) -> int:
    """``pytest suites -m smoke`` in a child session, its output appended to
    ``log``; junit XML and timing report where asked. Returns its exit code."""
    argv = [str(PYTEST), "suites", "-m", "smoke", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    argv += ["--dcn-report", str(report), *args]
    print(f"[{Path(sys.argv[0]).stem}] {' '.join(argv)}  (log: {log})", flush=True)
    with log.open("a") as out:
        # No timeout: every wait inside the harness has its own deadline.
        proc = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    return proc.returncode


def junit_verdicts(junit: Path) -> Iterator[tuple[str, str, str]]:
    """(``classname::name``, verdict, message) per test case of a junit XML:
    passed, failed, error (set-up or teardown) or skipped. A failure or an
    error wins over a skip reported with it."""
    for tc in ET.parse(junit).getroot().iter("testcase"):
        verdict, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                verdict = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "").strip()
                if child.tag != "skipped":
                    break
        yield f"{tc.get('classname')}::{tc.get('name')}", verdict, message
