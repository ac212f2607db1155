"""Disk-booted images that never answer: under UEFI (each node has an NVRAM
file, which must go with the run, on teardown and by ``dcnlab gc`` after a
SIGKILL), and an image that reads none of the identity channels offered
(the error names them, with the console's last lines)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from dcnlab.image.builder import BuiltImage, build_image
from tests.robustness.conftest import VmSandbox
from tests.robustness.sandbox import setup_error

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
CLEANUP = 90.0
# Long enough that the console shows a node that is up: under TCG here three
# dcn-debian-disk-smbios nodes booting together answered SSH in 44-58 s, one
# alone after a power cycle in 30 s and after a reboot in 48 s (CI, 2026-12-06);
# the login prompt comes right after ssh.service starts. Twice the slowest.
BOOTED = 120


@pytest.fixture(scope="session")
def esp_only_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A qcow2 whose GPT holds one empty FAT32 EFI system partition: the
    firmware check reads it as UEFI-only, OVMF starts on it and finds no
    loader, so the node runs its firmware only and never answers SSH."""
    folder = tmp_path_factory.mktemp("images")
    raw, disk = folder / "esp.raw", folder / "esp.qcow2"
    start, sectors = 2048, 96 * 2048  # 96 MiB: above FAT32's least cluster count
    subprocess.run(["truncate", "-s", "100M", str(raw)], check=True, timeout=60)
    table = f"label: gpt\nstart={start}, size={sectors}, type={ESP_TYPE}, name=esp\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=table, text=True, check=True, timeout=60)
    mkfs = ["mkfs.vfat", "-F", "32", "-s", "1", "-n", "EMPTYESP", f"--offset={start}", str(raw), str(sectors // 2)]
    subprocess.run(mkfs, check=True, timeout=60, capture_output=True)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(disk)], check=True, timeout=60)
    raw.unlink()
    return disk


@pytest.fixture(scope="session")
def smbios_image() -> BuiltImage:
    """The stand-in that reads SMBIOS credentials only (no cloud-init), built
    or taken from the cache before any sandbox hides it."""
    return build_image("dcn-debian-disk-smbios", progress=print)


def test_a_uefi_node_that_never_boots_fails_and_leaves_no_nvram(vm_sandbox: VmSandbox, esp_only_image: Path) -> None:
    box = vm_sandbox.box
    args = ("--dcn-image", str(esp_only_image), "--dcn-nodes", "1", "--dcn-boot-timeout", "30")
    result = box.pytest(*args, path=box.vm_path())
    assert "nodes boot their own boot loader under UEFI (GPT with an EFI system partition: UEFI only)" in (
        result.stdout + result.stderr
    )
    error = setup_error(result)
    assert error.startswith("dcnlab.core.errors.ProvisionError: waiting for SSH failed on 1 of 1:"), error
    # The image says nothing of its identity: both channels were offered, and the error says what each needs.
    assert "Identity channels offered: cloud-init: a cloud-init NoCloud seed" in error, error
    assert "smbios: SMBIOS systemd credentials" in error, error
    assert box.leaks() == []


def test_sigkill_of_a_uefi_run_then_gc_removes_its_nvram(vm_sandbox: VmSandbox, esp_only_image: Path) -> None:
    box = vm_sandbox.box
    child = box.spawn_pytest(
        "--dcn-image", str(esp_only_image), "--dcn-nodes", "1", "--dcn-boot-timeout", "600", path=box.vm_path()
    )
    nvram = box.state / "fleets" / box.name / "nvram" / "dcn1_VARS.fd"
    try:
        child.wait_for(f"fleet {box.name}: dcn1 started", timeout=180)
        assert nvram.is_file(), f"no NVRAM file at {nvram} for a running UEFI node"
        child.signal(signal.SIGKILL)
        code = child.finish(timeout=CLEANUP)
    except BaseException:
        child.kill()
        raise
    assert code == -signal.SIGKILL, f"exit {code}, not killed:\n{child.text}"
    assert nvram.is_file(), "the NVRAM file went before gc: the kill left gc nothing to prove"
    gc = box.cli("gc", path=box.vm_path())
    assert gc.returncode == 0, f"dcnlab gc failed ({gc.returncode}):\n{gc.stdout}\n{gc.stderr}"
    assert not nvram.exists()
    assert box.leaks() == []


def test_an_image_that_reads_no_channel_offered_fails_naming_them(
    vm_sandbox: VmSandbox, smbios_image: BuiltImage
) -> None:
    # The image reads SMBIOS credentials only; offered only a cloud-init seed,
    # it boots to a login prompt with no address and no key for the harness.
    box = vm_sandbox.box
    args = ("--dcn-image", str(smbios_image.disk), "--dcn-nodes", "1", "--dcn-identity", "cloud-init")
    # The child waits BOOTED for SSH, then tears down: give it both, and the boot before.
    result = box.pytest(*args, "--dcn-boot-timeout", str(BOOTED), path=box.vm_path(), timeout=BOOTED + 2 * CLEANUP)
    error = setup_error(result)
    assert error.startswith("dcnlab.core.errors.ProvisionError: waiting for SSH failed on 1 of 1:"), error
    assert "console log tail (" in error
    assert "login:" in error, f"the console tail does not show the node up:\n{error}"
    assert "Identity channels offered: cloud-init: a cloud-init NoCloud seed" in error, error
    assert "smbios:" not in error.split("Identity channels offered:")[1], error
    assert "--dcn-identity" in error
    assert box.leaks() == []
