"""Benchmark: start-up before and after the ready-state cache, against the floor.

    .venv/bin/python bench/startup.py [--nodes 3] [--networks 2] [--spec FILE] [--restores 2]

In one run on one machine, one after the other (never two fleets at once):

1. the floor: a one-node fleet, from nothing to its node answering SSH
   (a single bare VM boot, the least any start-up can cost here);
2. before: a fleet booted from the image (to every node answering SSH) and
   its cluster built with pcs (to converged and verified) — what every
   session paid before the cache — then saved to the ready-state cache;
3. after, ``--restores`` times: a new fleet restored from that entry, to
   every node answering SSH with the run's own key and to the cluster
   verified healthy (the same check a built cluster passes).

Writes bench/results/startup.json: every timing in seconds, each also as a
ratio to the floor, and the phases behind them (fleet.timings, cluster.timings).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import benchlib

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import build_image
from dcnlab.ready import cluster as ready


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    ap.add_argument("--restores", type=int, default=2)
    args = ap.parse_args()
    spec = load_spec(args.spec)
    image = build_image(progress=print)
    tag = f"sb{os.getpid() % 100000}"

    # 1. The floor.
    floor, floor_phases, accel = benchlib.measure_floor(image, args.networks, tag)

    # 2. Before: boot and build.
    shape = FleetSpec(name=f"{tag}-cold", nodes=args.nodes, networks=args.networks)
    t0 = time.monotonic()
    fleet = Fleet.up(shape, image, progress=print)
    try:
        cold_fleet_up = time.monotonic() - t0
        cluster = Cluster.up(fleet, spec, print)  # ends with verify_ready, as a restore does
        cold_ready = time.monotonic() - t0
        cold = {"fleet": _rounded(fleet.timings), "cluster": cluster.timings}
        t1 = time.monotonic()
        state = ready.save(cluster, ready.key_for(shape, image, spec, accel.domain_type))
        save_seconds = time.monotonic() - t1
    finally:
        fleet.down()
    if state is None:
        raise SystemExit("the cluster could not be cached (see the lines above): nothing to restore")

    # 3. After: restore, as many times as asked.
    restores: list[dict[str, Any]] = []
    for i in range(args.restores):
        t0 = time.monotonic()
        restored = ready.restore(
            FleetSpec(name=f"{tag}-r{i}", nodes=args.nodes, networks=args.networks), image, state, spec, progress=print
        )
        try:
            restores.append(
                {
                    "fleet_up": round(restored.fleet.timings["total"], 2),
                    "cluster_ready": round(time.monotonic() - t0, 2),
                    "fleet": _rounded(restored.fleet.timings),
                    "cluster": restored.timings,
                }
            )
        finally:
            restored.fleet.down()

    after_fleet = statistics.median(r["fleet_up"] for r in restores)
    after_ready = statistics.median(r["cluster_ready"] for r in restores)

    def vs_floor(seconds: float) -> dict[str, float]:
        return benchlib.vs_floor(seconds, floor)

    result = {
        **benchlib.header("startup", accelerator=accel.name),
        "image": {"recipe": image.recipe, "digest": image.digest},
        "spec": str(args.spec),
        "nodes": args.nodes,
        "networks": args.networks,
        "floor": {"what": "one bare node, nothing to SSH", **vs_floor(floor), "phases": floor_phases},
        "before": {
            "what": "boot from the image, build the cluster with pcs",
            "fleet_up": vs_floor(cold_fleet_up),
            "cluster_ready": vs_floor(cold_ready),
            "phases": cold,
        },
        "cache": {"save_seconds": round(save_seconds, 2), "entry": state.path.name},
        "after": {
            "what": f"restore from the ready-state cache (median of {len(restores)})",
            "fleet_up": vs_floor(after_fleet),
            "cluster_ready": vs_floor(after_ready),
            "runs": restores,
        },
        "speedup": {
            "fleet_up": round(cold_fleet_up / after_fleet, 1),
            "cluster_ready": round(cold_ready / after_ready, 1),
        },
    }
    benchlib.write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
