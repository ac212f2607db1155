"""The client probe program: run inside the fleet's network namespace.

    ip netns exec dcnlab-NAME python3 -I dcnlab/observe/probe_program.py \\
        --target svc=http://ADDRESS:PORT/PATH [--status svc=200] [--contains svc=TEXT] \\
        --interval 0.1 --max-duration 600

Standard library only, and started as a script (not ``-m harness...``), so
it imports nothing of the harness and runs under any Python 3.10+ (``-I``
keeps the caller's environment and user site out). It writes one JSON object
per line to stdout (or ``--out``):

- ``{"type": "start", "mono": ..., "wall": ..., "pid": ..., "targets": {...}, ...}``
- ``{"type": "attempt", "target": "svc", "seq": 7, "t": 12345.678, "dur": 0.004,
  "ok": true, "mac": "52:54:00:dc:00:02", "status": 200, "err": null}``

``mac`` is the link-layer address the target's IP address resolved to (the
namespace's neighbour table, read right after the answer): the harness knows
every node's MACs, so it tells who served any service, without the service's
help. When a floating IP moves, its new holder announces it (gratuitous ARP)
and the table follows; an answer can only come from the MAC the request was
sent to, as a node without the address drops the packets.
- ``{"type": "end", "reason": "stopped", "mono": ..., "attempts": {"svc": 812}}``

``t`` is ``time.monotonic()`` when the attempt started: CLOCK_MONOTONIC,
which Linux keeps system-wide (one clock for every process; ``ip netns exec``
changes the network namespace, not the time namespace), so it is directly
comparable with the harness's own ``time.monotonic()``. The start line
carries ``mono`` so the harness can check that.

Each target is probed on a fixed schedule (attempt k starts at
``start + k * interval``): attempts run in their own threads, so a request
that hangs until its timeout (a VIP that nobody holds: no ARP answer) does
not stretch the schedule, and an outage's start and end stay known to one
interval. At most ``ceil(timeout / interval) + 1`` attempts per target are in
flight, which the schedule never exceeds.

It always stops by itself: after ``--max-duration`` seconds, after
``--max-count`` attempts per target, on SIGTERM/SIGINT, or when its standard
input reaches end of file (the harness holds a pipe to it, so it stops when
the harness dies).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from typing import IO, Any
from urllib.parse import urlsplit

MIN_INTERVAL = 0.02
BODY_LIMIT = 65536  # bytes of an HTTP answer searched for --contains
ARP_TABLE = "/proc/net/arp"  # this network namespace's IPv4 neighbours


class Output:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def neighbour_mac(ip: str, table: str = ARP_TABLE) -> str | None:
    """The MAC ``ip`` resolves to in this namespace's neighbour table, or None
    (no complete entry). Columns: IP, HW type, Flags, HW address, Mask, Device."""
    try:
        with open(table, encoding="ascii") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        # Flags 0x0: incomplete (no answer yet); ATF_COM (0x2) marks a resolved entry.
        if len(cols) >= 4 and cols[0] == ip and int(cols[2], 16) & 0x2:
            return cols[3].lower()
    return None


def attempt(
    url: str, timeout: float, status: int = 200, contains: bytes | None = None
) -> tuple[bool, str | None, int | None, str | None]:
    """One request: (ok, MAC that answered, HTTP status, error)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "tcp":
        try:
            with socket.create_connection((host, parts.port or 0), timeout=timeout):
                return True, neighbour_mac(host), None, None
        except OSError as err:
            return False, None, None, classify(err)
    conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    try:
        # A fresh connection each time: a kept-alive one would stick to the
        # node that held the address when it was opened.
        conn.request("GET", parts.path or "/", headers={"Connection": "close", "User-Agent": "dcnlab-probe"})
        resp = conn.getresponse()
        body = resp.read(BODY_LIMIT)
        mac = neighbour_mac(host)
        if resp.status != status:
            return False, mac, resp.status, f"http-{resp.status}"
        if contains is not None and contains not in body:
            return False, mac, resp.status, "unexpected-body"
        return True, mac, resp.status, None
    except (OSError, http.client.HTTPException) as err:
        return False, None, None, classify(err)
    finally:
        conn.close()


