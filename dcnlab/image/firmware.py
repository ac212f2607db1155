"""Which firmware a disk image boots with, read from its partition table.

Disk-booted images carry their own bootloader: a GPT with a BIOS boot
partition (GRUB's core image, for SeaBIOS) and/or an EFI system partition
(for OVMF). RHEL for Edge raw/ami/vsphere and bootc-image-builder disks carry
both; ``minimal-raw`` only the ESP (osbuild/images, see docs/facts.md). An
MBR disk with an active partition boots under BIOS. ``auto`` picks BIOS when
the disk can boot that way (no NVRAM file per domain, and SeaBIOS starts
fastest), else UEFI.

The first 34 sectors (protective MBR, GPT header, 128 entries) are enough to
decide; :func:`read_head` gets them through ``qemu-img dd`` so a qcow2 is read
as the guest would see it, without booting anything.
"""

from __future__ import annotations

import functools
import json
import struct
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from dcnlab.core.errors import ConfigError
from dcnlab.core.proc import run_local

FIRMWARES = ("bios", "uefi")
# How disk-booted images boot: from their partition table, or forced (FleetSpec.firmware, --dcn-firmware).
FIRMWARE_CHOICES = ("auto", "bios", "uefi")
CHOICES = FIRMWARE_CHOICES
SECTOR = 512
HEAD_SECTORS = 34  # protective MBR, GPT header, 128 entries of 128 bytes
# Partition type GUIDs (UEFI spec, table 5.7; GRUB's BIOS boot partition).
ESP = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
MBR_PROTECTIVE = 0xEE
MBR_ESP = 0xEF


@dataclass(frozen=True)
class PartitionTable:
    """What the disk's first sectors say about how it boots."""

    kind: str  # "gpt", "mbr" or "none"
    bios_boot: bool  # a BIOS boot partition (GPT) or an active partition (MBR)
    esp: bool  # an EFI system partition

    def describe(self) -> str:
        if self.kind == "none":
            return "no partition table"
        parts = [
            name
            for name, has in (("a BIOS boot partition", self.bios_boot), ("an EFI system partition", self.esp))
            if has
        ]
        if self.kind == "mbr" and self.bios_boot:
            parts = ["an active partition", *(p for p in parts if "EFI" in p)]
        return f"{self.kind.upper()} with " + (" and ".join(parts) if parts else "no boot partition")


def parse_head(head: bytes) -> PartitionTable:
    """The partition table in a disk's first :data:`HEAD_SECTORS` sectors."""
    if len(head) < 2 * SECTOR or head[510:512] != b"\x55\xaa":
        return PartitionTable("none", False, False)
    mbr = [head[446 + 16 * i : 446 + 16 * (i + 1)] for i in range(4)]
    if any(entry[4] == MBR_PROTECTIVE for entry in mbr) and head[SECTOR : SECTOR + 8] == b"EFI PART":
        return _gpt(head)
    active = any(entry[0] == 0x80 for entry in mbr)
    esp = any(entry[4] == MBR_ESP for entry in mbr)
    return PartitionTable("mbr", active, esp)


def _gpt(head: bytes) -> PartitionTable:
    header = head[SECTOR : 2 * SECTOR]
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    types = set()
    for i in range(count):
        start = entries_lba * SECTOR + i * size
        if start + 16 > len(head):
            break  # entries past what was read: 128 is the usual and the most read
        raw = head[start : start + 16]
        if raw != bytes(16):
            types.add(uuid.UUID(bytes_le=raw))
    return PartitionTable("gpt", BIOS_BOOT in types, ESP in types)


def choose(table: PartitionTable, wanted: str, image: str) -> tuple[str, str]:
    """The firmware to boot ``image`` with, and why. ``wanted`` is one of
    :data:`CHOICES`; a firmware the disk cannot boot with is refused."""
    if wanted not in CHOICES:
        raise ConfigError(f"firmware {wanted!r}: choose one of {', '.join(CHOICES)}")
    what = table.describe()
    if wanted == "bios":
        if not table.bios_boot:
            raise ConfigError(
                f"{image} cannot boot under BIOS: {what}; use --dcn-firmware uefi (or auto), "
                "or build the image with a BIOS boot partition"
            )
        return "bios", f"asked for; {what}"
    if wanted == "uefi":
        if not table.esp:
            raise ConfigError(
                f"{image} cannot boot under UEFI: {what}; use --dcn-firmware bios (or auto), "
                "or build the image with an EFI system partition"
            )
        return "uefi", f"asked for; {what}"
    if table.bios_boot:
        return "bios", f"{what}: BIOS boots it without an NVRAM file per node"
    if table.esp:
        return "uefi", f"{what}: UEFI only"
    raise ConfigError(
        f"{image} has {what}: nothing a firmware can boot. A disk-booted image needs a BIOS boot "
        "partition or an EFI system partition (or give a kernel to boot directly, as recipes do)"
    )


@functools.cache
def resolve(disk: Path, kernel: Path | None, wanted: str) -> tuple[str, str]:
    """The firmware a fleet of this image boots with, and why: SeaBIOS for
    direct kernel boot (the kernel needs no firmware of its own), else what
    the disk's partition table allows (:func:`choose`). Cached: the session's
    cache check, Fleet.up's early check and every node's domain ask the same
    of the same (immutable) image, and read its head once."""
    if kernel is not None:
        if wanted == "uefi":
            raise ConfigError(
                f"--dcn-firmware uefi: {disk} boots its kernel directly ({kernel}); firmware applies to "
                "images that boot their own boot loader (leave it at auto, or pass a disk-booted image)"
            )
        return "bios", "direct kernel boot"
    return choose(parse_head(read_head(disk)), wanted, str(disk))


def read_head(disk: Path, fmt: str | None = None, timeout: float = 60.0) -> bytes:
    """The first :data:`HEAD_SECTORS` sectors of ``disk`` (format ``fmt``:
    qcow2, raw...; None: as ``qemu-img info`` says) as the guest sees them."""
    if fmt is None:
        # -U: a running VM may hold qemu's lock on the image.
        info = run_local(["qemu-img", "info", "-U", "--output=json", disk], timeout=timeout)
        fmt = str(json.loads(info.stdout).get("format", "raw"))
    with tempfile.TemporaryDirectory(prefix="dcnlab-head-") as tmp:
        out = Path(tmp) / "head.raw"
        run_local(
            [
                "qemu-img",
                "dd",
                "-f",
                fmt,
                "-O",
                "raw",
                f"bs={SECTOR}",
                f"count={HEAD_SECTORS}",
                f"if={disk}",
                f"of={out}",
            ],
            timeout=timeout,
        )
        return out.read_bytes()
