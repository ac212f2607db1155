"""A full cache directory (``DCNLAB_CACHE`` on a 1 MiB tmpfs, filled up):
an image build stops with "no space" naming the directory and the way out,
leaves no partial image a later build could take for a cache hit, and a
fleet's start-up does not trip over the accelerator cache it cannot write."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcnlab.image.builder import DEFAULT_RECIPE, load_recipe, recipe_digest
from tests.robustness.sandbox import NOWHERE, Sandbox, cli_error


@pytest.fixture
def full_cache(sandbox: Sandbox) -> Iterator[Path]:
    """The sandbox's cache directory, a 1 MiB tmpfs; fill it with :func:`fill`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    sandbox.cache.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M,mode=0755", "dcnlab-robustness", str(sandbox.cache)],
        check=True,
        timeout=30,
    )
    try:
        yield sandbox.cache
    finally:
        done = subprocess.run(["umount", str(sandbox.cache)], check=False, timeout=30, capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "--lazy", str(sandbox.cache)], check=True, timeout=30)


def fill(directory: Path) -> None:
    """Take every free block of ``directory``'s filesystem."""
    free = os.statvfs(directory)
    (directory / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize))
    assert os.statvfs(directory).f_bavail == 0


def test_image_build_into_a_full_cache(sandbox: Sandbox, full_cache: Path) -> None:
    recipe = load_recipe(DEFAULT_RECIPE)
    images = full_cache / "images"
    # What a build killed half-way leaves: its temp dir, with a manifest and a
    # cut-off disk. It must never be served as the image.
    crashed = images / f".tmp-{recipe.name}-{recipe_digest(recipe)}-crashed"
    crashed.mkdir(parents=True)
    manifest = {"format": 1, "recipe": recipe.name, "digest": recipe_digest(recipe), "cmdline": "root=/dev/vda"}
    (crashed / "manifest.json").write_text(json.dumps({**manifest, "files": {"disk": "disk.qcow2"}}))
    (crashed / "disk.qcow2").write_bytes(b"QFI\xfb")
    fill(full_cache)

    result = sandbox.cli("image", "build")
    error = cli_error(result)
    assert f"free under {images}; an image build needs 3 GiB" in error
    assert "free space or set DCNLAB_CACHE elsewhere" in error

    assert not crashed.exists(), "a dead build's temp dir was left in the cache"
    left = sorted(p.name for p in images.iterdir() if not p.name.startswith(".lock-"))
    assert left == [], f"the failed build left {left} in {images}"
    listed = sandbox.cli("image", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("no images cached"), listed.stdout


def test_fleet_up_with_a_full_cache(sandbox: Sandbox, full_cache: Path, tiny_image: Path) -> None:
    # --accel auto caches its probe in the cache directory; a full one must
    # cost the run nothing but that cache.
    fill(full_cache)
    result = sandbox.cli("fleet", "up", "--name", sandbox.name, "--image", str(tiny_image), "--libvirt-uri", NOWHERE)
    error = cli_error(result)
    assert error.startswith(f"dcnlab: error: cannot reach libvirt at {NOWHERE}")
    accel = full_cache / "accel.json"
    assert f"cannot cache the probe result in {accel} (No space left on device)" in result.stderr
    assert not accel.exists()
    assert sandbox.leaks() == []
