"""What every benchmark script shares: the result header and where it goes.

The scripts run as ``python bench/NAME.py``, so this module is importable
from them by its plain name.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def header(benchmark: str, **machine: Any) -> dict[str, Any]:
    """The start of a result: its name, when, and the machine facts needed to
    compare runs (cpus and kernel, plus what the benchmark adds)."""
    return {
        "benchmark": benchmark,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), **machine},
    }


def write(result: dict[str, Any]) -> Path:
    """Write ``result`` to results/<benchmark>.json and print it."""
    out = RESULTS / f"{result['benchmark']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    out.write_text(text)
    print(text, end="")
    return out
