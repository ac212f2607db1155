"""Which fleet nodes count as cluster members while a spare waits to join,
and the host priority a joining node runs at."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.cluster.bootstrap import Cluster
from harness.cluster.spec import DEFAULT_SPEC, load_spec
from harness.errors import ClusterError, HypervisorError
from harness.fleet import Fleet
from harness.hypervisor import EmbeddedHypervisor


def _cluster(states: dict[str, str]) -> Cluster:
    nodes = {name: SimpleNamespace(name=name) for name in states}
    fleet: Any = SimpleNamespace(nodes=nodes, domain_state=lambda name: states[name])
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


@pytest.mark.skipif(os.geteuid() != 0, reason="setting a nice value back to 0 needs root, as the harness has")
def test_host_priority_of_a_nodes_qemu(tmp_path: Path) -> None:
    """A real process stands in for QEMU: its pid file where the embedded
    libvirtd writes one, every thread re-niced; another hypervisor's QEMU is
    not touched."""
    fleet: Any = SimpleNamespace(
        hv=EmbeddedHypervisor(tmp_path, "dcnlab-t"),
        node=lambda name: SimpleNamespace(domain=f"dcnlab-{name}"),
    )
    with subprocess.Popen(["sleep", "60"]) as qemu:
        try:
            (tmp_path / "run" / "qemu").mkdir(parents=True)
            (tmp_path / "run" / "qemu" / "dcnlab-dcn4.pid").write_text(f"{qemu.pid}\n")
            assert Fleet.set_host_priority(fleet, "dcn4", 10)
            assert os.getpriority(os.PRIO_PROCESS, qemu.pid) == 10
            assert Fleet.set_host_priority(fleet, "dcn4", 0)
            assert os.getpriority(os.PRIO_PROCESS, qemu.pid) == 0
            with pytest.raises(HypervisorError, match=r"cannot find dcn5's QEMU process \(.*dcnlab-dcn5.pid\)"):
                Fleet.set_host_priority(fleet, "dcn5", 10)
            fleet.hv = SimpleNamespace(uri="qemu+ssh://elsewhere/system")
            assert not Fleet.set_host_priority(fleet, "dcn4", 10)
            assert os.getpriority(os.PRIO_PROCESS, qemu.pid) == 0
        finally:
            qemu.kill()
