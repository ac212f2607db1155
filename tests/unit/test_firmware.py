"""Which firmware a disk boots with, from its partition table: synthetic
tables for each shape, one read back through qemu-img from a qcow2."""

from __future__ import annotations

import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from dcnlab.core.errors import ConfigError
from dcnlab.image.firmware import BIOS_BOOT, ESP, HEAD_SECTORS, SECTOR, PartitionTable, choose, parse_head, read_head

LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"


def gpt(*types: str) -> bytes:
    head = bytearray(HEAD_SECTORS * SECTOR)
    head[446 + 4] = 0xEE  # protective MBR entry
    head[510:512] = b"\x55\xaa"
    head[SECTOR : SECTOR + 8] = b"EFI PART"
    struct.pack_into("<QII", head, SECTOR + 72, 2, 128, 128)
    for i, t in enumerate(types):
        start = 2 * SECTOR + i * 128
        head[start : start + 16] = uuid.UUID(t).bytes_le
    return bytes(head)


def mbr(active: bool, kind: int = 0x83) -> bytes:
    head = bytearray(HEAD_SECTORS * SECTOR)
    head[446] = 0x80 if active else 0
    head[446 + 4] = kind
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def test_a_gpt_with_both_boot_partitions_boots_either_way_and_auto_picks_bios() -> None:
    table = parse_head(gpt(str(BIOS_BOOT), str(ESP), LINUX))
    assert table == PartitionTable("gpt", bios_boot=True, esp=True)
    assert choose(table, "auto", "edge.raw")[0] == "bios"
    assert choose(table, "uefi", "edge.raw")[0] == "uefi"
    assert "BIOS boot partition and an EFI system partition" in choose(table, "auto", "edge.raw")[1]


def test_an_esp_only_disk_is_uefi_and_refused_under_bios() -> None:
    table = parse_head(gpt(str(ESP), LINUX))
    assert choose(table, "auto", "minimal.raw") == ("uefi", "GPT with an EFI system partition: UEFI only")
    with pytest.raises(ConfigError, match=r"minimal.raw cannot boot under BIOS: GPT with an EFI system partition; use"):
        choose(table, "bios", "minimal.raw")


def test_mbr_and_nothing() -> None:
    assert parse_head(mbr(active=True)) == PartitionTable("mbr", bios_boot=True, esp=False)
    assert choose(parse_head(mbr(active=True)), "auto", "old.img")[0] == "bios"
    nothing = parse_head(bytes(HEAD_SECTORS * SECTOR))
    assert nothing.kind == "none"
    with pytest.raises(ConfigError, match=r"old\.img has no partition table: nothing a firmware can boot"):
        choose(nothing, "auto", "old.img")
    with pytest.raises(ConfigError, match="GPT with no boot partition"):
        choose(parse_head(gpt(LINUX)), "auto", "data.img")
    with pytest.raises(ConfigError, match="choose one of auto, bios, uefi"):
        choose(nothing, "efi", "x")


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img comes with ./dev setup")
def test_the_head_is_read_through_qemu_img_as_the_guest_sees_it(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(gpt(str(BIOS_BOOT), str(ESP), LINUX) + bytes(1024 * 1024))
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    head = read_head(qcow2, "qcow2")
    assert len(head) == HEAD_SECTORS * SECTOR
    assert parse_head(head) == PartitionTable("gpt", bios_boot=True, esp=True)
