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
agents show under pacemaker-execd; by process name). The guests are read
just before and just after the window, so reading them costs the window
nothing (an earlier version read them inside it: its forks were most of an
idle node's count). Writes bench/results/guest_cpu.json.
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

# In the guest, one awk over every /proc/PID/stat (no process forked per
# PID: under TCG the forks of a shell loop cost seconds, which would land in
# the window): "pid own-ticks children-ticks name" into FILE. The second
# call also prints the difference in seconds, busiest first. The host's QEMU
# ticks are read between the two calls, so neither call is in the window.
GUEST_SNAP = r"""
awk '{ i = index($0, ") "); name = substr($0, index($0, "(") + 1, i - index($0, "(") - 1)
       split(substr($0, i + 2), f, " "); print $1, f[12] + f[13], f[14] + f[15], name }' \
  /proc/[0-9]*/stat 2>/dev/null > FILE
"""
GUEST_DIFF = r"""
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
    processes from inside (every node read before and after the window, all
    at once, outside the host's count)."""
    nodes = sorted(fleet.nodes.values(), key=lambda n: n.plan.index)
    uuids = {n.name: fleet.machines.uuid(n.domain) for n in nodes}
    hz = os.sysconf("SC_CLK_TCK")
    _on_guests(nodes, GUEST_SNAP.replace("FILE", "/tmp/dcnlab-cpu.a"), fleet.accel.scale)
    before, t0 = qemu_ticks(uuids), time.monotonic()
    time.sleep(window)  # the measurement window itself, not a wait for a condition
    after, seconds = qemu_ticks(uuids), time.monotonic() - t0
    snap_b = GUEST_SNAP.replace("FILE", "/tmp/dcnlab-cpu.b")
    tops = {name: _rows(text) for name, text in _on_guests(nodes, snap_b + GUEST_DIFF, fleet.accel.scale).items()}
    return {
        "window_seconds": round(seconds, 1),
        "qemu_percent_of_a_core": {
            name: round(100 * (after[name] - before[name]) / hz / seconds, 1)
            for name in uuids
            if name in before and name in after
        },
        "guest_top": tops,
    }


def _on_guests(nodes: list[Node], script: str, scale: float) -> dict[str, str]:
    texts = on_each(
        nodes,
        lambda node: node.run(["sh", "-c", script], timeout=60 * scale).stdout,
        label=lambda n: n.name,
        what="reading the guests' CPU use",
    )
    return {node.name: text for node, text in zip(nodes, texts, strict=True)}


def _rows(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        total, own, kids, *command = line.split()
        seconds = {"cpu_seconds": float(total), "own": float(own), "children": float(kids)}
        rows.append({**seconds, "command": " ".join(command)})
    return rows


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
