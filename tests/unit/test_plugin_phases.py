"""The plugin's record of where each test on VMs spent its time, through
pytester: a stand-in ``fleet`` fixture (the plugin keys on it) and a stand-in
for the fault injector's clock; no VM boots."""

import json

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import time
import pytest
from dcnlab.pytest_plugin.plugin import FAULT_PHASES

@pytest.fixture
def fleet():
    time.sleep(1.1)  # a boot, as far as the clock is concerned
    return "fleet"

def test_on_vms(fleet, request):
    time.sleep(0.3)
    # What the fault fixture leaves: 0.1 s to the heal, 0.2 healing, 0.1 waiting.
    request.node.stash[FAULT_PHASES] = {"fault": 0.1, "heal": 0.2, "health": 0.1}

def test_pure_logic():
    pass

@pytest.mark.skip(reason="nothing to run")
def test_skipped(fleet):
    pass
"""


def test_each_test_on_vms_gets_its_phases_in_the_timing_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_phases=TESTS)
    out = pytester.path / "report"
    result = pytester.runpytest("-p", "no:cacheprovider", "--dcn-report", str(out))
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*where the time went*", "*slowest tests:*", "*test_on_vms*"])
    data = json.loads((out / "timing-report.json").read_text())
    (phases,) = data["phases"]  # neither the pure test nor the skipped one
    assert phases["test"] == "test_phases.py::test_on_vms"
    assert phases["cluster"] == ""  # it used no cluster
    seconds = phases["seconds"]
    assert seconds["setup"] >= 1.0
    assert (seconds["fault to verdict"], seconds["heal"], seconds["wait for health"]) == (0.1, 0.2, 0.1)
    assert 0.0 <= seconds["other"] < 0.5
