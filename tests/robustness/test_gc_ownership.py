"""``dcnlab gc`` judges only what it can prove is a dead run's.

Network namespaces are machine-wide, run directories are per
``DCNLAB_STATE`` (and per ``$HOME``): a ``dcnlab-*`` namespace with no run
directory *here* may be another state directory's live fleet. Only
``--dry-run`` is used: a real gc from a sandbox would judge every
``dcnlab-*`` namespace on this shared machine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.robustness.sandbox import Sandbox


@pytest.fixture
def foreign_namespace(sandbox: Sandbox) -> Iterator[str]:
    """A ``dcnlab-*`` namespace this sandbox has no run directory for."""
    name = f"dcnlab-{sandbox.name}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def test_gc_keeps_a_namespace_in_use_it_has_no_run_for(sandbox: Sandbox, foreign_namespace: str) -> None:
    with subprocess.Popen(["ip", "netns", "exec", foreign_namespace, "sleep", "60"]) as holder:
        try:
            result = sandbox.cli("gc", "--dry-run")
        finally:
            holder.kill()
    assert result.returncode == 0, result.stderr
    assert f"kept: namespace {foreign_namespace} (no run directory here, but pid " in result.stdout, result.stdout
    assert f"would remove: namespace {foreign_namespace}" not in result.stdout


def test_gc_would_remove_an_empty_namespace_it_has_no_run_for(sandbox: Sandbox, foreign_namespace: str) -> None:
    result = sandbox.cli("gc", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"would remove: namespace {foreign_namespace} (no run directory)" in result.stdout, result.stdout
