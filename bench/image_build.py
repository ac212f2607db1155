"""Benchmark: image build time, cold (empty cache) and warm (cache hit).

    .venv/bin/python bench/image_build.py [--recipe dcn-debian] [--warm-repeat 5]

The cold build goes into a temporary cache directory (``build_image(cache=...)``),
so the user's cache is neither used nor touched; the temporary one is removed
afterwards. Warm builds are the same call again (a cache hit), in this process
and as the ``dcnlab image build`` command a user runs (``DCNLAB_CACHE`` pointing
at the temporary cache), which adds the interpreter's start-up.

Writes bench/results/image_build.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from dcnlab.image.builder import build_image, read_manifest

DCNLAB = Path(sys.executable).with_name("dcnlab")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="dcn-debian")
    ap.add_argument("--warm-repeat", type=int, default=5)
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="dcnlab-bench-cache-"))
    try:
        started = time.monotonic()
        image = build_image(args.recipe, cache=cache, progress=print)
        cold = time.monotonic() - started
        manifest = read_manifest(image)

        warm = []
        for _ in range(args.warm_repeat):
            t = time.monotonic()
            again = build_image(args.recipe, cache=cache)
            warm.append(time.monotonic() - t)
            assert again == image, "a warm build must return the cached image"

        warm_cli = []
        env = {**os.environ, "DCNLAB_CACHE": str(cache)}
        for _ in range(args.warm_repeat):
            t = time.monotonic()
            out = subprocess.run(
                [str(DCNLAB), "image", "build", "--recipe", args.recipe],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            warm_cli.append(time.monotonic() - t)
            assert out.stdout.strip() == str(image.disk), out.stdout
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    result = {
        **benchlib.header("image_build", python=platform.python_version()),
        "recipe": image.recipe,
        "digest": image.digest,
        "cold_seconds": round(cold, 1),
        # The builder's own account, without the cache lock and manifest reads.
        "cold_build_seconds_in_manifest": manifest.get("built_seconds"),
        "warm_seconds": [round(w, 4) for w in warm],
        "warm_cli_seconds": [round(w, 3) for w in warm_cli],
        "sizes": manifest.get("sizes", {}),
        "packages": manifest.get("packages", {}),
    }
    benchlib.write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
