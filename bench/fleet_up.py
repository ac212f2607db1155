"""Benchmark: time from start to every node of a fleet answering SSH.

    .venv/bin/python bench/fleet_up.py [--nodes 3] [--networks 2] [--repeat 1]

Writes bench/results/fleet_up.json: one entry per repeat with the phase
timings the library records (hypervisor start, networks, define+start, SSH
ready, total) plus the machine facts needed to compare runs.
"""

from __future__ import annotations

import argparse
import os
import time

import benchlib

from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import build_image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    image = build_image(progress=print)
    runs = []
    for i in range(args.repeat):
        name = f"bench{os.getpid()}-{i}"
        started = time.monotonic()
        fleet = Fleet.up(FleetSpec(name=name, nodes=args.nodes, networks=args.networks), image, progress=print)
        up = time.monotonic() - started
        try:
            runs.append({"seconds_to_all_ssh": round(up, 2), **{k: round(v, 2) for k, v in fleet.timings.items()}})
            accel = fleet.accel.name
        finally:
            t = time.monotonic()
            fleet.down()
            runs[-1]["teardown"] = round(time.monotonic() - t, 2)
    result = {
        **benchlib.header("fleet_up", accelerator=accel),
        "image": {"recipe": image.recipe, "digest": image.digest},
        "nodes": args.nodes,
        "networks": args.networks,
        "runs": runs,
    }
    benchlib.write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
