"""The robustness matrix (issue 9): bad inputs and faults of the harness's own,
each run through the entry point a user runs, each expecting one clear error
and nothing left behind. Most rows boot no VM; those in test_boot_failures,
test_interrupts and test_libvirtd_dies boot one node each (``vm_sandbox``)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.robustness.sandbox import Child, Sandbox

HERE = Path(__file__).parent
_serial = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "robustness: bad inputs and harness faults: clear errors, nothing leaked")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.robustness)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A private state and cache directory and a fleet name, for child runs
    and for this process's own look at what they left (``remnants``).

    Its root is a short directory of its own, not ``tmp_path``: the embedded
    libvirtd's socket lies under the state directory, a Unix socket's path has
    at most 107 bytes, and under pytest-xdist ``tmp_path`` (``.../popen-gwN/<test
    name>``) goes past that."""
    root = Path(tempfile.mkdtemp(prefix="dcnlab-rb-"))
    box = Sandbox.create(root, f"rb{os.getpid() % 100000}x{next(_serial)}")
    monkeypatch.setenv("DCNLAB_STATE", str(box.state))
    monkeypatch.setenv("DCNLAB_CACHE", str(box.cache))
    yield box
    if box.leaks():
        box.clean_up()  # the test has already failed on them
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid qcow2 whose MBR has one active, empty partition: it passes the
    image and firmware checks (dcnlab.image.firmware reads it as BIOS-bootable) yet
    boots nothing: SeaBIOS finds no boot code (test_boot_failures relies on it)."""
    folder = tmp_path_factory.mktemp("images")
    raw, disk = folder / "tiny.raw", folder / "tiny.qcow2"
    subprocess.run(["truncate", "-s", "16M", str(raw)], check=True, timeout=60)
    subprocess.run(["sfdisk", "-q", str(raw)], input="label: dos\n,,L,*\n", text=True, check=True, timeout=60)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(disk)], check=True, timeout=60)
    raw.unlink()
    return disk


@pytest.fixture
def vm_sandbox(dcn_image: Any, sandbox: Sandbox) -> VmSandbox:
    """A sandbox whose runs boot real VMs: the session's default image (built
    or cached before the sandbox hid the cache) and the machine's accelerator
    verdict, so no run builds an image or probes KVM again."""
    real_cache = Path(dcn_image.disk).parents[2]  # CACHE/images/NAME-DIGEST/disk.qcow2
    sandbox.cache.mkdir(parents=True, exist_ok=True)
    if (real_cache / "accel.json").is_file():
        shutil.copy(real_cache / "accel.json", sandbox.cache / "accel.json")
    return VmSandbox(sandbox, Path(dcn_image.disk))


@dataclass(frozen=True)
class VmSandbox:
    box: Sandbox
    disk: Path  # the default image's disk; its kernel and initrd lie next to it

    @property
    def name(self) -> str:
        return self.box.name

    def spawn(self, *args: str, test: str) -> Child:
        """A one-node pytest run of ``test`` on the default image."""
        return self.box.spawn_pytest(
            "--dcn-image", str(self.disk), "--dcn-nodes", "1", *args, test=test, path=self.box.vm_path()
        )
