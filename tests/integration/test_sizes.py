"""The large end of the supported range: eight nodes on three networks (the
one-node end is covered by test_external.py)."""

from __future__ import annotations

import os

import pytest

from harness.fleet import Fleet
from harness.gc import remnants
from harness.spec import FleetSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize(("nodes", "networks"), [(8, 3)])
def test_fleet_of_size(nodes: int, networks: int) -> None:
    from images.builder import build_image

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
