"""The disk-booted recipe's layout and build pieces, without mmdebstrap or a
boot: the GPT written by sfdisk and the ESP by mkfs.vfat into a sparse file,
read back as the harness reads a user's disk (dcnlab.image.firmware)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dcnlab.core.errors import ConfigError
from dcnlab.image.builder import (
    GRUB_DONE,
    MIB_SECTORS,
    disk_layout,
    grub_install_once,
    load_recipe,
    parse_recipe,
    sfdisk_script,
)
from dcnlab.image.firmware import choose, parse_head, read_head


def test_the_layout_is_bios_boot_esp_root_mib_aligned_and_leaves_room_for_the_backup_gpt() -> None:
    bios, esp, root = disk_layout(3072, 64)
    assert (bios.start, bios.sectors) == (MIB_SECTORS, MIB_SECTORS)
    assert (esp.start, esp.sectors) == (2 * MIB_SECTORS, 64 * MIB_SECTORS)
    assert root.start == 66 * MIB_SECTORS
    assert all(p.start % MIB_SECTORS == 0 for p in (bios, esp, root))
    assert root.start + root.sectors <= 3072 * MIB_SECTORS - 33
    assert [p.number for p in (bios, esp, root)] == [1, 2, 3]
    assert sfdisk_script((bios, esp, root)).splitlines()[0] == "label: gpt"


def test_the_grub_install_init_mounts_the_esp_installs_for_both_firmwares_and_says_so() -> None:
    script = grub_install_once(disk_layout(3072, 64)[1])
    assert "mount /dev/vda2 /boot/efi" in script
    assert "grub-install --target=i386-pc /dev/vda" in script
    assert "--target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram" in script
    assert script.index("update-grub") < script.index(GRUB_DONE)
    assert "DCNLAB-GRUB-FAILED" in script  # printed on any failure (set -e), then power off


def test_the_disk_recipe_extends_the_default_without_losing_a_package() -> None:
    disk, base = load_recipe("dcn-debian-disk"), load_recipe("dcn-debian")
    assert disk.boot == "disk"
    assert base.boot == "kernel"
    assert set(base.packages) <= set(disk.packages)
    assert {"grub-pc-bin", "grub-efi-amd64-bin", "cloud-init"} <= set(disk.packages)
    assert [f.path for f in base.files] == [f.path for f in disk.files][: len(base.files)]


@pytest.mark.parametrize(
    ("boot", "fragment"),
    [
        ('mode = "uefi"', "'boot.mode' = 'uefi': use one of kernel, disk"),
        ('esp_size = "8M"', "'boot.esp_size' = '8M': use 34M (FAT32's least) to a quarter of disk_size"),
        ('esp_size = "2G"', "to a quarter of disk_size"),
    ],
)
def test_bad_boot_tables(tmp_path: Path, boot: str, fragment: str) -> None:
    text = f'name = "x"\nsuite = "bookworm"\ndisk_size = "3G"\n[packages]\ninclude = ["a1"]\n[boot]\n{boot}\n'
    with pytest.raises(ConfigError) as err:
        parse_recipe(text.encode(), tmp_path / "x.toml")
    assert fragment in str(err.value)


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("sfdisk", "mkfs.vfat", "qemu-img")), reason="./dev setup installs them"
)
def test_sfdisk_and_mkfs_vfat_write_a_disk_both_firmwares_can_boot(tmp_path: Path) -> None:
    layout = disk_layout(256, 40)
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(256 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(raw)], input=sfdisk_script(layout), text=True, check=True)
    esp = layout[1]
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-n", "DCNESP", f"--offset={esp.start}", str(raw), str(esp.sectors // 2)],
        check=True,
        capture_output=True,
    )
    table = parse_head(read_head(raw, "raw"))
    assert (table.kind, table.bios_boot, table.esp) == ("gpt", True, True)
    assert choose(table, "auto", "disk.raw")[0] == "bios"
    # The FAT32 boot sector sits at the ESP's first sector, labelled.
    with raw.open("rb") as f:
        f.seek(esp.start * 512)
        boot_sector = f.read(512)
    assert boot_sector[82:90] == b"FAT32   "
    assert boot_sector[71:82] == b"DCNESP     "
