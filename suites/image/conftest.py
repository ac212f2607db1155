"""Fixtures of the image preflight suite: what the session's cluster spec
needs of the image, and its closing report (the package versions found on
each node, printed after the test summary)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dcnlab.certify import ClusterSpec, Node
from dcnlab.certify.preflight import Family, ImageNeeds, PreflightError, os_family, requirements_of

VERSIONS = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[VERSIONS] = {}


def _needs(spec: ClusterSpec) -> ImageNeeds:
    try:
        return requirements_of(spec)
    except PreflightError as err:
        raise pytest.UsageError(str(err)) from err


@pytest.fixture(scope="session")
def image_needs(cluster_spec: ClusterSpec) -> ImageNeeds:
    """What the session's cluster spec needs of the image."""
    return _needs(cluster_spec)


@pytest.fixture(scope="session")
def family(dcn_node: Node) -> Family:
    """``deb`` or ``rpm``: which package names and fixes apply to this node."""
    text = dcn_node.run(["cat", "/etc/os-release"], timeout=30).stdout
    try:
        return os_family(text)
    except PreflightError as err:
        pytest.fail(f"{dcn_node.name}: {err}", pytrace=False)


@pytest.fixture
def report_versions(pytestconfig: pytest.Config, record_property: Callable[[str, object], None]) -> Any:
    """Record ``{package: version}`` of a node: a JUnit property each, and the closing report."""

    def record(node: str, versions: dict[str, str]) -> None:
        for name, version in versions.items():
            record_property(f"{node}:{name}", version)
        pytestconfig.stash[VERSIONS].setdefault(node, {}).update(versions)

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(VERSIONS, {})
    if not found:
        return
    terminalreporter.section("dcnlab image preflight: package versions")
    for node in sorted(found):
        versions = found[node]
        terminalreporter.write_line(f"{node}: " + ", ".join(f"{p} {v}" for p, v in sorted(versions.items())))
