"""Teardown of an embedded run kills what still runs inside its namespace.

CI caught an ``nc -z`` probe of a guest's SSH port outliving a SIGKILLed run
and ``dcnlab gc``: the probe names neither the run directory nor the run id,
so only its namespace ties it to the run. A real namespace and a real process
stand in for the run's (no guest, no traffic)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from dcnlab.core.proc import run_local
from dcnlab.core.wait import wait_until
from dcnlab.fleet.libvirt.hypervisor import delete_netns, kill_netns_processes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 to make a namespace"
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"dcnlab-ut{os.getpid()}"
    run_local(["ip", "netns", "add", name], timeout=30)
    try:
        yield name
    finally:
        delete_netns(name)


def test_every_process_in_the_namespace_is_killed(netns: str) -> None:
    with (
        subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "60"]) as inside,
        subprocess.Popen(["sleep", "60"]) as outside,
    ):
        try:
            # `ip netns exec` enters the namespace, then execs sleep in place (same pid).
            wait_until(
                lambda: str(inside.pid) in run_local(["ip", "netns", "pids", netns], timeout=10).stdout.split(),
                timeout=10,
                what=f"pid {inside.pid} inside {netns}",
            )
            assert kill_netns_processes(netns) == [inside.pid]
            assert inside.wait(timeout=10) == -9
            assert outside.poll() is None, "a process outside the namespace was killed"
        finally:
            outside.kill()
            inside.kill()


def test_a_missing_namespace_kills_nothing() -> None:
    assert kill_netns_processes(f"dcnlab-absent{os.getpid()}") == []
