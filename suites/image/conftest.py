"""Fixtures of the image preflight suite: the cases it derives from the
session's cluster spec, and its closing report (the package versions found on
each node, printed after the test summary)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from dcnlab.certify.preflight import (
    AgentNeed,
    ContainerNeed,
    Family,
    ImageNeeds,
    PreflightError,
    UnitNeed,
    os_family,
    requirements_of,
)
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.fleet.node import Node
from dcnlab.pytest_plugin.plugin import session_spec

VERSIONS = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[VERSIONS] = {}


def _needs(spec: ClusterSpec) -> ImageNeeds:
    try:
        return requirements_of(spec)
    except PreflightError as err:
        raise pytest.UsageError(str(err)) from err


def _cases(items: Sequence[UnitNeed | ContainerNeed | AgentNeed], none: str) -> list[Any]:
    """One case per spec item, its id the resource's id; or one skipped case
    saying why the spec asks for nothing of the kind (pytest's own empty
    parameter set would say only "got empty parameter set")."""
    if not items:
        return [pytest.param(None, id="none", marks=pytest.mark.skip(reason=none))]
    return [pytest.param(item, id=item.resource) for item in items]


# trylast: after the dcnlab plugin's node parametrization, so ids read
# node first, like every per-node case: test_systemd_unit[dcn1-http].
@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {"unit_need", "image_need", "agent_need", "fence_need"} & set(metafunc.fixturenames)
    if not wanted:
        return
    spec = session_spec(metafunc.config)
    needs = _needs(spec)
    if "unit_need" in wanted:
        none = f"the cluster spec {spec.path} has no systemd resource: no unit to check"
        metafunc.parametrize("unit_need", _cases(needs.units, none))
    if "image_need" in wanted:
        none = f"the cluster spec {spec.path} has no podman resource: no container image to check"
        metafunc.parametrize("image_need", _cases(needs.containers, none))
    if "agent_need" in wanted:
        none = f"the cluster spec {spec.path} has no resource: no resource agent to check"
        metafunc.parametrize("agent_need", _cases(needs.agents, none))
    if "fence_need" in wanted:
        fence = needs.fence_agent
        if fence is None:
            none = f"fencing.method is none in the cluster spec {spec.path}: no fence agent to check"
            metafunc.parametrize("fence_need", _cases((), none))
        else:
            # The fence method names the case: test_fence_agent[dcn1-fence_virt].
            metafunc.parametrize("fence_need", [pytest.param(fence, id=spec.fencing.method)])


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
