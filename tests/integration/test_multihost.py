"""A fleet over two hosts of the local lab (docs/multihost.md): nodes placed
on both, networks stretched between them, each host fencing its own nodes
through its own device, a partition across hosts, a host whose libvirt stops
answering, and a killed lab run that ``dcnlab gc`` removes from both hosts.

Real parts only: two embedded libvirtds in namespaces of their own, the
second driven over libvirt's TLS transport from the underlay namespace,
VXLAN between them, fence_virtd on each, Pacemaker in the guests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dcnlab.certify.hostfaults import HostFaultCase, device_finding, play_host_fault
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.core.errors import ClusterError, HypervisorError
from dcnlab.core.owner import ProcessId, RunRecord
from dcnlab.core.wait import wait_until
from dcnlab.faults import Fault, FaultContext, HostPacketLoss
from dcnlab.faults.base import injected
from dcnlab.fleet.fleet import Fleet, run_dir_of
from dcnlab.fleet.gc import remnants
from dcnlab.fleet.libvirt.multihost import MultiHostProvider
from dcnlab.fleet.spec import FleetSpec
from dcnlab.observe.journal import record_journals
from dcnlab.observe.timeline import Recorder
from tests.integration.cli import DCNLAB, dcnlab

pytestmark = [pytest.mark.integration, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab_cluster(dcn_image: Any, dcn_options: Any) -> Iterator[Cluster]:
    """3 nodes, 2 networks, 2 lab hosts, the default spec's cluster on them.
    These tests run in a session of their own (marker ``lab``, .ci/run): two
    3-node fleets under TCG on 2 cores starve each other's guests
    (docs/measurements.md)."""
    spec = FleetSpec(name=f"lab{os.getpid()}"[:20], nodes=3, networks=2)
    lab = Fleet.up(spec, dcn_image, accel=dcn_options.accel, lab_hosts=2, progress=print)
    try:
        yield Cluster.up(lab, load_spec(DEFAULT_SPEC))
    finally:
        lab.down()
        assert remnants(spec.name) == []


def test_nodes_are_spread_over_both_hosts_and_reach_each_other(lab_cluster: Cluster) -> None:
    fleet = lab_cluster.fleet
    assert fleet.record.placement == {"dcn1": "h1", "dcn2": "h2", "dcn3": "h1"}
    machines = fleet.machines
    assert isinstance(machines, MultiHostProvider)
    # Each host's own libvirt has its nodes' domains, and no other host's.
    for host, provider in machines.providers.items():
        for node in fleet.nodes.values():
            want = "running" if fleet.host_of(node.name) == host else "absent"
            assert provider.state(node.domain) == want, f"{node.domain} on {host}"
    assert fleet.status()["hosts"][1]["uri"].startswith("qemu+tls://")
    dcn1, dcn2 = fleet.node("dcn1"), fleet.node("dcn2")
    for net in range(fleet.spec.networks):
        # A full 1500-byte frame crosses hosts unfragmented: the underlay carries VXLAN's 50 bytes.
        dcn1.run(["ping", "-c1", "-W3", "-M", "do", "-s", "1472", dcn2.address(net)], timeout=30)


def test_a_fence_goes_through_the_device_of_the_node_s_own_host(lab_cluster: Cluster) -> None:
    cluster, fleet = lab_cluster, lab_cluster.fleet
    dcn1 = fleet.node("dcn1")
    # Pacemaker's own view: only host h2's device may fence dcn2.
    can = dcn1.run(["stonith_admin", "--list", "dcn2"], timeout=60).stdout.split()
    assert [d for d in can if d.startswith("fence_dcn")] == ["fence_dcn-h2"]
    # Read as the failover verdict reads it (record_journals, device_finding):
    # from every running node, on the host's clock with the guests' offsets
    # allowed for (they differ by seconds under TCG).
    recorder = Recorder()
    since = time.monotonic() - 5.0
    result = cluster.fence_node("dcn2", via="dcn1")
    try:
        # Confirmed by the host that runs it: h2's libvirt reports the domain off.
        machines = fleet.machines
        assert isinstance(machines, MultiHostProvider)
        assert machines.providers["h2"].state(fleet.node("dcn2").domain) == "shut-off"
        record_journals(fleet, recorder, since)
        finding = device_finding(recorder.events(), "dcn2", "h2", "fence_dcn-h2", since)
        assert finding.ok, str(finding)  # pacemaker-fenced: "targeting dcn2 using fence_dcn-h2 returned 0"
        assert result.seconds_to_off > 0
    finally:
        # The later tests need dcn2 back, whatever this one found.
        cluster.rejoin("dcn2")


def test_the_placement_preflight_refuses_a_device_mapping_another_host_s_node(lab_cluster: Cluster) -> None:
    dcn1 = lab_cluster.fleet.node("dcn1")
    device = ["crm_resource", "--resource", "fence_dcn-h2"]
    right = dcn1.run([*device, "--get-parameter", "pcmk_host_map"], timeout=60).stdout.strip()
    dcn1.run([*device, "--set-parameter", "pcmk_host_map", "--parameter-value", f"{right};dcn3:dcnlab-dcn3"])
    try:
        with pytest.raises(ClusterError, match=r"fence_dcn-h2 maps .*dcn3 not on host h2"):
            lab_cluster.check_fence_devices(dcn1)
    finally:
        dcn1.run([*device, "--set-parameter", "pcmk_host_map", "--parameter-value", right], timeout=60)
    lab_cluster.check_fence_devices(dcn1)


def test_a_partition_across_hosts_cuts_only_the_pair(lab_cluster: Cluster) -> None:
    fleet = lab_cluster.fleet
    dcn1, dcn2, dcn3 = (fleet.node(n) for n in ("dcn1", "dcn2", "dcn3"))
    a = [(dcn1.domain, dcn1.plan.nics[0].mac)]
    b = [(dcn2.domain, dcn2.plan.nics[0].mac)]
    fleet.machines.block(a, b)
    try:
        assert not dcn1.run(["ping", "-c2", "-W2", dcn2.address(0)], timeout=30, check=False).ok
        dcn1.run(["ping", "-c1", "-W3", dcn3.address(0)], timeout=30)  # same host: untouched
        dcn3.run(["ping", "-c1", "-W3", dcn2.address(0)], timeout=30)  # across hosts: untouched
    finally:
        fleet.machines.unblock(a, b)
    wait_until(
        lambda: dcn1.run(["ping", "-c1", "-W2", dcn2.address(0)], timeout=30, check=False).ok,
        timeout=60,
        what="dcn1 to reach dcn2 again once the partition is healed",
        interval=1.0,
    )


def test_packet_loss_between_hosts_drops_some_and_heals(lab_cluster: Cluster) -> None:
    fleet = lab_cluster.fleet
    dcn1, dcn2 = fleet.node("dcn1"), fleet.node("dcn2")

    def received() -> int:
        out = dcn1.run(["ping", "-q", "-c", "40", "-i", "0.2", "-W", "1", dcn2.address(0)], timeout=120, check=False)
        return int(out.stdout.split(" received")[0].rsplit(",", 1)[-1].strip())

    # 30% each way at h2: a request and its reply both cross, about half get through.
    with injected(HostPacketLoss("h2", 30), FaultContext.of(lab_cluster, Recorder())):
        lossy = received()
    assert 0 < lossy < 40, f"{lossy} of 40 pings answered under 30% loss each way"
    assert received() == 40


def test_a_host_whose_libvirt_stops_answering_raises_instead_of_hanging(lab_cluster: Cluster) -> None:
    fleet = lab_cluster.fleet
    assert fleet.lab is not None
    h2 = fleet.lab.host("h2")
    pid = int((h2.hv.root / "run" / "libvirtd.pid").read_text())
    provider = fleet.new_provider()  # a connection of its own, opened while h2 answers
    provider.state(fleet.node("dcn2").domain)
    started = ProcessId.of(pid)
    assert started is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(HypervisorError):
            provider.state(fleet.node("dcn2").domain)
        # Keepalive: 5 s x (3 + 1) without an answer, then the reconnect's 30 s deadline.
        assert time.monotonic() - t0 < 90
    finally:
        os.kill(pid, signal.SIGCONT)
        provider.close()
    assert fleet.machines.state(fleet.node("dcn2").domain) == "running"


def test_a_lost_host_s_resources_stay_blocked_until_it_is_back(lab_cluster: Cluster) -> None:
    """The host-fault suite's case (suites/hosts) with something of the spec's
    surely on the lost host: its resources must stay blocked. The partition
    is the suite's smoke case, which CI runs on a lab (.ci/run)."""
    cluster = lab_cluster
    cluster.place("witness", "dcn2")  # dcn2 runs on h2
    healed: list[Any] = []
    with contextlib.ExitStack() as stack:

        def inject(fault: Fault) -> None:
            healed.append(stack.enter_context(injected(fault, FaultContext.of(cluster, Recorder()))))

        outcome = play_host_fault(cluster, HostFaultCase("host-loss", "h2"), inject, progress=print)
        assert outcome.expectation.blocked == ("witness",), outcome.expectation.describe()
        assert outcome.passed, outcome.message()
    assert healed[0].restore_seconds is not None, healed[0].heal_errors
    assert cluster.fleet.domain_state("dcn2") == "running"


def test_sigkill_of_a_lab_run_then_gc_removes_it_from_both_hosts() -> None:
    name = f"labk{os.getpid()}"[:20]
    proc = subprocess.Popen(
        [DCNLAB, "fleet", "up", "--name", name, "--nodes", "2", "--lab-hosts", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:

        def both_hosts_have_a_node() -> bool:
            assert proc.poll() is None, "the run ended before it could be killed"
            return len(set(RunRecord.load(run_dir_of(name)).placement.values())) == 2

        wait_until(both_hosts_have_a_node, timeout=600, what=f"{name} to place a node on each host", interval=0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = remnants(name)
        assert f"namespace dcnlab-{name}.h2" in left, left
        assert f"namespace dcnlab-{name}.ul" in left, left
        gc = dcnlab("gc")
        assert gc.returncode == 0, gc.stdout + gc.stderr
        assert remnants(name) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        if run_dir_of(name).exists():
            dcnlab("fleet", "down", "--name", name)
