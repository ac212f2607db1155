import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dcnlab.certify.verdict import Expectation, Outcome, judge
from dcnlab.cluster.thresholds import Thresholds
from dcnlab.observe.probe import analyse, parse_output
from dcnlab.observe.timeline import Recorder, derive
from dcnlab.report.timing import SCHEMA, CasePhases, CaseRecord, ClusterStart, Environment, RunReport, Stats

DATA = Path(__file__).parent / "data"
ENV = Environment("dcn-debian", "d997512adccc9979", "/cache/disk.qcow2", "default.yaml", "tcg", "embedded")


def power_off_record(repeat: int = 0, passed_limit: float = 150) -> CaseRecord:
    """A record built from the recorded issue-5 power-off run, as the suite builds it."""
    rec = Recorder.from_dict(json.loads((DATA / "timeline_power_off_web.json").read_text()))
    events = rec.events()
    run = parse_output((DATA / "probe_power_off_web_full.jsonl").read_text())
    timings = derive(events, "web", analyse(run.of("web"), "web").outages)
    expectation = Expectation("power-off", "web", Outcome.RELOCATED, fenced=True)
    verdict = judge(expectation, events, timings, Thresholds(downtime=passed_limit), "dcn1", ("vip", "http"))
    fault = next(e for e in events if e.kind.value == "fault_injected")
    return CaseRecord.from_verdict(
        test="suites/failover/test_failover.py::test_failover[power-off-web]",
        suite="failover",
        verdict=verdict,
        timings=timings,
        events=events,
        fault_t=fault.t,
        workload="web",
        repeat=repeat,
        restore_seconds=296.4,
    )


def validate(data: dict[str, Any]) -> None:
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))


def test_a_record_carries_timings_verdict_and_a_relative_timeline() -> None:
    record = power_off_record()
    assert record.passed
    assert record.seconds == {"detection": 7.775, "fencing": 3.482, "recovery": 30.927, "downtime": 39.903}
    assert record.fault == "power-off"
    assert record.target == "dcn1"
    fault = next(e for e in record.timeline if e["kind"] == "fault_injected")
    assert fault["t"] == 0.0


def test_report_validates_against_the_schema(tmp_path: Path) -> None:
    report = RunReport(ENV)
    report.add(power_off_record())
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    validate(data)
    assert data["summary"][0]["timings"]["downtime"]["max"] == 39.903
    assert "| power-off | web | 1 | 0 (0%) |" in md_path.read_text()


def test_how_the_run_got_its_clusters_is_reported_and_merged(tmp_path: Path) -> None:
    worker = RunReport(ENV, [power_off_record()], [ClusterStart("built", 263.4)])
    worker.clusters.append(ClusterStart("restored", 41.2, "suites/x.py::test_y", "destructive"))
    controller = RunReport()
    controller.merge(RunReport.from_dict(json.loads(json.dumps(worker.to_dict()))))
    data = controller.to_dict()
    validate(data)
    assert data["clusters"] == [
        {"how": "built", "seconds": 263.4, "before": "", "why": ""},
        {"how": "restored", "seconds": 41.2, "before": "suites/x.py::test_y", "why": "destructive"},
    ]
    assert "Clusters: built in 263s; restored in 41s before suites/x.py::test_y (destructive)" in controller.markdown()
    data["clusters"][0]["how"] = "cloned"
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


def test_the_schema_rejects_a_malformed_report() -> None:
    data = RunReport(ENV, [power_off_record()]).to_dict()
    data["cases"][0]["seconds"]["downtime"] = "forty"
    with pytest.raises(jsonschema.ValidationError):
        validate(data)
    data = RunReport(ENV, [power_off_record()]).to_dict()
    del data["cases"][0]["fault"]
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


def test_repeats_give_percentiles_and_a_failure_rate() -> None:
    report = RunReport(ENV)
    for i in range(3):
        report.add(power_off_record(repeat=i))
    report.add(power_off_record(repeat=3, passed_limit=10))  # one run over its threshold
    (row,) = report.rows()
    assert (row.runs, row.failed, row.failure_rate) == (4, 1, 0.25)
    assert row.stats["downtime"] == Stats(4, 39.903, 39.903, 39.903)
    text = report.markdown()
    assert "downtime p95" in text
    assert "| power-off | web | 4 | 1 (25%) |" in text
    validate(report.to_dict())
    assert "power-off" in report.text()


