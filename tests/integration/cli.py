"""Run the ``dcnlab`` console script the way a user does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DCNLAB = str(Path(sys.executable).with_name("dcnlab"))


def dcnlab(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DCNLAB, *args], capture_output=True, text=True, timeout=timeout, env=env)
