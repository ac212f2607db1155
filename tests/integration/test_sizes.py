"""The wide end of the supported range: nodes on the most networks a fleet
may have (MAX_NETWORKS: eight NICs per node on fixed PCI slots, one address
each). The one-node end is covered by test_external.py, three nodes and more
by the cluster tests; two nodes here because under TCG every node's boot
costs the 2-core host about a minute of CPU (four took 163 s of CI), and the
node count is not where sizing goes wrong."""

from __future__ import annotations

import os

import pytest

from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.gc import remnants
from dcnlab.fleet.spec import MAX_NETWORKS, FleetSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize(("nodes", "networks"), [(2, MAX_NETWORKS)])
def test_fleet_of_size(nodes: int, networks: int) -> None:
    from dcnlab.image.builder import build_image

    name = f"sz{nodes}x{networks}-{os.getpid()}"
    fleet = Fleet.up(FleetSpec(name=name, nodes=nodes, networks=networks, memory_mib=768), build_image())
    try:
        assert len(fleet.nodes) == nodes
        for node in fleet.nodes.values():
            last = networks - 1
            assert node.run("hostname", network=last).stdout.strip() == node.name
    finally:
        fleet.down()
    assert remnants(name) == []
