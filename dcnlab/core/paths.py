"""Where dcnlab keeps things on the machine running it.

- cache (``DCNLAB_CACHE``, default ``~/.cache/dcnlab``): built images and the
  accelerator probe result; safe to delete, rebuilt on demand.
- state (``DCNLAB_STATE``, default ``~/.local/state/dcnlab``): one directory
  per fleet with its disks, keys, logs and hypervisor; ``dcnlab gc`` reads it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("DCNLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dcnlab"


def state_dir() -> Path:
    env = os.environ.get("DCNLAB_STATE")
    return Path(env) if env else Path.home() / ".local" / "state" / "dcnlab"


def runs_dir() -> Path:
    return state_dir() / "fleets"
