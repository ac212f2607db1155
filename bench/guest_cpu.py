"""Benchmark: where the guests' CPU goes when nothing is being tested.

    .venv/bin/python bench/guest_cpu.py [--recipe dcn-debian] [--spec FILE] [--nodes 3] [--window 30]

Under TCG every guest instruction is emulated on the host's cores, so CPU a
guest spends on its own (a boot's tail, a daemon nobody uses, a monitor)
is taken from the failovers being timed. Two windows of ``--window``
seconds, one after the other on one fleet:

1. **boot tail**: right after every node answers SSH, before any cluster;
2. **converged**: once the spec's cluster has converged and settled a while.

For each: every node's QEMU process as a share of one host core (from the
host's /proc: the process whose command line names the node's domain), and
on every node the processes that used the most CPU (from the guest's /proc:
own time, and what their finished children used, so the short-lived monitor
agents show under pacemaker-execd). Writes bench/results/guest_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import benchlib

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.core.parallel import on_each
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import DEFAULT_RECIPE, build_image

# In the guest: per process "pid own-ticks children-ticks command" now, again
# after the window, then the difference in seconds, busiest first.
GUEST_TOP = r"""
snap() {
  for p in /proc/[0-9]*; do
    read -r line < "$p/stat" 2>/dev/null || continue
    set -- ${line#*) }
    printf '%s %s %s %s\n' "${p#/proc/}" $(( ${12} + ${13} )) $(( ${14} + ${15} )) \
      "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-80)"
  done
}
snap > /tmp/dcnlab-cpu.a; sleep WINDOW; snap > /tmp/dcnlab-cpu.b
awk -v hz="$(getconf CLK_TCK)" 'NR==FNR { own[$1] = $2; kids[$1] = $3; next }
     ($1 in own) { o = $2 - own[$1]; k = $3 - kids[$1]; if (o + k > 0) {
       c = ""; for (i = 4; i <= NF; i++) c = c " " $i; print (o + k) / hz, o / hz, k / hz, c } }' \
  /tmp/dcnlab-cpu.a /tmp/dcnlab-cpu.b | sort -rn | head -12
rm -f /tmp/dcnlab-cpu.a /tmp/dcnlab-cpu.b
"""


def qemu_ticks(uuids: dict[str, str]) -> dict[str, int]:
    """Host CPU ticks (user + system) so far of each node's QEMU process,
    found by its domain's UUID (``uuids``: node name -> UUID): libvirt passes
    it as ``-uuid``, and unlike the domain name no other fleet shares it."""
    by_uuid = {u.encode(): name for name, u in uuids.items()}
    ticks: dict[str, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        name = next((by_uuid[a] for a in argv if a in by_uuid), None)
        if name is not None and b"qemu-system" in argv[0]:
            ticks[name] = int(stat[11]) + int(stat[12])
    return ticks


def measure(fleet: Fleet, window: int) -> dict[str, Any]:
    """One window: the QEMU processes from the host, the busiest guest
    processes from inside (all nodes at once, while the host watches)."""
    nodes = sorted(fleet.nodes.values(), key=lambda n: n.plan.index)
    uuids = {n.name: fleet.machines.uuid(n.domain) for n in nodes}
    hz = os.sysconf("SC_CLK_TCK")
    before, t0 = qemu_ticks(uuids), time.monotonic()
    tops = _guest_tops(nodes, window, fleet.accel.scale)
    after, seconds = qemu_ticks(uuids), time.monotonic() - t0
    return {
        "window_seconds": round(seconds, 1),
        "qemu_percent_of_a_core": {
            name: round(100 * (after[name] - before[name]) / hz / seconds, 1)
            for name in uuids
            if name in before and name in after
        },
        "guest_top": tops,
    }


def _guest_tops(nodes: list[Node], window: int, scale: float) -> dict[str, list[dict[str, Any]]]:
    script = GUEST_TOP.replace("WINDOW", str(window))
    out: dict[str, list[dict[str, Any]]] = {}

    def top(node: Node) -> None:
        res = node.run(["sh", "-c", script], timeout=window + 60 * scale)
        rows = []
        for line in res.stdout.splitlines():
            total, own, kids, *command = line.split()
            seconds = {"cpu_seconds": float(total), "own": float(own), "children": float(kids)}
            rows.append({**seconds, "command": " ".join(command)})
        out[node.name] = rows

    on_each(nodes, top, label=lambda n: n.name, what="reading the guests' CPU use")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=DEFAULT_RECIPE, help="image recipe (default: the default image)")
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="cluster spec (default: the default spec)")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--window", type=int, default=30, help="seconds each window lasts (default 30)")
    ap.add_argument("--settle", type=int, default=30, help="seconds after convergence before the second window")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    image = build_image(args.recipe, progress=print)
    fleet = Fleet.up(
        FleetSpec(name=f"gcpu{os.getpid() % 100000}", nodes=args.nodes, networks=args.networks), image, progress=print
    )
    try:
        boot_tail = measure(fleet, args.window)
        cluster = Cluster.up(fleet, spec, print)
        time.sleep(args.settle)  # not a wait for a condition: the cluster is converged; this lets it idle
        converged = measure(fleet, args.window)
        accel = fleet.accel.name
        cluster_seconds = cluster.timings.get("converged")
    finally:
        fleet.down()
    result = {
        **benchlib.header("guest_cpu", accelerator=accel),
        "image": {"recipe": image.recipe, "digest": image.digest},
        "spec": str(args.spec),
        "nodes": args.nodes,
        "cluster_converged_seconds": cluster_seconds,
        "boot_tail": boot_tail,
        "converged": converged,
    }
    benchlib.write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
