"""bench/flakiness.py's reading of junit results: repeats folded into cases,
verdicts, and harness errors told apart from product verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the scripts import benchlib by its plain name

import flakiness  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="suites.failover.test_failover" name="test_failover[kill-workload-web-r0]"/>
<testcase classname="suites.failover.test_failover" name="test_failover[kill-workload-web-r1]">
  <failure message="AssertionError: FAIL: web downtime 75.0s over 60s">...</failure></testcase>
<testcase classname="suites.image.test_image_preflight" name="test_stack[dcn1-r0]"/>
<testcase classname="suites.image.test_image_preflight" name="test_stack[dcn1-r1]">
  <failure message="dcnlab.core.errors.CommandError: ssh dcn1 timed out">...</failure></testcase>
<testcase classname="suites.colocation.test_colocation" name="test_quorum[r0]">
  <error message="failed on setup with &quot;KeyError&quot;">...</error></testcase>
<testcase classname="suites.colocation.test_colocation" name="test_quorum[r1]"/>
</testsuite></testsuites>
"""


def test_repeat_ids_fold_into_their_case() -> None:
    case = "m::test_failover[kill-workload-web-r3]"
    assert flakiness.case_and_run(case, 0) == ("m::test_failover[kill-workload-web]", 3)
    assert flakiness.case_and_run("m::test_quorum[r12]", 0) == ("m::test_quorum", 12)
    assert flakiness.case_and_run("m::test_quorum[dcn1]", 4) == ("m::test_quorum[dcn1]", 4)  # --fresh: session's run
    # Where pytest puts it when --dcn-repeat parametrizes first (seen in a real run).
    assert flakiness.case_and_run("m::test_failover[r7-kill-workload-web]", 0) == (
        "m::test_failover[kill-workload-web]",
        7,
    )
    assert flakiness.case_and_run("m::test_x[dcn1-r2]", 0) == ("m::test_x[dcn1]", 2)
    assert flakiness.case_and_run("m::test_x[run-r1x]", 5) == ("m::test_x[run-r1x]", 5)  # not a repeat id


def test_verdicts_per_case_and_harness_errors_apart(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    result = flakiness.summarise(flakiness.outcomes(junit, 0), runs=2)
    cases = result["cases"]
    web = cases["suites.failover.test_failover::test_failover[kill-workload-web]"]
    assert web["verdicts"] == ["passed", "failed"]
    assert not web["stable"]
    assert web["problems"] == {1: "AssertionError: FAIL: web downtime 75.0s over 60s"}
    assert cases["suites.image.test_image_preflight::test_stack[dcn1]"]["verdicts"] == ["passed", "failed"]
    assert cases["suites.colocation.test_colocation::test_quorum"]["verdicts"] == ["error", "passed"]
    # The verdict FAIL is the product's; a harness exception and a setup error are not.
    assert result["harness_errors"] == 2
    assert result["stable_cases"] == "0/3"
    assert result["all_identical"] is False


def test_a_missing_run_is_not_stable(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    result = flakiness.summarise(flakiness.outcomes(junit, 0), runs=3)
    assert result["cases"]["suites.colocation.test_colocation::test_quorum"]["verdicts"][2] == "missing"


def test_bench_smoke_reads_every_verdict(tmp_path: Path) -> None:
    import smoke

    junit = tmp_path / "junit.xml"
    both = '<testcase classname="s" name="t"><skipped message="no"/><failure message="teardown"/></testcase>'
    junit.write_text(JUNIT.replace("</testsuite>", both + "</testsuite>"))
    found = smoke.verdicts(junit)
    assert found["suites.failover.test_failover::test_failover[kill-workload-web-r0]"] == "passed"
    assert found["suites.failover.test_failover::test_failover[kill-workload-web-r1]"] == "failed"
    assert found["suites.colocation.test_colocation::test_quorum[r0]"] == "error"
    assert found["s::t"] == "failed"  # a failure reported after a skip wins
    assert smoke.verdicts(tmp_path / "missing.xml") == {}
