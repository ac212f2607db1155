"""``@pytest.mark.destructive``: a test that may leave the session's cluster
broken gets a fresh one, and so does the test after it (dcnlab/pytest_plugin/plugin.py,
``cluster``). Fresh: every node replaced, restored from the ready-state cache
when the session has an entry (else booted and built again).

The three tests below run in this order (pytest keeps a class's order) and
depend on it: run the class, not one of its tests (under pytest-xdist, with
``--dist loadscope``, which keeps a class on one worker).
"""

from __future__ import annotations

import pytest

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.core.parallel import on_each
from dcnlab.report.timing import RunReport

pytestmark = pytest.mark.integration

USED = "/var/tmp/dcnlab-used-by-a-test"
BROKEN = "/var/tmp/dcnlab-broken-by-a-destructive-test"


def _mark_all(cluster: Cluster, path: str) -> None:
    on_each(
        cluster.members(),
        lambda node: node.run(["touch", path], timeout=60 * cluster.scale),
        label=lambda node: node.name,
        what=f"leaving {path} on every node",
    )


def _marked(cluster: Cluster, path: str) -> list[str]:
    return [n.name for n in cluster.fleet.nodes.values() if n.run(["test", "-e", path], check=False).ok]


class TestDestructive:
    def test_a_test_uses_the_cluster(self, cluster: Cluster) -> None:
        _mark_all(cluster, USED)
        assert sorted(_marked(cluster, USED)) == sorted(cluster.fleet.nodes)

    @pytest.mark.destructive
    def test_a_destructive_test_gets_a_fresh_cluster(
        self, cluster: Cluster, timing_report: RunReport, request: pytest.FixtureRequest
    ) -> None:
        fresh = timing_report.clusters[-1]
        assert (fresh.before, fresh.why) == (request.node.nodeid, "destructive test"), timing_report.clusters
        assert _marked(cluster, USED) == [], "the nodes the test before used are still there"
        # Break it beyond what a heal repairs: dcn3 fenced and left off, a mark left.
        _mark_all(cluster, BROKEN)
        cluster.fence_node("dcn3")
        assert cluster.fleet.domain_state("dcn3") == "shut-off"

    def test_the_test_after_gets_a_fresh_cluster_too(
        self, cluster: Cluster, timing_report: RunReport, request: pytest.FixtureRequest
    ) -> None:
        fresh = timing_report.clusters[-1]
        assert (fresh.before, fresh.why) == (request.node.nodeid, "after a destructive test"), timing_report.clusters
        assert cluster.fleet.domain_state("dcn3") == "running"
        assert _marked(cluster, BROKEN) == [], "the nodes the destructive test broke are still there"
        state = cluster.verify_ready()
        assert sorted(state.online_nodes()) == sorted(cluster.fleet.nodes)
