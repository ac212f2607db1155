"""The pure parts of the Allure report: the files written into a results
directory, the categories' patterns against the messages allure-pytest writes,
and the errors a user meets before Allure runs."""

from __future__ import annotations

import json
import re
import shutil
import traceback
from pathlib import Path

import pytest

from dcnlab.cli import main
from dcnlab.core.errors import CertificationFailure, CommandError, ConfigError, DcnlabError, WaitTimeout
from dcnlab.observe.probe import ProbeError
from dcnlab.report.allure_report import (
    ALLURE_VERSION,
    CATEGORIES,
    ReportError,
    allure_command,
    allure_config,
    build_report,
    environment_properties,
    write_results_metadata,
)
from dcnlab.report.timing import Environment

ENV = Environment(
    "dcn-debian",
    "d997512adccc9979",
    "/cache/disk.qcow2",
    "default.yaml",
    "tcg",
    "qemu:///system?socket=/run/x",
    versions={"pacemaker": "2.1.5-1+deb12u1", "corosync": "3.1.7-1"},
)


def message_of(err: BaseException) -> str:
    """The message allure-pytest records for ``err`` (allure_commons.utils.format_exception)."""
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def category_of(message: str, status: str) -> str | None:
    """The first category matching, as Allure 3 matches (RegExp.test: a search)."""
    for cat in CATEGORIES:
        if status not in cat["matchedStatuses"]:
            continue
        if "messageRegex" in cat and not re.search(cat["messageRegex"], message):
            continue
        return str(cat["name"])
    return None


def test_environment_properties() -> None:
    assert environment_properties(ENV) == (
        "image=dcn-debian d997512adccc9979\n"
        "image.path=/cache/disk.qcow2\n"
        "spec=default.yaml\n"
        "accelerator=tcg\n"
        "hypervisor=qemu\\:///system?socket\\=/run/x\n"
        "version.corosync=3.1.7-1\n"
        "version.pacemaker=2.1.5-1+deb12u1\n"
    )


def test_environment_properties_escapes_what_properties_files_cannot_hold() -> None:
    env = Environment("r", "d", " /odd path\\é\n", "spec #1", "tcg", "embedded", versions={"a b": "x"})
    text = environment_properties(env)
    assert "image.path=\\ /odd path\\\\\\u00e9\\n\n" in text
    assert "spec=spec \\#1\n" in text
    assert "version.a\\ b=x\n" in text
    assert text.isascii()


@pytest.mark.parametrize(
    ("err", "status", "category"),
    [
        (
            AssertionError("FAIL: web relocated (fault on dcn1)\n  downtime 99 s > 30 s\nassert False"),
            "failed",
            "Certification failures",
        ),
        (CommandError("ssh dcn1 true: exit 255", None), "broken", "Harness and infrastructure errors"),
        (WaitTimeout("waited 120s for dcn2 to answer SSH"), "broken", "Harness and infrastructure errors"),
        (ProbeError("probe client did not start"), "broken", "Harness and infrastructure errors"),
        (AssertionError("assert [] == ['x']"), "failed", "Other failed checks"),
        (AssertionError("PASS: looks fine but FAIL: later"), "failed", "Other failed checks"),
        (KeyError("web"), "broken", "Unexpected errors"),
        (
            CertificationFailure("FAIL: cluster dcn cannot form on this image and spec: knet link(s) 1 ..."),
            "broken",
            "Certification failures",
        ),
    ],
)
def test_categories_tell_certification_failures_from_harness_errors(
    err: BaseException, status: str, category: str
) -> None:
    assert category_of(message_of(err), status) == category


def test_categories_cover_every_harness_error_class() -> None:
    """Each DcnlabError subclass that exists is counted as a harness error."""

    def subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(DcnlabError):
        assert cls.__module__.startswith("dcnlab."), cls
        err = cls.__new__(cls)
        err.args = ("something failed",)
        assert category_of(message_of(err), "broken") == "Harness and infrastructure errors", cls
    # A finding about the product raised while setting up: only with its FAIL.
    finding = message_of(CertificationFailure("FAIL: resource x cannot start"))
    assert category_of(finding, "broken") == "Certification failures"
    assert re.fullmatch(CATEGORIES[0]["messageRegex"], finding)


def test_patterns_also_match_whole_messages_as_allure_2_does() -> None:
    # Allure 2 uses Java's matches(): the pattern must cover the whole message.
    message = message_of(AssertionError("FAIL: x\n  y"))
    assert re.fullmatch(CATEGORIES[0]["messageRegex"], message)
    assert re.fullmatch(CATEGORIES[1]["messageRegex"], message_of(CommandError("a\nb", None)))


def test_write_results_metadata(tmp_path: Path) -> None:
    write_results_metadata(tmp_path / "results", None)
    assert json.loads((tmp_path / "results" / "categories.json").read_text()) == CATEGORIES
    assert not (tmp_path / "results" / "environment.properties").exists()
    write_results_metadata(tmp_path / "results", ENV)
    assert (tmp_path / "results" / "environment.properties").read_text() == environment_properties(ENV)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["categories.json", "environment.properties"]


def test_config_carries_the_categories_and_groups_by_suite() -> None:
    config = allure_config("x")
    assert config["name"] == "x"
    assert config["categories"] == CATEGORIES
    assert config["plugins"]["awesome"]["options"]["groupBy"] == ["parentSuite", "suite", "subSuite"]
    json.dumps(config)  # written as allurerc.json


def test_missing_or_wrong_allure_says_run_dev_setup(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"Allure 3 is not installed .*: run \./dev setup"):
        allure_command(tmp_path)
    package = tmp_path / "node_modules" / "allure" / "package.json"
    package.parent.mkdir(parents=True)
    package.write_text(json.dumps({"name": "allure", "version": "3.0.0"}))
    with pytest.raises(ReportError, match=rf"Allure 3\.0\.0 is installed .* needs {ALLURE_VERSION}: run \./dev setup"):
        allure_command(tmp_path)


def test_node_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "node_modules" / "allure" / "package.json"
    package.parent.mkdir(parents=True)
    package.write_text(json.dumps({"version": ALLURE_VERSION}))
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ReportError, match=r"node .* is not on PATH"):
        allure_command(tmp_path)


def test_results_dir_must_hold_results(tmp_path: Path) -> None:
    missing = re.escape(str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=rf"results dir {missing} does not exist: run pytest with --alluredir"):
        build_report(tmp_path / "none", tmp_path / "html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no \*-result\.json: run pytest with --alluredir"):
        build_report(tmp_path / "empty", tmp_path / "html")


def test_out_must_be_empty_or_an_earlier_report(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "1-result.json").write_text("{}")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds something else than an Allure report"):
        build_report(results, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        build_report(results, tmp_path / "file")


def test_cli_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--results", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dcnlab: error: results dir ")
    assert err.count("\n") == 1


def test_cli_report_needs_results(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report"])
    assert exit_.value.code == 2
    assert "--results" in capsys.readouterr().err
