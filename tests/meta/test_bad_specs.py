"""The failover suite must fail bad cluster configurations, for the right reason.

Each bad spec of suites/specs/bad/ is certified with the failover case that
should expose it, in a pytest run of its own (its own fleet and cluster):
the case must fail, and the verdict must name the finding that shows why.
Slow (a fleet and a cluster per spec, 10-15 minutes each under TCG), so it
is collected only when asked for by path (tests/meta/conftest.py):

    .venv/bin/pytest tests/meta -p no:cacheprovider
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
BAD = ROOT / "suites" / "specs" / "bad"

# spec -> (failover case id, findings that must fail, as `FAIL <what>:` lines of the verdict)
EXPECTED = {
    "long_token.yaml": ("power-off-web", ["FAIL detection:"]),
    "service_without_monitor.yaml": ("kill-workload-web", ["FAIL outcome: expected restarted in place"]),
    "single_link.yaml": ("nic-cut-web", ["FAIL fenced: expected dcn"]),
    "no_fencing_ignore_quorum.yaml": ("isolate-web+app", ["FAIL fenced:"]),
    "fail_back.yaml": ("power-off-web", ["FAIL requirement line", "no-outage-on-return of web"]),
}


@pytest.mark.parametrize("spec", sorted(EXPECTED))
def test_failover_suite_rejects(spec: str, tmp_path: Path) -> None:
    case, findings = EXPECTED[spec]
    junit = tmp_path / "junit.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "suites" / "failover" / "test_failover.py"),
        "-k",
        f"[{case}]",
        "--dcn-cluster-spec",
        str(BAD / spec),
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-q",
    ]
    # Bounded by the suite's own deadlines; this is the backstop for a hang.
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3600, env=os.environ.copy())
    (tmp_path / "run.log").write_text(res.stdout + res.stderr)
    assert junit.exists(), f"the suite did not run (exit {res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    cases = ET.parse(junit).getroot().iter("testcase")
    (result,) = [c for c in cases if c.get("name") == f"test_failover[{case}]"]
    failure = result.find("failure")
    assert failure is not None, f"{spec}: {case} passed, but this spec must fail it\n{res.stdout[-3000:]}"
    text = (failure.get("message") or "") + (failure.text or "")
    for finding in findings:
        assert finding in text, f"{spec}: {case} failed, but not on {finding!r}:\n{text[:4000]}"
