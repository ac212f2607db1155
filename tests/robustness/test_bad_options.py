"""Invalid option values and invalid cluster specs: a usage error naming the
option (or FILE:LINE of the spec) and the fix, before anything starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.robustness.sandbox import NOWHERE, Sandbox, cli_error, line_of, usage_error

INVALID_SPECS = Path(__file__).resolve().parents[2] / "suites" / "specs" / "invalid"
IMAGE = "image"  # the row's run gets a valid --dcn-image
NO_LIBVIRT = "no-libvirt"  # ... and an unreachable --dcn-libvirt-uri
SAFE = (IMAGE, NO_LIBVIRT)


def row(args: list[str], message: str, safety: tuple[str, ...] = SAFE) -> Any:
    return pytest.param(args, message, safety, id=" ".join(args))


@pytest.mark.parametrize(
    ("args", "message", "safety"),
    [
        row(["--dcn-nodes", "0"], "argument --dcn-nodes: 0 is out of range: use 1 to 32"),
        row(["--dcn-nodes", "abc"], "argument --dcn-nodes: 'abc' is not a whole number"),
        row(["--dcn-networks", "9"], "argument --dcn-networks: 9 is out of range: use 1 to 8"),
        row(["--dcn-memory", "100"], "argument --dcn-memory: 100 is out of range: use 768 to 65536"),
        row(
            ["--dcn-accel", "bogus"], "argument --dcn-accel: invalid choice: 'bogus' (choose from 'auto', 'kvm', 'tcg')"
        ),
        row(["--dcn-boot-timeout", "0"], "argument --dcn-boot-timeout: 0 is out of range: use 1 to 10800 seconds"),
        row(["--dcn-boot-timeout", "soon"], "argument --dcn-boot-timeout: 'soon' is not a number of seconds"),
        row(
            ["--dcn-firmware", "efi"],
            "argument --dcn-firmware: invalid choice: 'efi' (choose from 'auto', 'bios', 'uefi')",
        ),
        row(["--dcn-repeat", "0"], "argument --dcn-repeat: 0 is out of range: use 1 to 1000"),
        row(
            ["--dcn-threshold", "nonsense"],
            "--dcn-threshold: threshold 'nonsense': write FAULT.TIMING=SECONDS, e.g. power-off.downtime=60",
        ),
        row(["--dcn-threshold", "power-off.downtime=-5"], "'-5' is not a number of seconds, 0 or more"),
        row(["--dcn-threshold", "meteor.downtime=5"], "unknown fault 'meteor'; use default or one of: power-off"),
        row(["--dcn-threshold", "power-off.lunch=5"], "unknown timing 'lunch'; use one of: detection"),
        row(["--dcn-threshold", "grow-shrink.recovery=5"], "unknown timing 'recovery'; use one of: downtime"),
        # No --dcn-image with a recipe: the image would make the recipe moot.
        row(["--dcn-recipe", "nosuch"], "--dcn-recipe: no image recipe named 'nosuch'; known recipes:", (NO_LIBVIRT,)),
        row(["--dcn-recipe", "/x/r.toml"], "--dcn-recipe: cannot read image recipe /x/r.toml", (NO_LIBVIRT,)),
        row(["--dcn-name", "Bad_Name"], "argument --dcn-name: fleet name 'Bad_Name' is not valid: use 1-20 characters"),
        # No --dcn-libvirt-uri: its absence is the mistake.
        row(["--dcn-netns", "somewhere"], "--dcn-netns only applies with --dcn-libvirt-uri", (IMAGE,)),
        row(["--dcn-netns", "dcnlab-rb-nosuch"], "--dcn-netns dcnlab-rb-nosuch: no such network namespace (see `ip"),
    ],
)
def test_pytest_option_values(
    args: list[str], message: str, safety: tuple[str, ...], sandbox: Sandbox, tiny_image: Path
) -> None:
    # A valid image and no reachable libvirt: were the bad value accepted, the
    # run would fail in a fixture (exit 1), not build an image or boot.
    extra = ["--dcn-image", str(tiny_image)] if IMAGE in safety else []
    if NO_LIBVIRT in safety:
        extra += ["--dcn-libvirt-uri", NOWHERE]
    error = usage_error(sandbox.pytest(*args, *extra))
    assert message in error
    assert sandbox.leaks() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(args, message, id=" ".join(args))
        for args, message in [
            (["--nodes", "40"], "--nodes 40: a fleet needs 1 to 32 nodes"),
            (["--networks", "9"], "--networks 9: a fleet needs 1 to 8 networks"),
            (["--memory", "100"], "--memory 100 MiB is too small: use at least 768 MiB"),
            (["--nodes", "0"], "argument --nodes: 0 is too small: use 1 or more"),
            (["--accel", "bogus"], "argument --accel: invalid choice: 'bogus'"),
            (["--boot-timeout", "0.5"], "--boot-timeout 0.5: use 1 to 10800 seconds"),
            (["--firmware", "efi"], "argument --firmware: invalid choice: 'efi'"),
            (["--netns", "somewhere"], "--netns only applies with --libvirt-uri"),
            (["--recipe", "nosuch"], "no image recipe named 'nosuch'"),
            (["--recipe", "dcn-debian", "--image", "/x.qcow2"], "give either --image PATH or --recipe NAME, not both"),
        ]
    ],
)
def test_cli_option_values(args: list[str], message: str, sandbox: Sandbox) -> None:
    error = cli_error(sandbox.cli("fleet", "up", "--name", sandbox.name, *args))
    assert message in error
    assert sandbox.leaks() == []


def test_cli_netns_that_does_not_exist_creates_nothing(sandbox: Sandbox, tiny_image: Path) -> None:
    result = sandbox.cli(
        "fleet", "up", "--name", sandbox.name, "--image", str(tiny_image), "--accel", "tcg",
        "--libvirt-uri", NOWHERE, "--netns", "dcnlab-robustness-nosuch",
    )  # fmt: skip
    error = cli_error(result)
    assert "--netns dcnlab-robustness-nosuch: no such network namespace (see `ip netns list`)" in error
    # Refused before the run directory existed: no teardown, so no teardown noise.
    assert "teardown" not in result.stderr
    assert sandbox.leaks() == []


def test_cli_bad_fleet_name(sandbox: Sandbox) -> None:
    error = cli_error(sandbox.cli("fleet", "up", "--name", "Bad_Name"))
    assert "argument --name: fleet name 'Bad_Name' is not valid: use 1-20 characters" in error
    assert sandbox.leaks() == []


def spec_row(name: str, needle: str, message: str) -> Any:
    """An invalid spec of suites/specs/invalid, the text of its offending line, the message."""
    return pytest.param(INVALID_SPECS / name, needle, message, id=name)


SPECS = [
    spec_row("unknown_resource_type.yaml", "type: nginx", "unknown resource type 'nginx'"),
    spec_row(
        "constraint_missing_resource.yaml", "with: db", "no resource or group 'db' in workloads (known: http, vip)"
    ),
    spec_row("link_on_missing_network.yaml", "- 2", "start the fleet with --networks 3"),
]


@pytest.fixture
def broken_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text("cluster:\n  name: dcn\nworkloads: [\n  - id: vip\n")
    return path


@pytest.fixture
def misspelt_key(tmp_path: Path) -> Path:
    path = tmp_path / "typo.yaml"
    path.write_text("cluster:\n  name: dcn\n  tokn: 3000\nworkloads:\n  - id: vip\n    type: ipaddr2\n")
    return path


@pytest.mark.parametrize(("spec", "needle", "message"), SPECS)
def test_pytest_invalid_spec_is_file_and_line_before_boot(
    spec: Path, needle: str, message: str, sandbox: Sandbox, tiny_image: Path
) -> None:
    result = sandbox.pytest(
        "--dcn-cluster-spec", str(spec), "--dcn-image", str(tiny_image), "--dcn-libvirt-uri", NOWHERE
    )
    error = usage_error(result)
    assert error.startswith(f"ERROR: {spec}:{line_of(spec, needle)}: "), error
    assert message in error
    assert sandbox.leaks() == []


@pytest.mark.parametrize(
    ("fixture", "line", "message"),
    [
        ("broken_yaml", 4, "not valid YAML"),
        ("misspelt_key", 3, "unknown key 'tokn' in cluster; known keys: name, nodes, links, corosync"),
    ],
)
def test_pytest_spec_syntax_errors(
    fixture: str, line: int, message: str, request: pytest.FixtureRequest, sandbox: Sandbox, tiny_image: Path
) -> None:
    spec: Path = request.getfixturevalue(fixture)
    result = sandbox.pytest(
        "--dcn-cluster-spec", str(spec), "--dcn-image", str(tiny_image), "--dcn-libvirt-uri", NOWHERE
    )
    error = usage_error(result)
    assert re.match(rf"ERROR: {re.escape(str(spec))}:{line}: ", error), error
    assert message in error
    assert sandbox.leaks() == []


def test_pytest_missing_spec_file(sandbox: Sandbox) -> None:
    error = usage_error(sandbox.pytest("--dcn-cluster-spec", "/nonexistent/spec.yaml"))
    assert "argument --dcn-cluster-spec: /nonexistent/spec.yaml: no such cluster spec file" in error
    assert sandbox.leaks() == []


@pytest.mark.parametrize("spec", ["unknown_resource_type.yaml", "constraint_missing_resource.yaml"])
def test_cli_cluster_up_invalid_spec_names_file_and_line(spec: str, sandbox: Sandbox) -> None:
    # The spec is read before the fleet is looked up: the spec's error wins.
    path = INVALID_SPECS / spec
    error = cli_error(sandbox.cli("cluster", "up", "--name", sandbox.name, "--spec", str(path)))
    assert re.match(rf"dcnlab: error: {re.escape(str(path))}:\d+: ", error), error
    assert sandbox.leaks() == []
