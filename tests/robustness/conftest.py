"""The robustness matrix (issue 9): bad inputs and faults of the harness's own,
each run through the entry point a user runs, each expecting one clear error
and nothing left behind. The rows here boot no VM."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.sandbox import Sandbox

HERE = Path(__file__).parent
_serial = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "robustness: bad inputs and harness faults: clear errors, nothing leaked")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.robustness)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A private state and cache directory and a fleet name, for child runs
    and for this process's own look at what they left (``remnants``)."""
    box = Sandbox.create(tmp_path, f"rb{os.getpid() % 100000}x{next(_serial)}")
    monkeypatch.setenv("DCNLAB_STATE", str(box.state))
    monkeypatch.setenv("DCNLAB_CACHE", str(box.cache))
    yield box
    if box.leaks():
        box.clean_up()  # the test has already failed on them


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid, empty qcow2: accepted as an image, boots nothing (and no run
    in this directory gets as far as booting)."""
    disk = tmp_path_factory.mktemp("images") / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True, timeout=60)
    return disk
