"""Which fleet nodes count as cluster members while a spare waits to join."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.core.errors import ClusterError
from dcnlab.fleet.fleet import Fleet


def _cluster(states: dict[str, str]) -> Cluster:
    nodes = {name: SimpleNamespace(name=name) for name in states}
    fleet: Any = SimpleNamespace(nodes=nodes, domain_state=lambda name: states[name])
    fleet.running = lambda: Fleet.running(fleet)  # the real method, on the states above
    return Cluster(fleet, load_spec(DEFAULT_SPEC), None, progress=lambda _line: None)


def test_a_spare_is_no_member_until_it_joins() -> None:
    cluster = _cluster({"dcn1": "running", "dcn2": "running", "dcn3": "shut-off", "dcn4": "running"})
    cluster._spares.add("dcn4")
    # dcn3 is off (fenced, say): not a member either; dcn4 runs but has not joined.
    assert [n.name for n in cluster.members()] == ["dcn1", "dcn2"]
    assert cluster.spares == ["dcn4"]


def test_only_a_spare_joins_or_is_dropped() -> None:
    cluster = _cluster({"dcn1": "running", "dcn2": "running"})
    with pytest.raises(ClusterError, match=r"dcn2 is not a spare of cluster dcn: boot_spare\(\) first"):
        cluster.add_node(cluster.fleet.nodes["dcn2"])
    with pytest.raises(ClusterError, match=r"dcn2 is not a spare of cluster dcn \(spares: \[\]\)"):
        cluster.drop_spare("dcn2")
