"""``dcnlab gc``: remove what killed runs left behind, and nothing else.

A run is garbage when its record says it was not handed to the user and the
process that owned it is gone (PID *and* start time, so a recycled PID does
not keep garbage alive). Namespaces named ``dcnlab-*`` with no run directory
are garbage too: only dcnlab makes them, and every live run has a directory
(a lab's, ``dcnlab-NAME.SUFFIX``, belong to fleet NAME's).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dcnlab.core import paths
from dcnlab.core.errors import DcnlabError
from dcnlab.core.owner import RunRecord
from dcnlab.core.proc import run_local
from dcnlab.fleet.fleet import _teardown, run_dir_of
from dcnlab.fleet.libvirt.hypervisor import delete_netns, netns_pids


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def collect(dry_run: bool = False, progress: Callable[[str], None] = print) -> GcReport:
    report = GcReport()
    runs = paths.runs_dir()
    names = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.exists() else []
    for name in names:
        run_dir = run_dir_of(name)
        try:
            record = RunRecord.load(run_dir)
        except (OSError, ValueError, TypeError, json.JSONDecodeError):
            # Killed between mkdir and the first save: only the directory exists.
            report.removed.append(f"{name} (incomplete run directory)")
            if not dry_run:
                shutil.rmtree(run_dir, ignore_errors=True)
                delete_netns(f"dcnlab-{name}")
            continue
        if not record.abandoned():
            why = (
                "kept by the user"
                if record.persistent
                else f"owner pid {record.owner.pid if record.owner else '?'} alive"
            )
            report.kept.append(f"{name} ({why})")
            continue
        report.removed.append(f"{name} (run {record.run_id})")
        if dry_run:
            continue
        try:
            _teardown(record, run_dir, None, progress)
        except DcnlabError as err:
            report.errors.append(str(err))
    live = {f"dcnlab-{p.name}" for p in runs.iterdir()} if runs.exists() else set()
    for ns in _namespaces():
        # A lab's namespaces are the fleet's with a dot suffix (dcnlab-F.ul, dcnlab-F.h2).
        if ns.startswith("dcnlab-") and ns.split(".", 1)[0] not in live:
            # Namespaces are machine-wide, run directories are per DCNLAB_STATE
            # (and per $HOME): processes inside mean another state's live fleet.
            pids = netns_pids(ns)
            if pids:
                report.kept.append(f"namespace {ns} (no run directory here, but pid {', '.join(map(str, pids))} in it)")
                continue
            report.removed.append(f"namespace {ns} (no run directory)")
            if not dry_run:
                delete_netns(ns)
    return report


def _namespaces() -> list[str]:
    out = run_local(["ip", "netns", "list"], timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


__all__ = ["GcReport", "collect", "remnants"]


def remnants(name: str) -> list[str]:
    """What of fleet ``name`` still exists on this machine (empty when clean):
    its run directory, its namespace, any process naming its run directory."""
    found = []
    run_dir = run_dir_of(name)
    if run_dir.exists():
        found.append(f"run directory {run_dir}")
    for ns in _namespaces():
        if ns.split(".", 1)[0] == f"dcnlab-{name}":
            found.append(f"namespace {ns}")
    needle = (str(run_dir) + "/").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"process {entry.name}: {text}")
    return found
