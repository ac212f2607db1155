"""No libvirt to be had: an unreachable ``--libvirt-uri``, libvirtd not
installed, and an embedded libvirtd that dies while it starts. Each is one
clear error, quickly, and the run's namespace and daemons are gone after it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.robustness.sandbox import NOWHERE, Sandbox, cli_error, setup_error

NOWHERE_SOCKET = NOWHERE.split("socket=", 1)[1]


@pytest.mark.parametrize(
    ("uri", "cause"),
    [
        (NOWHERE, f"Failed to connect socket to '{NOWHERE_SOCKET}': No such file or directory"),
        # libvirt hands an unknown driver to the daemon, which is not running here.
        ("bogus:///system", "Failed to connect socket to"),
    ],
    ids=["missing-socket", "unknown-driver"],
)
def test_cli_unreachable_libvirt(uri: str, cause: str, sandbox: Sandbox, tiny_image: Path) -> None:
    # --accel auto: the accelerator is decided (and cached) before libvirt is reached.
    result = sandbox.cli("fleet", "up", "--name", sandbox.name, "--image", str(tiny_image), "--libvirt-uri", uri)
    error = cli_error(result)
    assert f"cannot reach libvirt at {uri}: " in error
    assert cause in error
    assert "Check the URI and that libvirtd runs" in error
    assert f"fleet {sandbox.name}: removed" in result.stderr
    assert "incomplete" not in result.stderr
    assert sandbox.leaks() == []


def test_pytest_unreachable_libvirt_is_one_message(sandbox: Sandbox, tiny_image: Path) -> None:
    result = sandbox.pytest("--dcn-image", str(tiny_image), "--dcn-libvirt-uri", NOWHERE, "--dcn-accel", "tcg")
    error = setup_error(result)
    assert error.startswith(f"dcnlab.core.errors.HypervisorError: cannot reach libvirt at {NOWHERE}: ")
    assert "or omit the URI to use the embedded hypervisor" in error
    assert sandbox.leaks() == []


def test_cli_libvirt_not_installed(sandbox: Sandbox, tiny_image: Path) -> None:
    # A PATH holding every tool the harness needs except the libvirt daemons.
    bindir = sandbox.root / "no-libvirt-bin"
    bindir.mkdir()
    for tool in ("qemu-system-x86_64", "qemu-img", "ip", "unshare", "nc", "mount"):
        found = shutil.which(tool)
        assert found is not None, f"{tool} is not installed here"
        (bindir / tool).symlink_to(found)
    result = sandbox.cli(
        "fleet", "up", "--name", sandbox.name, "--image", str(tiny_image), "--accel", "tcg", path=str(bindir)
    )
    error = cli_error(result)
    assert "libvirtd, virtlogd not installed: run `./dev setup`" in error
    assert sandbox.leaks() == []


@pytest.fixture
def dying_libvirtd(sandbox: Sandbox) -> str:
    """A PATH whose libvirtd fails the way a broken install does: at once, saying why."""
    bindir = sandbox.root / "dying-bin"
    bindir.mkdir()
    fake = bindir / "libvirtd"
    fake.write_text("#!/bin/sh\necho 'libvirtd (robustness test): cannot initialize the QEMU driver' >&2\nexit 1\n")
    fake.chmod(0o755)
    return f"{bindir}:{os.environ['PATH']}"


def test_cli_embedded_libvirtd_dying_at_start(sandbox: Sandbox, tiny_image: Path, dying_libvirtd: str) -> None:
    # Creates the fleet's namespace and starts the supervisor and a real
    # virtlogd in it, then libvirtd dies: everything must go, quickly.
    start = time.monotonic()
    result = sandbox.cli(
        "fleet", "up", "--name", sandbox.name, "--image", str(tiny_image), "--accel", "tcg", path=dying_libvirtd
    )
    took = time.monotonic() - start
    error = cli_error(result)
    assert error.startswith("dcnlab: error: the embedded libvirtd exited during start-up:")
    assert "libvirtd (robustness test): cannot initialize the QEMU driver" in error  # the log tail says why
    assert f"fleet {sandbox.name}: removed" in result.stderr
    # Its start-up deadline is 90 s; a daemon that is gone is not waited for.
    assert took < 30, f"took {took:.0f}s to notice libvirtd was gone"
    assert sandbox.leaks() == []


def test_pytest_embedded_libvirtd_dying_at_start(sandbox: Sandbox, tiny_image: Path, dying_libvirtd: str) -> None:
    result = sandbox.pytest("--dcn-image", str(tiny_image), "--dcn-accel", "tcg", path=dying_libvirtd)
    error = setup_error(result)
    assert error.startswith(
        "dcnlab.fleet.libvirt.hypervisor.HypervisorExited: the embedded libvirtd exited during start-up:"
    )
    assert "libvirtd (robustness test): cannot initialize the QEMU driver" in error
    assert sandbox.leaks() == []
