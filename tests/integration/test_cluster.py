"""The default cluster spec on the session fleet: formed with two knet links,
every resource started, a node fenced through the configured agent and seen
off by libvirt, then brought back and rejoined."""

from __future__ import annotations

import pytest

from dcnlab.cluster.bootstrap import Cluster

pytestmark = pytest.mark.integration


def test_cluster_forms_with_one_knet_link_per_network(cluster: Cluster) -> None:
    state = cluster.state()
    assert sorted(state.online_nodes()) == sorted(cluster.fleet.nodes)
    assert state.quorate
    for node in cluster.fleet.nodes.values():
        links = cluster.links(node)
        assert links.all_connected(), f"{node.name}: {links}"
        assert len(links.links) == cluster.fleet.spec.networks


def test_the_cold_start_leaves_only_the_spec_s_properties(cluster: Cluster) -> None:
    # The bootstrap seeds dc-deadtime for the first start (dcnlab/cluster/pcs.py)
    # and deletes it again; the spec's properties are all there.
    node = next(iter(cluster.fleet.nodes.values()))
    query = ["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime", "--query", "--quiet"]
    if "dc-deadtime" not in dict(cluster.spec.cluster.properties):
        res = node.run(query, check=False)
        assert res.stdout.strip() == "", f"dc-deadtime is still set: {res.stdout!r}"
    for name, value in cluster.spec.cluster.properties:
        got = node.run(["crm_attribute", "--type", "crm_config", "--name", name, "--query", "--quiet"])
        assert got.stdout.strip() == value, f"{name}: {got.stdout.strip()!r}, the spec says {value!r}"


def test_every_resource_of_the_spec_is_started(cluster: Cluster) -> None:
    state = cluster.state()
    for rsc in cluster.spec.resources:
        assert state.started(rsc.id), f"{rsc.id} is not started: {state.instances(rsc.id)}"
    assert not state.failures


def test_fence_a_node_and_rejoin(cluster: Cluster) -> None:
    target = "dcn3"
    result = cluster.fence_node(target)
    assert cluster.fleet.domain_state(target) == "shut-off"
    state = cluster.wait_converged()
    assert target not in state.online_nodes()
    events = state.fence_events(target)
    assert events, "the fencing history does not show the fence"
    assert result.seconds_to_off < 60 * cluster.scale
    cluster.rejoin(target)
    assert target in cluster.state().online_nodes()
