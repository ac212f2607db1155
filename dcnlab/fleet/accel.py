"""Which accelerator can really boot a guest here.

``/dev/kvm`` existing proves nothing: on these machines it is backed by
kvm-pvm, where QEMU aborts or the guest dies with "KVM internal error"
(docs/facts.md). So we boot the image's kernel once under KVM with no root disk: a
kernel that gets as far as "Kernel panic ... VFS" ran fine. The answer is cached
per host (kernel release, QEMU binary) in the cache directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcnlab.core import paths
from dcnlab.core.errors import CommandError, ConfigError
from dcnlab.core.proc import run_local

QEMU = "qemu-system-x86_64"
ACCEL_CHOICES = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str

    @property
    def domain_type(self) -> str:
        return "kvm" if self.name == "kvm" else "qemu"

    @property
    def scale(self) -> float:
        """Multiplier for every guest-side timeout (software emulation is slow)."""
        return 1.0 if self.name == "kvm" else 4.0


_announced: set[str] = set()


def _host_key() -> str:
    qemu = shutil.which(QEMU) or ""
    mtime = int(os.stat(qemu).st_mtime) if qemu else 0
    return f"{platform.release()}|{qemu}|{mtime}|{os.path.exists('/dev/kvm')}"


def smoke_boot_kvm(kernel: Path, timeout: float = 20.0) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM with no root disk and see how far it gets."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is absent or not accessible"
    argv = [
        QEMU, "-accel", "kvm", "-m", "256", "-nodefaults", "-nographic", "-no-reboot",
        "-serial", "stdio", "-monitor", "none", "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1 root=/dev/dcnlab-none rootwait=0",
    ]  # fmt: skip
    try:
        res = run_local(argv, timeout=timeout, check=False)
    except CommandError:
        # A working KVM gets there in about a second; a hang means it does not work.
        return False, f"a smoke boot under KVM did not reach the kernel's root mount in {timeout:.0f}s"
    out = res.stdout + res.stderr
    if "Kernel panic" in out or "VFS:" in out:
        return True, "a smoke boot under KVM reached the kernel's root mount"
    for marker in ("KVM internal error", "failed to set MSR", "emulation failure"):
        if marker in out:
            return False, f"a smoke boot under KVM failed ({marker})"
    return False, f"a smoke boot under KVM exited {res.exit_code} without booting"


def detect(
    choice: str,
    kernel: Path | None,
    announce: Callable[[str], None],
    cache: Path | None = None,
) -> Accel:
    if choice not in ACCEL_CHOICES:
        raise ConfigError(f"accelerator {choice!r} is not one of {', '.join(ACCEL_CHOICES)}")
    if choice == "tcg":
        return _say(Accel("tcg", "asked for TCG"), announce)
    if choice == "kvm":
        return _say(Accel("kvm", "asked for KVM"), announce)
    cache_file = (cache or paths.cache_dir()) / "accel.json"
    key = _host_key()
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return _say(Accel(cached["name"], cached["reason"] + " (cached)"), announce)
    except (OSError, ValueError, KeyError):
        pass
    if kernel is None:
        # A disk-booted image has no kernel to smoke-boot; trust /dev/kvm.
        ok, why = os.access("/dev/kvm", os.R_OK | os.W_OK), "no kernel to smoke-boot; /dev/kvm checked only"
    else:
        ok, why = smoke_boot_kvm(kernel)
    accel = Accel("kvm", why) if ok else Accel("tcg", why + "; falling back to TCG (software emulation)")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({"key": key, "name": accel.name, "reason": accel.reason}))
    except OSError as err:
        # The cache only spares the next run a probe: a full or read-only
        # cache directory must not stop this one. A half-written file would
        # not parse, so the next run would probe again anyway; remove it.
        with contextlib.suppress(OSError):
            cache_file.unlink(missing_ok=True)
        announce(f"accelerator: cannot cache the probe result in {cache_file} ({err.strerror}); probing again next run")
    return _say(accel, announce)


def _say(accel: Accel, announce: Callable[[str], None]) -> Accel:
    line = f"accelerator: {accel.name.upper()} ({accel.reason}); guest timeouts x{accel.scale:g}"
    if line not in _announced:
        _announced.add(line)
        announce(line)
    return accel
