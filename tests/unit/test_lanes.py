"""./dev test's two lanes on two pytest-xdist workers (tests/lanes.py, the root conftest)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.lanes import OWN_VMS, SESSION_FLEET, lane

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "fixtures", "expected"),
    [
        ("suites/failover/test_failover.py", ("fleet", "cluster"), SESSION_FLEET),
        ("tests/integration/test_faults.py", ("cluster", "fleet", "tmp_path"), SESSION_FLEET),
        ("tests/integration/test_cli.py", ("fleet_name",), OWN_VMS),
        ("tests/robustness/test_boot_failures.py", ("vm_sandbox",), OWN_VMS),
        ("tests/meta/test_bad_specs.py", (), OWN_VMS),
        ("tests/unit/test_spec.py", ("tmp_path",), None),
        # A unit test's own fixture of that name is not the session's: still the session lane, harmlessly.
        ("tests/unit/test_plugin_phases.py", ("fleet",), SESSION_FLEET),
        ("tests/integrationx/test_x.py", (), None),
    ],
)
def test_lane(path: str, fixtures: tuple[str, ...], expected: str | None) -> None:
    assert lane(ROOT / path, ROOT, fixtures) == expected


def _dev_pytest_argv(
    *args: str, command: str = "test", cores: int | None = None, bin_dir: Path | None = None
) -> list[str]:
    """The pytest argv ``./dev COMMAND`` would exec for ``args`` (its setup
    skipped), on a host of ``cores`` cores when given (an ``nproc`` in ``bin_dir``)."""
    script = (ROOT / "dev").read_text()
    functions = script[script.index("names_a_path() {") : script.index("cmd=${1:-help}")]
    start = script.index(f"  {command})\n")
    branch = script[start : script.index(";;", start)]
    body = branch.split("\n", 2)[2].replace("exec $VENV/bin/pytest", "emit")
    emit = "emit() { printf '%s\\n' \"$@\"; exit 0; }"
    shell = f'set -euo pipefail\n{functions}\n{emit}\nrun() {{\n{body}\n}}\nrun "$@"\n'
    env = dict(os.environ)
    if cores is not None:
        assert bin_dir is not None
        nproc = bin_dir / "nproc"
        nproc.write_text(f"#!/bin/sh\necho {cores}\n")
        nproc.chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    out = subprocess.run(
        ["bash", "-c", shell, "dev", *args], capture_output=True, text=True, check=True, timeout=30, env=env
    )
    return out.stdout.splitlines()


def test_dev_test_runs_two_lanes_by_default() -> None:
    argv = _dev_pytest_argv("--durations=40")
    assert argv[:2] == ["tests", "suites"]
    assert argv[2:6] == ["-m", "(not certification or smoke) and not lab", "-n", "2"]
    assert argv[6:9] == ["--dist", "loadgroup", "--durations=40"]


@pytest.mark.parametrize("args", [("-n", "0"), ("-n3",), ("-p", "no:xdist"), ("--dist=load",), ("tests/unit",)])
def test_dev_test_leaves_the_workers_to_the_caller(args: tuple[str, ...]) -> None:
    assert "loadgroup" not in _dev_pytest_argv(*args)


@pytest.mark.parametrize(
    ("cores", "workers"),
    [
        (2, ["-n", "0"]),
        (7, ["-n", "0"]),
        (8, ["-n", "2", "--maxschedchunk", "1"]),
        (17, ["-n", "4", "--maxschedchunk", "1"]),
    ],
)
def test_dev_certify_runs_one_worker_per_four_cores(cores: int, workers: list[str], tmp_path: Path) -> None:
    argv = _dev_pytest_argv("-m", "smoke", command="certify", cores=cores, bin_dir=tmp_path)
    assert argv == ["suites", *workers, "-m", "smoke"]


@pytest.mark.parametrize("args", [("-n", "0"), ("-p", "no:xdist"), ("suites/image",)])
def test_dev_certify_leaves_the_workers_to_the_caller(args: tuple[str, ...], tmp_path: Path) -> None:
    argv = _dev_pytest_argv(*args, command="certify", cores=16, bin_dir=tmp_path)
    assert "--maxschedchunk" not in argv
    assert argv.count("-n") == args.count("-n")
