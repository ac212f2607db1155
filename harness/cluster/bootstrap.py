"""The cluster on a fleet: build it from a spec with pcs, read its state,
fence a node and bring it back.

Every step has a deadline scaled by the fleet's accelerator, and every read of
state comes from the nodes themselves (``crm_mon --output-as=xml``,
``corosync-cfgtool``, ``corosync-quorumtool``) or, for power, from libvirt: a
fence counts only when libvirt reports the domain off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.cluster.corosync import LinkStatus, QuorumStatus, parse_cfgtool, parse_quorumtool
from harness.cluster.crm import CRM_MON_ARGV, ClusterState, parse_crm_mon
from harness.cluster.fencing import FenceEndpoint, fence_virt_argv, install_key, start_fence_virtd
from harness.cluster.pcs import bootstrap_plan
from harness.cluster.spec import ClusterSpec, load_spec
from harness.errors import ClusterError, CommandError, ConfigError, DcnlabError
from harness.fleet import Fleet
from harness.node import Node
from harness.proc import run_local
from harness.wait import Deadline, wait_until

Progress = Callable[[str], None]
PCSD_PORT = 2224
# Seconds under KVM; multiplied by the accelerator's scale (x4 under TCG).
PCSD_READY = 60.0
CONVERGE = 90.0
FENCE_CONFIRM = 30.0
REJOIN = 120.0


@dataclass(frozen=True)
class FenceResult:
    target: str
    requested_by: str
    seconds_to_confirmed: float  # stonith_admin returned
    seconds_to_off: float  # libvirt reported the domain shut off


@dataclass
class Cluster:
    fleet: Fleet
    spec: ClusterSpec
    fence: FenceEndpoint | None
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.fleet.accel.scale

    # -- building -----------------------------------------------------------

    @classmethod
    def up(cls, fleet: Fleet, spec: ClusterSpec, progress: Progress | None = None) -> Cluster:
        """Build ``spec`` on ``fleet`` and return once it has converged."""
        say = progress or fleet.progress
        nodes = list(fleet.nodes.values())
        spec.check_against(fleet.spec.networks, max(n.plan.index for n in nodes), fleet.plan)
        cluster = cls(fleet, spec, None, say)
        t0 = time.monotonic()
        if spec.fencing.method == "fence_virt":
            say(f"cluster {spec.cluster.name}: starting fence_virtd on the hypervisor side")
            cluster.fence = start_fence_virtd(fleet, spec)
            install_key(nodes, cluster.fence, spec.fencing.key_file)
            # Prove the path end to end before the cluster depends on it.
            nodes[0].run(fence_virt_argv(spec, cluster.fence.address, "list"), timeout=30 * cluster.scale)
        cluster.timings["fencing_ready"] = time.monotonic() - t0
        # Debian's corosync package ships an example corosync.conf naming a
        # "node1": pcsd then believes it is in a cluster and sends the tokens
        # of `pcs host auth` to node1 instead of keeping them. A node that is
        # not running corosync has no configuration worth keeping.
        for node in nodes:
            node.run(
                "systemctl -q is-active corosync || { [ ! -e /etc/corosync/corosync.conf ] || "
                "mv /etc/corosync/corosync.conf /etc/corosync/corosync.conf.dcnlab-orig; }",
                timeout=30 * cluster.scale,
            )
        say(f"cluster {spec.cluster.name}: waiting for pcsd on {', '.join(n.name for n in nodes)}")
        cluster._wait_pcsd(nodes)
        cluster.timings["pcsd_ready"] = time.monotonic() - t0
        wait_seconds = int(120 * cluster.scale)
        plan = bootstrap_plan(
            spec,
            [n.plan for n in nodes],
            fleet.plan,
            hacluster_password=fleet.hacluster_password,
            wait_seconds=wait_seconds,
        )
        first = fleet.node(plan.steps[0].node)
        for step in plan.steps:
            t = time.monotonic()
            say(f"cluster {spec.cluster.name}: {step.description}")
            try:
                first.run(list(step.argv), timeout=step.timeout * cluster.scale, stdin=step.stdin)
            except CommandError as err:
                raise ClusterError(f"cluster bootstrap failed at '{step.description}':\n{err}") from err
            cluster.timings[f"step: {step.description}"] = time.monotonic() - t
        cluster.wait_converged()
        cluster.timings["converged"] = time.monotonic() - t0
        say(f"cluster {spec.cluster.name}: converged after {cluster.timings['converged']:.0f}s")
        return cluster

    def _wait_pcsd(self, nodes: list[Node]) -> None:
        deadline = Deadline.after(PCSD_READY * self.scale)
        netns = self.fleet.access.netns
        for node in nodes:
            probe = ["nc", "-z", "-w", "2", node.address(), str(PCSD_PORT)]
            restarted = False

            def listening(node: Node = node, probe: list[str] = probe) -> bool:
                nonlocal restarted
                if run_local(probe, netns=netns, timeout=10, check=False).ok:
                    return True
                # pcsd's first start makes its TLS key; on a loaded TCG host it
                # can outlast systemd's start timeout once. Retry once, loudly.
                failed = node.run(["systemctl", "is-failed", "--quiet", "pcsd"], check=False, timeout=30)
                if failed.ok:
                    if restarted:
                        journal = node.run("journalctl -u pcsd --no-pager | tail -5", check=False).stdout
                        raise ClusterError(f"pcsd on {node.name} failed twice:\n{journal}")
                    self.progress(f"cluster: pcsd on {node.name} failed to start; restarting it once")
                    node.run(["systemctl", "reset-failed", "pcsd"], check=False, timeout=30)
                    node.run(["systemctl", "start", "--no-block", "pcsd"], timeout=30)
                    restarted = True
                return False

            wait_until(
                listening,
                timeout=deadline,
                what=f"pcsd on {node.name} to listen on {node.address()}:{PCSD_PORT}",
                interval=2.0,
                give_up_on=(ClusterError,),
            )

    def remember(self) -> None:
        """Record which spec built this fleet's cluster, for later CLI calls."""
        (self.fleet.run_dir / "cluster.json").write_text(json.dumps({"spec": str(self.spec.path)}))

    @classmethod
    def attach(cls, fleet: Fleet, progress: Progress | None = None) -> Cluster:
        try:
            data = json.loads((fleet.run_dir / "cluster.json").read_text())
        except OSError:
            raise ConfigError(
                f"fleet {fleet.name} has no cluster yet: `dcnlab cluster up --name {fleet.name}`"
            ) from None
        return cls(fleet, load_spec(Path(data["spec"])), None, progress or fleet.progress)

    # -- reading ------------------------------------------------------------

    def members(self) -> list[Node]:
        """Nodes that should be cluster members: running domains of the fleet."""
        return [n for n in self.fleet.nodes.values() if self.fleet.domain_state(n.name) == "running"]

    def state(self, via: Node | None = None) -> ClusterState:
        """crm_mon's view, asked of ``via`` or of the first member that answers."""
        candidates = [via] if via is not None else self.members()
        errors = []
        for node in candidates:
            try:
                res = node.run(list(CRM_MON_ARGV), timeout=20 * self.scale)
                return parse_crm_mon(res.stdout)
            except DcnlabError as err:
                errors.append(f"{node.name}: {err}".splitlines()[0])
        raise ClusterError("no node could report the cluster state: " + "; ".join(errors))

    def links(self, node: Node) -> LinkStatus:
        res = node.run(["corosync-cfgtool", "-s"], timeout=20 * self.scale, check=False)
        return parse_cfgtool(res.stdout)

    def quorum(self, node: Node) -> QuorumStatus:
        # Older corosync-quorumtool exits 1 while quorate: trust the parse, not the code.
        res = node.run(["corosync-quorumtool", "-s"], timeout=20 * self.scale, check=False)
        return parse_quorumtool(res.stdout)

    def converged(self, state: ClusterState, expected_nodes: list[str]) -> str | None:
        """Why ``state`` is not converged, or None when it is."""
        offline = [n for n in expected_nodes if n not in state.online_nodes()]
        if offline:
            return f"nodes not online: {', '.join(offline)}"
        ids = [r.id for r in self.spec.resources]
        if self.spec.fencing.method != "none":
            ids.append("fence_dcn")
        stopped = [i for i in ids if not state.started(i)]
        if stopped:
            return f"resources not started: {', '.join(stopped)}"
        if state.failures:
            return "failed actions: " + ", ".join(
                f"{f.resource} {f.task} on {f.node} ({f.exitreason or f.exitstatus})" for f in state.failures
            )
        return None

    def wait_converged(self, timeout: float | None = None) -> ClusterState:
        """Every running node online, every resource started, no failed action,
        and no transition pending (``crm_resource --wait``)."""
        expected = [n.name for n in self.members()]
        box: dict[str, str] = {}

        def ok() -> ClusterState | None:
            state = self.state()
            why = self.converged(state, expected)
            box["why"] = why or ""
            return state if why is None else None

        deadline = Deadline.after((timeout or CONVERGE) * self.scale)
        wait_until(
            ok,
            timeout=deadline,
            what=f"cluster {self.spec.cluster.name} to converge on {', '.join(expected)}",
            interval=2.0,
            describe_failure=lambda: box.get("why", ""),
        )
        node = self.members()[0]
        settle = max(5, int(deadline.remaining()))
        node.run(["crm_resource", "--wait", f"--timeout={settle}s"], timeout=settle + 30)
        return self.state()

    # -- fencing and rejoin -------------------------------------------------

    def fence_node(self, target: str, via: str | None = None) -> FenceResult:
        """Fence ``target`` through the cluster's configured agent (stonith_admin
        on another node) and confirm it by libvirt's power state."""
        others = [n for n in self.members() if n.name != target]
        if not others:
            raise ClusterError(f"no node left to fence {target} from")
        requester = self.fleet.node(via) if via else others[0]
        t0 = time.monotonic()
        timeout = FENCE_CONFIRM * self.scale
        try:
            requester.run(["stonith_admin", "--fence", target, f"--timeout={int(timeout)}"], timeout=timeout + 30)
        except CommandError as err:
            raise ClusterError(f"fencing {target} from {requester.name} failed:\n{err}") from err
        confirmed = time.monotonic() - t0
        wait_until(
            lambda: self.fleet.domain_state(target) == "shut-off",
            timeout=timeout,
            what=f"libvirt to report {target} ({self.fleet.node(target).domain}) shut off after the fence",
            interval=0.2,
        )
        self.fleet.node(target).close()
        return FenceResult(target, requester.name, confirmed, time.monotonic() - t0)

    def rejoin(self, target: str) -> float:
        """Power ``target`` back on, start its cluster stack, and wait until the
        cluster has converged with it again. Returns the seconds it took."""
        t0 = time.monotonic()
        self.fleet.power_on(target)
        node = self.fleet.node(target)
        # corosync and pacemaker are not enabled at boot (as after a fence on a
        # real site, someone decides when a node rejoins): start them here.
        node.run(["systemctl", "start", "corosync", "pacemaker"], timeout=60 * self.scale)
        self.wait_converged(REJOIN)
        return time.monotonic() - t0