def classify(err: BaseException) -> str:
    if isinstance(err, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return "timeout"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, ConnectionResetError):
        return "reset"
    if isinstance(err, OSError) and err.errno is not None:
        return {113: "no-route", 101: "unreachable", 111: "refused", 104: "reset"}.get(err.errno, f"errno-{err.errno}")
    return type(err).__name__


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--target", action="append", required=True, help="NAME=URL (http://host:port/path or tcp://host:port)"
    )
    p.add_argument("--status", action="append", default=[], help="NAME=STATUS: the healthy HTTP status (200)")
    p.add_argument("--contains", action="append", default=[], help="NAME=TEXT: a healthy HTTP answer contains TEXT")
    p.add_argument("--interval", type=float, default=0.1, help=f"seconds between attempts (>= {MIN_INTERVAL})")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds one attempt may take")
    p.add_argument("--max-duration", type=float, required=True, help="stop after this many seconds")
    p.add_argument("--max-count", type=int, required=True, help="stop after this many attempts per target")
    p.add_argument("--out", help="write here instead of stdout")
    p.add_argument("--no-stdin-watch", action="store_true", help="do not stop when stdin closes")
    args = p.parse_args(argv)
    if args.interval < MIN_INTERVAL:
        p.error(f"--interval {args.interval} is below {MIN_INTERVAL}s")
    if args.max_duration <= 0 or args.max_count <= 0 or args.timeout <= 0:
        p.error("--max-duration, --max-count and --timeout must be positive")
    targets = {}
    for spec in args.target:
        name, sep, url = spec.partition("=")
        if not sep or not name or urlsplit(url).scheme not in ("http", "tcp"):
            p.error(f"--target {spec!r}: expected NAME=http://HOST:PORT/ or NAME=tcp://HOST:PORT")
        targets[name] = url
    args.targets = targets
    args.statuses = {}
    args.bodies = {}
    for spec in args.status:
        name, _sep, value = spec.partition("=")
        if name not in targets or not value.isdigit():
            p.error(f"--status {spec!r}: expected NAME=STATUS for a --target NAME")
        args.statuses[name] = int(value)
    for spec in args.contains:
        name, sep, text = spec.partition("=")
        if name not in targets or not sep or not text:
            p.error(f"--contains {spec!r}: expected NAME=TEXT for a --target NAME")
        args.bodies[name] = text.encode()
    return args


def run(args: argparse.Namespace, out: Output, stop: threading.Event) -> str:
    start = time.monotonic()
    deadline = start + args.max_duration
    in_flight = math.ceil(args.timeout / args.interval) + 1
    counts = dict.fromkeys(args.targets, 0)
    out.write(
        {
            "type": "start",
            "mono": start,
            "wall": time.time(),
            "pid": os.getpid(),
            "targets": args.targets,
            "interval": args.interval,
            "timeout": args.timeout,
            "max_duration": args.max_duration,
            "max_count": args.max_count,
        }
    )
    reason = {"value": "max-duration"}

    def one(name: str, url: str, seq: int, slots: threading.BoundedSemaphore) -> None:
        try:
            t = time.monotonic()
            ok, mac, status, err = attempt(url, args.timeout, args.statuses.get(name, 200), args.bodies.get(name))
            dur = time.monotonic() - t
            out.write(
                {"type": "attempt", "target": name, "seq": seq, "t": t, "dur": dur, "ok": ok,
                 "mac": mac, "status": status, "err": err}
            )  # fmt: skip
        finally:
            slots.release()

    def schedule(name: str, url: str) -> None:
        slots = threading.BoundedSemaphore(in_flight)
        workers = []
        k = 0
        while not stop.is_set():
            at = start + k * args.interval
            if at >= deadline:
                break
            if k >= args.max_count:
                reason["value"] = "max-count"
                break
            if stop.wait(max(0.0, at - time.monotonic())):
                break
            if not slots.acquire(timeout=args.timeout + 1.0):
                continue  # cannot happen with the bound above; never block forever
            w = threading.Thread(target=one, args=(name, url, k, slots), daemon=True)
            w.start()
            workers.append(w)
            workers = [x for x in workers if x.is_alive()]
            counts[name] = k + 1
            # After a stall (the machine was busy) skip the missed slots
            # instead of firing them in a burst.
            k = max(k + 1, int((time.monotonic() - start) / args.interval))
        for w in workers:
            w.join(args.timeout + 1.0)

    threads = [threading.Thread(target=schedule, args=item, daemon=True) for item in args.targets.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()) + args.timeout + 2.0)
    if stop.is_set():
        reason["value"] = stop_reason.get("value", "stopped")
    stop.set()
    out.write({"type": "end", "reason": reason["value"], "mono": time.monotonic(), "attempts": counts})
    return reason["value"]


stop_reason: dict[str, str] = {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stream = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_reason["value"] = "stopped"
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not args.no_stdin_watch:

        def watch_stdin() -> None:
            sys.stdin.buffer.read()  # returns at end of file: our parent is gone or done
            stop_reason.setdefault("value", "stdin-closed")
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        run(args, Output(stream), stop)
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
