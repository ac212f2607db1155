"""The pytest plugin's own behaviour, through pytester: one entry point that
brings every fixture, options refused before anything boots, and nothing of
it left when it is turned off. No VM boots: the tests here ask for no fleet."""

from __future__ import annotations

import pathlib

import pytest

pytest_plugins = ["pytester"]

ASKS_FOR_A_FLEET = """
def test_needs_a_fleet(fleet):
    pass
"""


@pytest.fixture
def isolated(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    # Whatever a run under test would write goes to its own directories.
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("DCNLAB_STATE", str(state))
    pytester.path.joinpath(".state").write_text(str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    return pytester


def test_one_entry_point_brings_the_fleet_and_the_fault_fixtures(isolated: pytest.Pytester) -> None:
    result = isolated.runpytest_subprocess("--fixtures")
    out = result.stdout.str()
    for name, module in [
        ("fleet", "plugin.py"),
        ("cluster", "plugin.py"),
        ("dcn_host", "plugin.py"),
        ("fault", "faults.py"),
        ("timeline", "faults.py"),
        ("probes", "faults.py"),
        ("cluster_sampler", "faults.py"),
    ]:
        assert any(
            line.startswith(f"{name} ") and f"dcnlab/pytest_plugin/{module}" in line for line in out.splitlines()
        ), f"fixture {name} from dcnlab/pytest_plugin/{module} not listed:\n{out}"


def test_turning_the_plugin_off_removes_its_fixtures_and_options(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(ASKS_FOR_A_FLEET)
    off = isolated.runpytest_subprocess("-p", "no:dcnlab")
    assert off.ret == pytest.ExitCode.TESTS_FAILED
    off.stdout.fnmatch_lines(["*fixture 'fleet' not found*"])
    assert "'fault'" not in off.stdout.str()  # the fault fixtures went with it
    unknown = isolated.runpytest_subprocess("-p", "no:dcnlab", "--dcn-nodes", "3")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*unrecognized arguments: --dcn-nodes*"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dcn-nodes", "0"], "*--dcn-nodes: 0 is out of range: use 1 to *"),
        (["--dcn-networks", "two"], "*--dcn-networks: 'two' is not a whole number*"),
        (["--dcn-threshold", "power-off=5"], "*--dcn-threshold: *write FAULT.TIMING=SECONDS*"),
        (["--dcn-netns", "somewhere"], "*--dcn-netns only applies with --dcn-libvirt-uri*"),
        (["--dcn-firmware", "coreboot"], "*--dcn-firmware: invalid choice: 'coreboot'*"),
    ],
    ids=["nodes", "networks", "threshold", "netns", "firmware"],
)
def test_bad_options_are_refused_before_anything_boots(isolated: pytest.Pytester, args: list[str], says: str) -> None:
    isolated.makepyfile(ASKS_FOR_A_FLEET)
    result = isolated.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([says])
    assert "test_needs_a_fleet" not in result.stdout.str()  # nothing ran


def test_a_session_that_asks_for_no_fleet_boots_nothing(isolated: pytest.Pytester) -> None:
    isolated.makepyfile("def test_pure_logic():\n    assert 1 + 1 == 2\n")
    result = isolated.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "[dcnlab] fleet" not in result.stdout.str() + result.stderr.str()
    state = isolated.path.joinpath(".state").read_text()
    assert not list(pathlib.Path(state).rglob("run.json")), "a fleet was created"


USER_TABLE = """
import pytest
from dcnlab.certify import ConfigError, cases

def my_table(session):
    rows = [cases.Param(f"w{i}", f"w{i}", cases.fault_marks("power-off", node_loss=True, smoke=i == 1, workload="w1"))
            for i in range(1, session.nodes + 1)]
    return rows + [cases.nothing("no-widget", f"{session.spec.path} has no widget")]

def broken(session):
    raise ConfigError("the table cannot read the spec")

@pytest.mark.dcn_cases("row", my_table)
def test_case(row):
    assert row is not None
"""


def test_a_case_table_parametrizes_with_ids_markers_and_skips(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(USER_TABLE)
    ran = isolated.runpytest_subprocess("--strict-markers", "--dcn-nodes", "2", "-rs", "-v")
    ran.assert_outcomes(passed=2, skipped=1)
    ran.stdout.fnmatch_lines(
        ["*test_case?w1? PASSED*", "*test_case?w2? PASSED*", "*has no widget: nothing to certify*"]
    )
    smoke = isolated.runpytest_subprocess("--strict-markers", "--dcn-nodes", "2", "-m", "smoke and w1 and node_loss")
    smoke.assert_outcomes(passed=1, deselected=2)


def test_a_table_that_fails_stops_the_session_at_collection(isolated: pytest.Pytester) -> None:
    isolated.makepyfile(USER_TABLE.replace('dcn_cases("row", my_table)', 'dcn_cases("row", broken)'))
    result = isolated.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*case table broken on *default.yaml: the table cannot read the spec*"])
    assert "Traceback" not in result.stdout.str()
