"""bench/main_job.py's reading of a run: per test from the junit XML, per
suite summed, every figure also as a multiple of the floor."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the scripts import benchlib by its plain name

import main_job  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="suites.failover.test_failover" name="test_failover[power-off-web]" time="120.5"/>
<testcase classname="suites.failover.test_failover" name="test_failover[nic-cut-web]" time="80.0">
  <failure message="FAIL: web downtime 75.0s over 60s">...</failure></testcase>
<testcase classname="suites.image.test_image_preflight" name="test_units[dcn1]" time="2.0"/>
<testcase classname="suites.image.test_image_preflight" name="test_firewall[dcn1]" time="0.1">
  <skipped message="no firewall">...</skipped></testcase>
</testsuite></testsuites>
"""


def test_a_run_is_read_per_test_and_summed_per_suite(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    cases = main_job.junit_cases(junit)
    assert [(c["test"].split("::")[1], c["verdict"], c["seconds"]) for c in cases] == [
        ("test_failover[power-off-web]", "passed", 120.5),
        ("test_failover[nic-cut-web]", "failed", 80.0),
        ("test_units[dcn1]", "passed", 2.0),
        ("test_firewall[dcn1]", "skipped", 0.1),
    ]
    suites = main_job.summarise(cases, floor=20.0)
    assert suites["failover"] == {
        "tests": 2,
        "seconds": 200.5,
        "x_floor": 10.03,
        "verdicts": {"passed": 1, "failed": 1},
    }
    assert suites["image"]["tests"] == 2
    assert suites["image"]["verdicts"] == {"passed": 1, "skipped": 1}
