"""A small libvirt domain XML for unit tests: one node of a two-network
fleet, rendered by dcnlab.fleet.libvirt.domainxml with placeholder paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dcnlab.fleet.libvirt.domainxml import domain_xml
from dcnlab.fleet.provider import BootSpec, Owner
from dcnlab.fleet.spec import FleetSpec


def small_domain_xml(
    fleet: str,
    index: int,
    run: str,
    uuid: str | None = None,
    *,
    networks: int = 2,
    seed: Path | None = None,
    oem_strings: Sequence[str] = (),
) -> str:
    plan = FleetSpec(name=fleet).plan()
    return domain_xml(
        plan.node(index, networks=networks),
        owner=Owner(run, fleet),
        domain_type="qemu",
        vcpus=1,
        memory_mib=1024,
        disk=Path("/d.qcow2"),
        console_log=Path("/c.log"),
        boot=BootSpec(None, None, ""),
        networks={i: plan.network(i) for i in range(networks)},
        uuid=uuid,
        seed=seed,
        oem_strings=oem_strings,
    )
