"""The image preflight rejects a broken image, and says why.

Runs ``pytest suites/image`` as a user would, in a child process with its own
one-node fleet, against an image built from the ``dcn-debian-no-ra`` recipe
(dcn-debian without resource-agents), for the default cluster spec, and checks
that it fails, that the failures name resource-agents, and that nothing else
failed: the image boots, so every other check must still pass. The spec's
ocf:heartbeat resources are vip (IPaddr2) and app (podman): their agent cases
fail; witness's ocf:pacemaker:Dummy comes with pacemaker-resource-agents,
which the recipe leaves in place.

The image suite's counterpart of test_bad_specs.py, and like it collected
only when asked for by path (tests/meta/conftest.py): building the broken
image takes minutes on a fresh machine, on top of the run (about 1.5 min
here), which CI's budget does not have room for.

    .venv/bin/pytest tests/meta/test_bad_image.py -p no:cacheprovider
"""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dcnlab.image.builder import build_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Build (first time ~2.5 min), boot of one node under TCG, a dozen checks with podman.
CHILD_TIMEOUT = 1500.0


def run_suite(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """pytest in a child; on timeout SIGTERM first, so its fleet is torn down."""
    argv = [sys.executable, "-m", "pytest", *args]
    with subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=180)
            pytest.fail(f"`{' '.join(argv)}` ran over {timeout:.0f}s; its output:\n{out[-4000:]}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def test_preflight_fails_naming_resource_agents(tmp_path: Path) -> None:
    image = build_image("dcn-debian-no-ra", progress=print)
    junit = tmp_path / "preflight.xml"
    result = run_suite(
        [
            "suites/image",
            "--dcn-image",
            str(image.disk),
            "--dcn-nodes",
            "1",
            # The default spec's two knet links need two networks.
            "--dcn-networks",
            "2",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ],
        CHILD_TIMEOUT,
    )
    out = result.stdout
    assert result.returncode == 1, f"expected test failures (exit 1), got exit {result.returncode}:\n{out[-4000:]}"
    cases = {case.get("name", ""): case for case in ET.parse(junit).getroot().iter("testcase")}
    failed = {name: case.find("failure") for name, case in cases.items() if case.find("failure") is not None}
    errors = [name for name, case in cases.items() if case.find("error") is not None]
    assert not errors, f"errors (not failures) in {errors}: the fleet itself broke?\n{out[-4000:]}"
    assert set(failed) == {
        "test_required_packages[dcn1]",
        "test_resource_agent[dcn1-vip]",
        "test_resource_agent[dcn1-app]",
    }, f"only the resource-agents checks may fail; failed: {sorted(failed)}\n{out[-4000:]}"

    def text(name: str) -> str:
        failure = failed[name]
        assert failure is not None
        return (failure.get("message") or "") + "\n" + (failure.text or "")

    packages = text("test_required_packages[dcn1]")
    assert "resource-agents is not installed" in packages
    assert "needed by resource vip (" in packages  # the spec items that need it
    vip, app = text("test_resource_agent[dcn1-vip]"), text("test_resource_agent[dcn1-app]")
    assert "ocf:heartbeat:IPaddr2 is missing (needed by resource vip (" in vip
    assert "ocf:heartbeat:podman is missing (needed by resource app (" in app
    assert "it comes with resource-agents" in vip
    assert "it comes with resource-agents" in app
    # And what a person reads at the end of the run says the same.
    assert "resource-agents is not installed" in out
