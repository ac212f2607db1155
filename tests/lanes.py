"""Two lanes for ``./dev test`` on two pytest-xdist workers (``--dist loadgroup``).

The session fleet is one per worker: every test that uses it must run on the
same worker, or a second 3-node fleet boots and builds its cluster beside the
first. The tests that start VMs of their own (robustness sandboxes, the
integration tests' own fleets and hypervisors) mostly wait: for a boot
deadline to pass, a child run to clean up, a signal's effect. They go to the
other worker, one at a time, so at most one fleet of their own runs next to
the session's. Unit tests start no VM and run wherever a worker is free.

xdist hands the two groups to different workers: it orders groups by size and
gives each worker one before either gets a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SESSION_FLEET = "session-fleet"
OWN_VMS = "own-vms"
# Test trees whose tests that do not use the session fleet start VMs of their own.
OWN_VM_TREES = (Path("tests/integration"), Path("tests/robustness"), Path("tests/meta"))


def lane(path: Path, root: Path, fixturenames: Iterable[str]) -> str | None:
    """The xdist group of the test at ``path`` (``root``: the repository) using
    ``fixturenames``; None for a test that starts no VM."""
    if "fleet" in fixturenames:  # the session fleet: every cluster fixture stands on it
        return SESSION_FLEET
    if any(path.is_relative_to(root / tree) for tree in OWN_VM_TREES):
        return OWN_VMS
    return None