def test_nearest_rank_percentiles() -> None:
    s = Stats.of([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert (s.count, s.p50, s.p95, s.max) == (10, 5.0, 10.0, 10.0)
    assert Stats.of([]) == Stats(0, None, None, None)


def test_an_empty_report_is_valid() -> None:
    validate(RunReport().to_dict())
    assert RunReport().text() == "fault  workload  runs  failed  detection (s)  fencing (s)  recovery (s)  downtime (s)"


def test_compare_two_runs(tmp_path: Path) -> None:
    from dcnlab.cli import main
    from dcnlab.report.timing import compare, load_report

    a = RunReport(ENV, [power_off_record()])
    b_env = Environment("rhde", "abc", "/x.qcow2", "default.yaml", "kvm", "qemu:///system")
    faster = power_off_record()
    faster = CaseRecord(**{**faster.__dict__, "seconds": {**faster.seconds, "downtime": 12.5}})
    b = RunReport(b_env, [faster])
    pa, _ = a.write(tmp_path / "a")
    pb, _ = b.write(tmp_path / "b")
    text = compare(load_report(pa), load_report(pb))
    assert "B: rhde abc / default.yaml" in text
    row = next(line for line in text.splitlines() if line.startswith("| power-off"))
    assert "| 39.9 | 12.5 | -27.4 |" in row
    assert main(["compare", str(pa), str(pb)]) == 0


def test_compare_refuses_what_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dcnlab.cli import main

    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "is not a dcnlab timing report" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.json"), str(bad)]) == 2


def test_worker_reports_merge_into_one() -> None:
    """pytest-xdist: each worker's report travels as JSON and merges into the controller's."""
    env = Environment("dcn-debian", "abc", "/img", "default.yaml", "tcg", "embedded", {"pacemaker": "2.1.5"})
    worker_a = RunReport(env, [power_off_record(0)])
    worker_b = RunReport(None, [power_off_record(1, passed_limit=1)])
    merged = RunReport()
    for worker in (worker_a, worker_b):
        merged.merge(RunReport.from_dict(json.loads(json.dumps(worker.to_dict()))))
    assert merged.environment == env
    assert [c.repeat for c in merged.cases] == [0, 1]
    (row,) = merged.rows()
    assert (row.runs, row.failed) == (2, 1)
    validate(merged.to_dict())


def test_repeats_write_a_distribution_chart(tmp_path: Path) -> None:
    report = RunReport(ENV)
    report.write(tmp_path / "one")
    assert not (tmp_path / "one" / "timing-distribution.svg").exists()  # nothing to distribute
    for i in range(3):
        report.add(power_off_record(repeat=i))
    report.write(tmp_path / "three")
    svg = (tmp_path / "three" / "timing-distribution.svg").read_text()
    assert svg.count('class="value"') == 3 * sum(1 for v in power_off_record().seconds.values() if v is not None)
    assert "power-off web downtime" in svg
    assert "39.9s" in svg


def test_a_workload_without_a_client_has_its_downtime_reported_as_not_measured(tmp_path: Path) -> None:
    """The recorded power-off judged as if web declared no client: the
    verdict passes on cluster state, and every output says why downtime is
    missing instead of showing a number or a dash."""
    from dataclasses import replace

    from dcnlab.observe.timeline import Timing

    rec = Recorder.from_dict(json.loads((DATA / "timeline_power_off_web.json").read_text()))
    events = rec.events()
    why = "web declares no client endpoint (client: in the spec): certified on cluster state only"
    timings = replace(derive(events, "web"), downtime=Timing("client downtime", None, why=why))
    expectation = Expectation("power-off", "web", Outcome.RELOCATED, fenced=True)
    verdict = judge(expectation, events, timings, Thresholds(downtime=1), "dcn1", ("vip", "http"), clients=False)
    assert verdict.passed, verdict.message()
    assert "downtime: expected not measured; observed not measured: web declares no client" in verdict.message()
    fault = next(e for e in events if e.kind.value == "fault_injected")
    record = CaseRecord.from_verdict(
        test="t", suite="failover", verdict=verdict, timings=timings, events=events, fault_t=fault.t,
        workload="web", unmeasured={"downtime": why},
    )  # fmt: skip
    report = RunReport(ENV)
    report.add(record)
    json_path, md_path = report.write(tmp_path)
    validate(json.loads(json_path.read_text()))
    md = md_path.read_text()
    assert "| not measured |" in md
    assert f"- web: downtime not measured: {why}" in md
    assert why in report.text()


def test_where_the_time_went_splits_each_test_into_phases(tmp_path: Path) -> None:
    # A failover case: 40 s of set-up, then in call 60 s from the fault to
    # the heal, 20 s healing, 90 s waiting for health, 10 s judging; 2 s teardown.
    case = CasePhases.of(
        "suites/failover/test_failover.py::test_failover[power-off-web]",
        "restored",
        setup=40.0,
        call=180.0,
        teardown=2.0,
        fault=60.0,
        heal=20.0,
        health=90.0,
    )
    assert case.seconds == {
        "setup": 40.0,
        "fault to verdict": 60.0,
        "heal": 20.0,
        "wait for health": 90.0,
        "other": 12.0,
    }
    assert case.total == 222.0
    assert case.suite == "failover"
    # No fault: set-up and the rest. A clock that overlaps pytest's rounding never goes negative.
    test = "suites/image/test_image_preflight.py::test_units[dcn1]"
    preflight = CasePhases.of(test, "reused", setup=0.1, call=3.0, teardown=0.0)
    assert preflight.seconds["other"] == 3.0
    assert CasePhases.of("t.py::x", "", setup=0, call=1.0, teardown=0, fault=1.0, heal=0.5).seconds["other"] == 0.0

    report = RunReport(ENV, phases=[case, preflight])
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    validate(data)
    assert RunReport.from_dict(data).phases == [case, preflight]
    md = md_path.read_text()
    assert "## Where the time went" in md
    assert "| failover | 1 | 40 | 60 | 20 | 90 | 12 | 222 |" in md
    assert "| image | 1 | 0 | 0 | 0 | 0 | 3 | 3 |" in md
    assert "| all | 2 | 40 | 60 | 20 | 90 | 15 | 225 |" in md
    text = report.text()
    assert "where the time went" in text
    assert "slowest tests:" in text
    # The slowest first in the terminal's list.
    slow = text.split("slowest tests:")[1]
    assert slow.index("power-off-web") < slow.index("test_units")


def test_phases_merge_from_workers_and_the_schema_holds_them_to_known_phases() -> None:
    a = RunReport(phases=[CasePhases.of("a.py::t", "built", setup=1, call=2, teardown=0)])
    a.merge(RunReport(phases=[CasePhases.of("b.py::t", "reused", setup=1, call=2, teardown=0)]))
    assert [p.test for p in a.phases] == ["a.py::t", "b.py::t"]
    data = a.to_dict()
    validate(data)
    data["phases"][0]["seconds"]["lunch"] = 3.0
    with pytest.raises(jsonschema.ValidationError):
        validate(data)
