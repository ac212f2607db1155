"""The ready-state cache end to end (dcnlab.ready.store).

The session's cluster was cached when it was built (or it came from the
cache itself). A second fleet, under another name, restores that entry while
the session's fleet is paused: it must pass the health check a built cluster
passes (Cluster.verify_ready, inside ready.restore), answer only to its own
run's SSH key, run on the host's time, fence through its own path by its own
domain names, and leave nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import STONITH_ID, ClusterSpec
from dcnlab.core import paths
from dcnlab.ready import cluster as ready
from dcnlab.ready import store as readystate

pytestmark = pytest.mark.integration


def test_another_fleet_restores_the_cached_cluster(
    cluster: Cluster, dcn_options: Any, dcn_image: Any, cluster_spec: ClusterSpec
) -> None:
    if dcn_options.ready_cache == "off":
        pytest.skip("--dcn-ready-cache off (or --dcn-libvirt-uri): nothing was cached")
    key = ready.key_for(dcn_options.spec, dcn_image, cluster_spec, cluster.fleet.accel.domain_type)
    state = readystate.lookup(key)
    assert state is not None, f"the session's cluster was not cached: no {key.digest} in {readystate.ready_dir()}"
    name = f"{cluster.fleet.name[:16]}-rs"
    with cluster.fleet.paused():
        other = ready.restore(replace(dcn_options.spec, name=name), dcn_image, state, cluster_spec, progress=print)
        fleet = other.fleet
        try:
            assert fleet.name == name
            assert other.timings["converged"] > 0  # Cluster.restored ran verify_ready
            first = fleet.node("dcn1")
            host_map = first.run(["crm_resource", "--resource", STONITH_ID, "--get-parameter", "pcmk_host_map"]).stdout
            for node in fleet.nodes.values():
                assert f"{node.name}:{node.domain}" in host_map, f"pcmk_host_map still names other domains: {host_map}"
                keys = [k for k in node.run(["cat", "/root/.ssh/authorized_keys"]).stdout.splitlines() if k.strip()]
                own = fleet.access.key.with_name(fleet.access.key.name + ".pub").read_text().strip()
                assert keys == [own], f"{node.name} accepts other keys than this run's: {keys}"
                guest = float(node.run(["date", "+%s.%N"]).stdout)
                assert abs(guest - time.time()) < 10, f"{node.name}'s clock is {guest - time.time():+.0f}s off"
            fenced = other.fence_node("dcn3")
            assert fleet.domain_state("dcn3") == "shut-off"
            assert fenced.seconds_to_off < 60
        finally:
            fleet.down()
    assert not (paths.runs_dir() / name).exists()
    # The session's cluster, frozen meanwhile, is whole again.
    cluster.verify_ready()
