"""A missing or corrupt image is refused before anything is created, naming
the file and what to pass instead (``dcnlab fleet up --image``, ``pytest
--dcn-image``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.robustness.sandbox import NOWHERE, Sandbox, cli_error, usage_error

MISSING = "/nonexistent/dcnlab-robustness/dcn.qcow2"
# Should an image be wrongly accepted, the run fails at connect: nothing boots.
CLI_SAFETY = ("--libvirt-uri", NOWHERE, "--accel", "tcg")
PYTEST_SAFETY = ("--dcn-libvirt-uri", NOWHERE, "--dcn-accel", "tcg")


def test_cli_refuses_a_missing_image(sandbox: Sandbox) -> None:
    error = cli_error(sandbox.cli("fleet", "up", "--name", sandbox.name, "--image", MISSING, *CLI_SAFETY))
    assert f"disk image {MISSING} does not exist; pass the path of a qcow2 or raw image file" in error
    assert sandbox.leaks() == []


def test_pytest_refuses_a_missing_image(sandbox: Sandbox) -> None:
    error = usage_error(sandbox.pytest("--dcn-image", MISSING, *PYTEST_SAFETY))
    assert f"argument --dcn-image: {MISSING}: no such image file (build one with `dcnlab image build`)" in error
    assert sandbox.leaks() == []


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, timeout=60, capture_output=True)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def truncated_qcow2_header(path: Path) -> None:
    _qemu_img("create", "-q", "-f", "qcow2", str(path), "16M")
    path.write_bytes(path.read_bytes()[:100])


def qcow2_with_its_data_cut_off(path: Path) -> None:
    raw = path.with_suffix(".raw")
    raw.write_bytes(os.urandom(4 * 1024 * 1024))
    _qemu_img("convert", "-O", "qcow2", str(raw), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def qcow2_whose_backing_file_is_missing(path: Path) -> None:
    _qemu_img("create", "-q", "-u", "-f", "qcow2", "-b", "/nonexistent/base.qcow2", "-F", "qcow2", str(path), "16M")


# qemu-img info reads the header only: the last two pass it, and only
# `qemu-img check` (dcnlab/image/builder.py _check_qcow2) keeps them from a boot
# that would never come up.
CORRUPT = [
    pytest.param(random_bytes, "is not a disk image (no partition table or filesystem found)", id="random-bytes"),
    pytest.param(empty_file, "is not a disk image (no partition table or filesystem found)", id="empty-file"),
    pytest.param(truncated_qcow2_header, "qemu-img: Could not open", id="truncated-qcow2-header"),
    pytest.param(qcow2_with_its_data_cut_off, "qemu-img check", id="qcow2-data-cut-off"),
    pytest.param(qcow2_whose_backing_file_is_missing, "base.qcow2", id="missing-backing-file"),
]


@pytest.mark.parametrize(("make", "needle"), CORRUPT)
def test_cli_refuses_a_corrupt_image(
    make: Callable[[Path], None], needle: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    image = tmp_path / "dcn.qcow2"
    make(image)
    result = sandbox.cli("fleet", "up", "--name", sandbox.name, "--image", str(image), *CLI_SAFETY)
    assert sandbox.leaks() == []
    error = cli_error(result)
    assert str(image) in error
    assert needle in error


@pytest.mark.parametrize(("make", "needle"), CORRUPT)
def test_pytest_refuses_a_corrupt_image_before_any_fixture(
    make: Callable[[Path], None], needle: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    image = tmp_path / "dcn.qcow2"
    make(image)
    result = sandbox.pytest("--dcn-image", str(image), *PYTEST_SAFETY)
    assert sandbox.leaks() == []
    error = usage_error(result)
    assert error.startswith(f"ERROR: --dcn-image: {image}")
    assert needle in error
