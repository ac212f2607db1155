"""A fleet on an existing hypervisor (``--libvirt-uri``): it creates only its
own objects there, reaches guests through the given namespace, and neither
teardown nor gc touches the hypervisor's other domains and networks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.gc import collect, remnants
from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor
from dcnlab.fleet.spec import FleetSpec

pytestmark = pytest.mark.integration

FOREIGN_DOMAIN = """<domain type='qemu'><name>someone-elses-vm</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""
FOREIGN_NETWORK = "<network><name>someone-elses-net</name><bridge name='foreignbr0'/></network>"


@pytest.fixture
def foreign_hypervisor(tmp_path: Path) -> Iterator[EmbeddedHypervisor]:
    """Stands in for a user's own libvirt: not created by the fleet under test,
    holding a domain and a network that are not dcnlab's."""
    hv = EmbeddedHypervisor.start(tmp_path / "hv", f"ext{os.getpid()}", "not-dcnlab", lambda _h: None)
    try:
        conn = hv.connect()
        conn.defineXML(FOREIGN_DOMAIN)
        conn.networkDefineXML(FOREIGN_NETWORK).create()
        conn.close()
        yield hv
    finally:
        hv.stop()


def test_one_node_fleet_on_an_existing_hypervisor(foreign_hypervisor: EmbeddedHypervisor) -> None:
    from dcnlab.image.builder import build_image

    name = f"ext{os.getpid()}"
    fleet = Fleet.up(
        FleetSpec(name=name, nodes=1, networks=2),
        build_image(),
        libvirt_uri=foreign_hypervisor.uri,
        netns=foreign_hypervisor.netns,
    )
    try:
        node = fleet.nodes["dcn1"]
        assert node.run("hostname", network=1).stdout.strip() == "dcn1"
        report = collect()  # our owner is alive: nothing of ours is garbage
        assert not [r for r in report.removed if name in r]
    finally:
        fleet.down()
    assert remnants(name) == []
    conn = foreign_hypervisor.connect()
    try:
        assert [d.name() for d in conn.listAllDomains()] == ["someone-elses-vm"]
        assert [n.name() for n in conn.listAllNetworks()] == ["someone-elses-net"]
    finally:
        conn.close()
    assert Path(f"/run/netns/{foreign_hypervisor.netns}").exists()
