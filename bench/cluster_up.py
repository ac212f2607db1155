"""Benchmark: time from nothing to a converged cluster of the default spec.

    .venv/bin/python bench/cluster_up.py [--nodes 3] [--networks 2] [--spec FILE] [--repeat 1]

Writes bench/results/cluster_up.json: per repeat the fleet's phases (to every
node answering SSH) and the cluster's (fencing path proven, corosync.conf
written by pcs, files copied, stack started, members joined, each pcs step,
converged), all in seconds, plus the machine facts needed to compare runs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import benchlib

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import build_image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    spec = load_spec(args.spec)
    image = build_image(progress=print)
    runs = []
    accel = "unknown"
    for i in range(args.repeat):
        name = f"cbench{os.getpid()}-{i}"
        started = time.monotonic()
        fleet = Fleet.up(FleetSpec(name=name, nodes=args.nodes, networks=args.networks), image, progress=print)
        try:
            fleet_seconds = time.monotonic() - started
            cluster = Cluster.up(fleet, spec, print)
            runs.append(
                {
                    "seconds_to_converged": round(time.monotonic() - started, 2),
                    "seconds_fleet_up": round(fleet_seconds, 2),
                    "fleet": {k: round(v, 2) for k, v in fleet.timings.items()},
                    "cluster": cluster.timings,
                }
            )
            accel = fleet.accel.name
        finally:
            fleet.down()
    result = {
        **benchlib.header("cluster_up", accelerator=accel),
        "image": {"recipe": image.recipe, "digest": image.digest},
        "spec": str(args.spec),
        "nodes": args.nodes,
        "networks": args.networks,
        "runs": runs,
    }
    benchlib.write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
