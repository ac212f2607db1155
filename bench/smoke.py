"""Benchmark: the smoke set's wall time and the heal after each fault, against the floor.

    .venv/bin/python bench/smoke.py [PYTEST ARGS...]

In one run on one machine, one after the other:

1. the floor: a one-node fleet, from nothing to its node answering SSH (as
   bench/startup.py measures it);
2. ``pytest suites -m smoke`` in a child session, timed from its start to its
   exit: image check, fleet, cluster (restored from the ready-state cache when
   it holds one, else built and cached), every smoke case, teardown;
3. from that session's timing report: how its cluster came (built or
   restored, seconds) and, per case the report holds (the failover suite's),
   the heal: from the fault healed to the cluster verified healthy again (all
   nodes online, resources where the spec wants them, fail counts cleared).
   The session's last fault case has none: with no test after it, its heal
   does not wait for the cluster. With the default smoke set that leaves no
   heal at all (its one failover case runs last): pass ``--dcn-repeat 2``
   for heals, at twice the wall time.

Writes bench/results/smoke.json: each time in seconds and as a ratio to the
floor, the verdict of every case, and the session's exit code (a failing
smoke run is still measured, and says so).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

from dcnlab.image.builder import build_image

NETWORKS = 2  # the floor's, as the smoke session's fleet (the default shape)


def verdicts(junit: Path) -> dict[str, str]:
    """Test id -> passed, failed, error or skipped."""
    return {name: verdict for name, verdict, _ in benchlib.junit_verdicts(junit)} if junit.exists() else {}


def main(argv: list[str]) -> int:
    image = build_image(progress=print)
    floor, floor_phases, accel = benchlib.measure_floor(image, NETWORKS, f"sm{os.getpid() % 100000}")
    log = benchlib.RESULTS / "smoke.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with tempfile.TemporaryDirectory(prefix="dcnlab-bench-smoke-") as tmp:
        junit, report_dir = Path(tmp) / "junit.xml", Path(tmp) / "report"
        t0 = time.monotonic()
        code = benchlib.run_smoke(argv, junit, report_dir, log)
        wall = time.monotonic() - t0
        report_file = report_dir / "timing-report.json"
        report: dict[str, Any] = json.loads(report_file.read_text()) if report_file.exists() else {}
        cases = verdicts(junit)
    heals = [
        {"case": c["test"], **benchlib.vs_floor(c["restore_seconds"], floor)}
        for c in report.get("cases", [])
        if c.get("restore_seconds") is not None
    ]
    result = {
        **benchlib.header("smoke", accelerator=accel.name),
        "image": {"recipe": image.recipe, "digest": image.digest},
        "pytest_args": argv,
        "exit_code": code,
        "floor": {"what": "one bare node, nothing to SSH", **benchlib.vs_floor(floor, floor), "phases": floor_phases},
        "smoke_wall": {"what": "pytest suites -m smoke, start to exit", **benchlib.vs_floor(wall, floor)},
        "clusters": [{**c, **benchlib.vs_floor(c["seconds"], floor)} for c in report.get("clusters", [])],
        "heals": heals,
        "cases": cases,
        "log": str(log.relative_to(benchlib.ROOT)),
    }
    benchlib.write(result)
    if code != 0:
        print(f"[smoke] the smoke session exited {code}: see {log}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
