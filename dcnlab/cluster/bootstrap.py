"""The cluster on a fleet: build it from a spec with pcs, read its state,
fence a node and bring it back.

Every step has a deadline scaled by the fleet's accelerator, and every read of
state comes from the nodes themselves (``crm_mon --output-as=xml``,
``corosync-cfgtool``, ``corosync-quorumtool``) or, for power, from libvirt: a
fence counts only when libvirt reports the domain off.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcnlab.cluster import invariants
from dcnlab.cluster.corosync import (
    LinkStatus,
    QuorumStatus,
    parse_cfgtool,
    parse_quorumtool,
    with_node,
    without_node,
)
from dcnlab.cluster.crm import CRM_MON_ARGV, ClusterState, parse_crm_mon
from dcnlab.cluster.fencing import (
    fence_listing_problems,
    fence_placement_problems,
    fence_virt_argv,
    install_key,
    start_fence_virtd,
)
from dcnlab.cluster.pcs import (
    AUTHKEY_BYTES,
    BATCH_PATH_ON_NODE,
    BATCH_SCRIPT,
    COROSYNC_AUTHKEY,
    COROSYNC_CONF,
    DC_DEADTIME_DELETE_ARGV,
    PACEMAKER_AUTHKEY,
    PCS_TIMEOUT,
    PCSD_STOP_SH,
    RELOAD_ARGV,
    SEED_CIB_SH,
    START_ARGV,
    STOP_ARGV,
    FenceDevice,
    Step,
    batch_input,
    batch_timeout,
    boot_dc_deadtime,
    bootstrap_plan,
    fence_devices,
    host_map,
    parse_batch,
    reload_busy,
    stonith_argv,
)
from dcnlab.cluster.spec import STONITH_ID, ClusterSpec, load_spec
from dcnlab.core.errors import CertificationFailure, ClusterError, CommandError, ConfigError, DcnlabError, WaitTimeout
from dcnlab.core.parallel import on_each
from dcnlab.core.proc import Result
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.fleet.provider import FenceEndpoint

Progress = Callable[[str], None]
# Seconds under KVM; multiplied by the accelerator's scale (x4 under TCG).
CONVERGE = 90.0
MEMBERSHIP = 60.0
START_TIMEOUT = 60.0
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
    # fence_virt's listeners, one per host the fleet runs on (none: another method)
    fences: list[FenceEndpoint]
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)
    _spares: set[str] = field(default_factory=set, repr=False)  # booted, not joined (boot_spare)

    @property
    def scale(self) -> float:
        return self.fleet.accel.scale

    # -- building -----------------------------------------------------------

    @classmethod
    def up(cls, fleet: Fleet, spec: ClusterSpec, progress: Progress | None = None) -> Cluster:
        """Build ``spec`` on ``fleet`` and return once it has converged.

        The order (see :mod:`dcnlab.cluster.pcs`): fencing path proven, pcs
        writes corosync.conf in local mode, the harness copies it and fresh
        authkeys to every node, starts corosync and pacemaker on all at once,
        membership, then the configuration in one push and convergence.
        """
        say = progress or fleet.progress
        nodes = list(fleet.nodes.values())
        spec.check_against(fleet.spec.networks, max(n.plan.index for n in nodes), fleet.plan)
        cluster = cls(fleet, spec, [], say)
        name = spec.cluster.name
        t0 = time.monotonic()

        def mark(key: str) -> None:
            cluster.timings[key] = round(time.monotonic() - t0, 3)

        if spec.fencing.method == "fence_virt":
            say(f"cluster {name}: starting fence_virtd on the hypervisor side")
            cluster.fences = start_fence_virtd(fleet, spec)
            install_key(nodes, cluster.fences[0], spec.fencing.key_file)
            # Prove the path end to end before the cluster depends on it:
            # every host's listener, and on several hosts each lists exactly
            # the nodes placed there.
            cluster.check_fence_paths(nodes[0])
        mark("fencing_ready")
        cluster.idle_pcsd(nodes)
        plan = bootstrap_plan(
            spec,
            [n.plan for n in nodes],
            fleet.plan,
            wait_seconds=int(120 * cluster.scale),
            devices=cluster.devices(),
        )
        first = fleet.node(plan.first)
        cluster._run_step(first, plan.setup)
        conf = first.run(["cat", plan.corosync_conf], timeout=30 * cluster.scale).stdout
        mark("corosync_conf_written")
        say(f"cluster {name}: copying corosync.conf and new authkeys to {len(nodes)} nodes")
        keys = (os.urandom(AUTHKEY_BYTES), os.urandom(AUTHKEY_BYTES))
        deadtime, deadtime_is_mine = boot_dc_deadtime(spec)

        def install(node: Node) -> None:
            _install_cluster_files(node, conf, *keys)
            node.run(["sh", "-c", SEED_CIB_SH, "seed-cib", deadtime], timeout=60 * cluster.scale)

        on_each(
            nodes,
            install,
            label=lambda node: node.name,
            what="copying the cluster configuration",
            error=ClusterError,
        )
        mark("files_copied")
        say(f"cluster {name}: starting corosync and pacemaker on {len(nodes)} nodes: {shlex.join(plan.start)}")
        on_each(
            nodes,
            lambda node: node.run(list(plan.start), timeout=START_TIMEOUT * cluster.scale),
            label=lambda node: node.name,
            what="starting corosync and pacemaker",
            error=ClusterError,
        )
        mark("stack_started")
        say(f"cluster {name}: waiting for every node to join and a DC to be elected")
        cluster.wait_members([n.name for n in nodes])
        mark("members_joined")
        if deadtime_is_mine:
            # Before the batch saves the CIB it pushes back: the spec's configuration, nothing of the harness's.
            first.run(list(DC_DEADTIME_DELETE_ARGV), timeout=60 * cluster.scale)
        cluster._run_batch(first, plan.configure)
        mark("configured")
        # The same health check a restored cluster passes (Cluster.restored).
        cluster.verify_ready()
        mark("converged")
        phases = ("fencing_ready", "corosync_conf_written", "stack_started", "members_joined", "configured")
        marks = ", ".join(f"{p} {cluster.timings[p]:.0f}s" for p in phases if p in cluster.timings)
        say(f"cluster {name}: converged after {cluster.timings['converged']:.0f}s ({marks})")
        return cluster

    @classmethod
    def restored(
        cls, fleet: Fleet, spec: ClusterSpec, fences: list[FenceEndpoint], progress: Progress | None = None
    ) -> Cluster:
        """The cluster of a fleet restored from a cached cluster-ready state
        (:mod:`dcnlab.ready.store`): its fence device pointed at this fleet's
        domains, then the health check a built cluster passes
        (:meth:`verify_ready`). Raises when the restored cluster fails it."""
        say = progress or fleet.progress
        nodes = list(fleet.nodes.values())
        spec.check_against(fleet.spec.networks, max(n.plan.index for n in nodes), fleet.plan)
        cluster = cls(fleet, spec, fences, say)
        t0 = time.monotonic()
        # Resumed guests sit out one token timeout before they agree again;
        # a CIB update waits for that, so wait here, where it is named.
        cluster.wait_members([n.name for n in nodes])
        cluster.timings["members_joined"] = round(time.monotonic() - t0, 3)
        # The saving fleet's domain names; under the embedded hypervisor they
        # are this fleet's too, and the CIB is left alone.
        cluster._update_host_map(nodes[0])
        cluster.timings["host_map_checked"] = round(time.monotonic() - t0, 3)
        cluster.verify_ready()
        cluster.timings["converged"] = round(time.monotonic() - t0, 3)
        say(f"cluster {spec.cluster.name}: restored and verified after {cluster.timings['converged']:.0f}s")
        return cluster

    def verify_ready(self) -> ClusterState:
        """The health check that makes a cluster fit for tests, built or
        restored: the fence path answers and knows every member's domain,
        every knet link of every member is connected, and the cluster has
        converged (every node online, every resource started, no failed
        action, no transition pending)."""
        members = self.members()
        self.check_fence_paths(members[0])
        if len(self.fences) > 1:
            self.check_fence_devices(members[0])
        box: dict[str, str] = {}

        def linked() -> bool:
            down = [n.name for n in members if not self.links(n).all_connected()]
            box["why"] = f"links down on {', '.join(down)}" if down else ""
            return not down

        try:
            wait_until(
                linked,
                timeout=MEMBERSHIP * self.scale,
                what=f"every knet link of {', '.join(n.name for n in members)} to be connected",
                interval=2.0,
                describe_failure=lambda: box.get("why", ""),
            )
        except WaitTimeout as err:
            # Links that never connect are the image's or the spec's doing (a
            # firewall, a link on a network that does not route): a finding.
            statuses = {n.name: self.links(n) for n in members}
            words = {n.name: self._corosync_words(n) for n in members}
            raise CertificationFailure(links_finding(self.spec, self.fleet.spec.networks, statuses, words)) from err
        try:
            return self.wait_converged()
        except WaitTimeout as err:
            state = self.state()
            if not state.failures:
                raise
            raise CertificationFailure(resources_finding(self.spec, state)) from err

    def _corosync_words(self, node: Node) -> str:
        """corosync's last lines about its links on ``node``, from the journal."""
        res = node.run(
            "journalctl -u corosync --no-pager -o cat -n 400 | grep -iE 'link|knet' | tail -n 4",
            timeout=30 * self.scale,
            check=False,
        )
        return res.stdout.strip()

    def _run_batch(self, node: Node, steps: Sequence[Step]) -> None:
        """``steps`` (pcs commands) in one run of the batch script on ``node``:
        pcs starts once instead of once per step (see pcs_batch_guest.py)."""
        name = self.spec.cluster.name
        self.progress(f"cluster {name}: {len(steps)} pcs commands in one batch on {node.name}:")
        for step in steps:
            self.progress(f"  {step.description}")
        node.put(BATCH_SCRIPT.read_bytes(), BATCH_PATH_ON_NODE, mode=0o755)
        timeout = batch_timeout(steps) * self.scale
        try:
            res = node.run(
                ["python3", "-Es", BATCH_PATH_ON_NODE], timeout=timeout, check=False, stdin=batch_input(steps)
            )
        except CommandError as err:
            if not isinstance(err.result, Result) or err.result.exit_code != -1:  # unreachable, not slow
                raise ClusterError(f"cluster bootstrap: cannot run the pcs batch on {node.name}:\n{err}") from err
            res = err.result  # timed out: its output still says which step hung
        outcome = parse_batch(res.stdout, steps)
        for done in outcome.outcomes:
            if done.seconds is not None:
                self.timings[f"step: {done.step.description}"] = done.seconds
        failed = outcome.failed
        if failed is None and res.ok and len(outcome.outcomes) == len(steps):
            return
        if failed is not None:
            how = "timed out" if failed.exit_code is None else f"exit code {failed.exit_code}"
            raise ClusterError(
                f"cluster bootstrap failed at '{failed.step.description}' ({how}) on {node.name}:\n"
                f"$ {failed.step.command()}\n{failed.output.strip()}\n{res.stderr.strip()}".rstrip()
            )
        raise ClusterError(
            f"the pcs batch on {node.name} stopped before '{outcome.not_started(steps)[0].description}' "
            f"(exit code {res.exit_code}):\n{outcome.preamble.strip()}\n{res.stderr.strip()}".rstrip()
        )

    def _run_step(self, node: Node, step: Step) -> None:
        t = time.monotonic()
        self.progress(f"cluster {self.spec.cluster.name}: {step.description}")
        try:
            node.run(list(step.argv), timeout=step.timeout * self.scale, stdin=step.stdin)
        except CommandError as err:
            raise ClusterError(f"cluster bootstrap failed at '{step.description}':\n{err}") from err
        self.timings[f"step: {step.description}"] = round(time.monotonic() - t, 3)

    def wait_members(self, expected: list[str], timeout: float = MEMBERSHIP) -> ClusterState:
        """Until pacemaker on the first expected node sees every expected node
        online and has a DC (before any resource is configured)."""
        box: dict[str, str] = {}
        via = self.fleet.node(expected[0])

        def joined() -> ClusterState | None:
            try:
                state = self.state(via)
            except ClusterError as err:
                box["why"] = str(err).splitlines()[0]
                return None
            missing = [n for n in expected if n not in state.online_nodes()]
            box["why"] = (f"not online: {', '.join(missing)}; " if missing else "") + f"DC: {state.dc or 'none'}"
            return state if not missing and state.dc else None

        return wait_until(
            joined,
            timeout=timeout * self.scale,
            what=f"nodes {', '.join(expected)} to join cluster {self.spec.cluster.name}",
            interval=2.0,
            describe_failure=lambda: box.get("why", ""),
        )

    def start_stack(self, node: Node) -> None:
        """Start a member's corosync and pacemaker, which are not enabled at
        boot (as after a fence on a real site, someone decides when a node
        rejoins), and stop the pcsd its boot started (see PCSD_STOP_SH). Does
        not wait for the cluster to converge."""
        node.run(list(START_ARGV), timeout=START_TIMEOUT * self.scale)
        node.run(PCSD_STOP_SH, timeout=30 * self.scale)

    def idle_pcsd(self, nodes: list[Node] | None = None) -> None:
        """Stop pcsd where nothing needs it (see PCSD_STOP_SH)."""
        on_each(
            nodes if nodes is not None else self.members(),
            lambda node: node.run(PCSD_STOP_SH, timeout=30 * self.scale),
            label=lambda node: node.name,
            what="stopping pcsd",
            error=ClusterError,
        )

    def _quietest(self, candidates: list[Node]) -> Node:
        """The candidate running the fewest workloads: a pcs command costs a
        TCG guest tens of seconds of CPU, better not taken from a service."""
        state = self.state()
        load = Counter(where for rsc in self.spec.resources for where in state.where(rsc.id))
        return min(candidates, key=lambda node: (load[node.name], node.plan.index))

    # -- growing and shrinking ------------------------------------------------

    @property
    def spares(self) -> list[str]:
        """Nodes booted for the cluster (:meth:`boot_spare`) that have not joined it."""
        return sorted(self._spares)

    def boot_spare(self) -> Node:
        """Boot one more node for :meth:`add_node`; it stays out of
        :meth:`members` until it joins. Under TCG the members are paused while
        it boots (frozen whole, their clocks set after, as when a cached
        cluster is restored): on two host cores a guest's boot starved the
        serving guests (client probes over their 1 s timeout, an IPaddr2
        monitor over its 60 s), a cost of the lab, not of joining a node."""
        t0 = time.monotonic()
        say = self.progress
        tcg = self.fleet.accel.name != "kvm"
        if tcg:
            say(f"cluster {self.spec.cluster.name}: members paused while a spare node boots (TCG)")
        with self.fleet.paused() if tcg else contextlib.nullcontext():
            node = self.fleet.add_node()
            self._spares.add(node.name)
            # Its boot's tail (units still starting, pcsd which the image
            # enables) finishes while the others are frozen too.
            node.run(["systemctl", "is-system-running", "--wait"], timeout=START_TIMEOUT * self.scale, check=False)
            node.run(PCSD_STOP_SH, timeout=30 * self.scale)
            if self.fences:
                install_key([node], self.fences[0], self.spec.fencing.key_file)
        self.wait_converged()
        self.timings[f"boot spare {node.name}"] = round(time.monotonic() - t0, 3)
        say(f"cluster {self.spec.cluster.name}: spare {node.name} up in {time.monotonic() - t0:.0f}s")
        return node

    def drop_spare(self, name: str) -> None:
        """Power off and delete a spare that did not join."""
        if name not in self._spares:
            raise ClusterError(f"{name} is not a spare of cluster {self.spec.cluster.name} (spares: {self.spares})")
        self.fleet.remove_node(name)
        self._spares.discard(name)

    def add_node(self, node: Node | None = None) -> Node:
        """Join ``node`` (a spare from :meth:`boot_spare`; one is booted when
        None) to the running cluster, in the steps of ``pcs cluster node add
        --start`` (pcs lib/commands/cluster/node_add.py): the cluster's
        corosync.conf with the node added and the authkeys go to the node, the
        new corosync.conf to every member and one ``corosync-cfgtool -R``
        (every member reloads it), then the node's corosync and pacemaker
        start. Over SSH rather than through pcsd, as in :meth:`up`: under TCG
        pcsd took minutes to start listening and ``pcs host auth`` minutes
        more. The fence device's host map is extended to the node. Returns
        once the cluster has converged with it."""
        node = node if node is not None else self.boot_spare()
        if node.name not in self._spares:
            raise ClusterError(f"{node.name} is not a spare of cluster {self.spec.cluster.name}: boot_spare() first")
        t0 = time.monotonic()
        members = self.members()
        via = self._quietest(members)
        links = self.spec.link_networks(self.fleet.spec.networks)
        read = 30 * self.scale
        conf = with_node(_read_text(via, COROSYNC_CONF, read), node.name, [node.address(net) for net in links])
        keys = (_read_bytes(via, COROSYNC_AUTHKEY, read), _read_bytes(via, PACEMAKER_AUTHKEY, read))
        self.progress(f"cluster {self.spec.cluster.name}: joining {node.name} (corosync.conf reloaded via {via.name})")
        _install_cluster_files(node, conf, *keys)
        self._put_conf(members, conf)
        self._reload_conf(via)
        self._spares.discard(node.name)
        self.start_stack(node)
        self._update_host_map(via)  # wait_converged below waits for the node to be online
        self.wait_converged(REJOIN)
        self.timings[f"add {node.name}"] = round(time.monotonic() - t0, 3)
        return node

    def remove_node(self, target: str) -> None:
        """Take ``target`` out of the cluster in the steps of ``pcs cluster
        node remove`` (pcs lib/commands/cluster/node_remove.py): its
        pacemaker and corosync stopped, corosync.conf without it to the others
        and one ``corosync-cfgtool -R``, its node entries out of pacemaker
        (``crm_node -R``); then the fence device's host map shrunk and the VM
        deleted. Drain it first (:meth:`standby`) if it runs resources."""
        t0 = time.monotonic()
        others = [n for n in self.members() if n.name != target]
        if not others:
            raise ClusterError(f"cannot remove {target}: it is the last node")
        via = self._quietest(others)
        conf = without_node(_read_text(via, COROSYNC_CONF, 30 * self.scale), target)  # fails before anything changed
        self.progress(f"cluster {self.spec.cluster.name}: removing {target} (corosync.conf reloaded via {via.name})")
        # One transaction: systemd stops pacemaker (which needs corosync) first.
        self.fleet.node(target).run(list(STOP_ARGV), timeout=2 * START_TIMEOUT * self.scale)
        self._put_conf(others, conf)
        self._reload_conf(via)
        via.run(["crm_node", "--remove", target, "--force"], timeout=60 * self.scale)
        self.fleet.remove_node(target)
        self._update_host_map(via)
        self.wait_converged(REJOIN)
        self.timings[f"remove {target}"] = round(time.monotonic() - t0, 3)

    def _reload_conf(self, via: Node) -> None:
        """``corosync-cfgtool -R`` on ``via``: every member reads its
        corosync.conf again. Right after a node stopped its corosync the
        others are still forming the new membership and corosync answers
        CS_ERR_TRY_AGAIN (seen removing a node under TCG): that is waited out
        until the membership deadline; any other failure is raised at once."""

        def reloaded() -> bool:
            res = via.run(list(RELOAD_ARGV), timeout=60 * self.scale, check=False)
            if res.ok:
                return True
            if reload_busy(res.stdout + res.stderr):
                raise ClusterError(f"corosync on {via.name} is busy: {res.stderr.strip() or res.stdout.strip()}")
            raise CommandError(res.describe(), res)

        wait_until(
            reloaded,
            timeout=MEMBERSHIP * self.scale,
            what=f"corosync on {via.name} to take the new corosync.conf (corosync-cfgtool -R)",
            interval=1.0,
            give_up_on=(CommandError,),
        )

    def _put_conf(self, nodes: list[Node], conf: str) -> None:
        on_each(
            nodes,
            lambda node: node.put(conf.encode(), COROSYNC_CONF, mode=0o644),
            label=lambda node: node.name,
            what="writing corosync.conf",
            error=ClusterError,
        )

    def standby(self, target: str, on: bool = True) -> None:
        """Move every resource off ``target`` (or let them back) and wait
        until the cluster has settled: what ``pcs node standby --wait`` does
        (the node's standby attribute, then ``crm_resource --wait``), without
        pcs's start-up (10-20 s of a TCG guest's CPU)."""
        via = self._quietest([n for n in self.members() if n.name != target]) if on else self.fleet.node(target)
        verb = "standby" if on else "unstandby"
        wait = int(CONVERGE * self.scale)
        change = ("--update", "on") if on else ("--delete",)
        self._run_step(
            via, Step(verb + " " + target, via.name, ("crm_standby", "--node", target, *change), PCS_TIMEOUT)
        )
        settle = ("crm_resource", "--wait", f"--timeout={wait}s")
        self._run_step(via, Step(f"wait for the cluster to settle after {verb}", via.name, settle, wait + PCS_TIMEOUT))

    def set_properties(self, properties: Mapping[str, str]) -> None:
        """Set cluster properties (``crm_config``) in the running CIB and
        wait for the cluster to converge under them. crm_attribute, not pcs:
        no pcs start-up (seconds under TCG)."""
        via = self._quietest(self.members())
        for name, value in properties.items():
            argv = ["crm_attribute", "--type", "crm_config", "--name", name, "--update", value]
            via.run(argv, timeout=30 * self.scale)
        self.progress(f"cluster {self.spec.cluster.name}: set {', '.join(f'{k}={v}' for k, v in properties.items())}")
        self.wait_converged()

    def place(self, rsc: str, node: str) -> None:
        """Run ``rsc`` on ``node`` and leave no constraint behind: a
        temporary ``cli-prefer`` (crm_resource --move) until it runs there,
        then cleared, so only the spec's scores and stickiness keep it."""
        if self.state().where(rsc) == [node]:
            return
        via = self._quietest(self.members())
        scale = self.scale
        via.run(["crm_resource", "--move", "--resource", rsc, "--node", node], timeout=60 * scale)

        def there() -> bool:
            state = self.state()
            return state.started(rsc) and state.where(rsc) == [node]

        try:
            wait_until(
                there,
                timeout=CONVERGE * scale,
                what=f"{rsc} to run on {node} after crm_resource --move",
            )
        finally:
            via.run(["crm_resource", "--clear", "--resource", rsc], timeout=60 * scale)
        where = self.wait_converged().where(rsc)
        if where != [node]:
            raise ClusterError(f"{rsc} left {node} for {where} once the move constraint was cleared")

    def devices(self) -> list[FenceDevice]:
        """The fence devices the fleet's nodes and hosts call for now (one per
        host with nodes on a fleet over several hosts)."""
        plans = sorted((n.plan for n in self.fleet.nodes.values()), key=lambda plan: plan.index)
        return fence_devices(self.spec, plans, self.fleet.plan, self.fleet.hosts, self.fleet.record.placement)

    def check_fence_paths(self, via: Node) -> None:
        """Each fence listener answers ``list`` from ``via``, and lists the
        domains of the nodes on its host: every one of them, and on a fleet
        over several hosts no other node's (:func:`fence_listing_problems`)."""
        if not self.fences:
            return
        listed = {}
        for endpoint in self.fences:
            argv = fence_virt_argv(self.spec, endpoint.address, "list")
            out = via.run(argv, timeout=30 * self.scale).stdout
            listed[endpoint.host] = {line.split()[0] for line in out.splitlines() if line.strip()}
        fleet = self.fleet
        if fleet.hosts:
            expected = {h.name: {fleet.node(n).domain for n in fleet.nodes_on(h.name)} for h in fleet.hosts}
        else:
            expected = {"": {n.domain for n in self.members()}}
        problems = fence_listing_problems(expected, listed, exact=bool(fleet.hosts))
        if problems:
            raise ClusterError(f"fence_virt on {via.name}: " + "; ".join(problems))

    def check_fence_devices(self, via: Node) -> None:
        """The placement preflight of a fleet over several hosts: each host's
        fence device in the CIB maps exactly the nodes placed on that host.
        A device that maps a node of another host would have that host's
        listener answer "off" with success for a domain it does not run
        (docs/multihost.md), a fence that never happened."""
        devices = self.devices()
        problems = fence_placement_problems(devices, self._host_maps(via, devices))
        if problems:
            raise ClusterError(
                "the fence devices do not match where the nodes run: "
                + "; ".join(problems)
                + ". Each host's device must map the nodes on that host and no other"
            )

    def _host_maps(self, via: Node, devices: Sequence[FenceDevice]) -> dict[str, str | None]:
        """Each device's ``pcmk_host_map`` as the CIB has it (None: no such device)."""
        maps: dict[str, str | None] = {}
        for dev in devices:
            argv = ["crm_resource", "--resource", dev.id, "--get-parameter", "pcmk_host_map"]
            out = via.run(argv, timeout=30 * self.scale, check=False)
            maps[dev.id] = out.stdout.strip() if out.ok else None
        return maps

    def _update_host_map(self, via: Node) -> None:
        """Make the fence devices map every fleet node to its domain (one
        device per host on several hosts, created when a host gets its first
        node), writing the CIB only when it does not already. crm_resource,
        not pcs, where it can: no pcs start-up (seconds under TCG)."""
        devices = self.devices()
        maps = self._host_maps(via, devices)
        for dev in devices:
            have, want = maps[dev.id], host_map(dev.nodes)
            device = ["crm_resource", "--resource", dev.id]
            if have is None and not dev.host:
                raise ClusterError(f"cannot read fence device {dev.id}'s host map (crm_resource --get-parameter)")
            if have is None:
                via.run(
                    ["pcs", *stonith_argv(self.spec, dev.nodes, dev.address, dev.id)], timeout=PCS_TIMEOUT * self.scale
                )
                self.progress(f"cluster {self.spec.cluster.name}: fence device {dev.id} created, maps {want}")
            elif have != want:
                via.run(
                    [*device, "--set-parameter", "pcmk_host_map", "--parameter-value", want], timeout=30 * self.scale
                )
                self.progress(f"cluster {self.spec.cluster.name}: fence device {dev.id} now maps {want}")

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
        return cls(fleet, load_spec(Path(data["spec"])), [], progress or fleet.progress)

    # -- reading ------------------------------------------------------------

    def members(self) -> list[Node]:
        """Nodes that should be cluster members: running domains of the fleet,
        spares that have not joined yet aside."""
        return [n for n in self.fleet.running() if n.name not in self._spares]

    def state(self, via: Node | None = None, *, last_resort: str | None = None) -> ClusterState:
        """crm_mon's view, asked of ``via`` or of the first member that answers,
        the member named ``last_resort`` last (a faulted node: lost, it does not
        answer; cut off, it sees only itself)."""
        return self._crm_mon(via, last_resort)[1]

    def crm_mon_xml(self, via: Node | None = None, *, last_resort: str | None = None) -> str:
        """``crm_mon --output-as=xml`` as printed, asked as :meth:`state` asks."""
        return self._crm_mon(via, last_resort)[0]

    def _crm_mon(self, via: Node | None, last_resort: str | None = None) -> tuple[str, ClusterState]:
        candidates = [via] if via is not None else sorted(self.members(), key=lambda n: n.name == last_resort)
        errors = []
        for node in candidates:
            try:
                text = node.run(list(CRM_MON_ARGV), timeout=20 * self.scale).stdout
                # Parsed here so that a node answering garbage is not an answer.
                return text, parse_crm_mon(text)
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
        """Why ``state`` is not converged, or None when it is (:func:`not_converged`)."""
        return not_converged(self.spec, state, expected_nodes, [d.id for d in self.devices()])

    def wait_converged(self, timeout: float | None = None) -> ClusterState:
        """Every running node online, every resource started where the spec
        allows it, no failed action (:func:`not_converged`), and no
        transition pending (``crm_resource --wait``)."""
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
        self.start_stack(self.fleet.node(target))
        self.wait_converged(REJOIN)
        return time.monotonic() - t0


def _install_cluster_files(node: Node, conf: str, corosync_key: bytes, pacemaker_key: bytes) -> None:
    """What pcs's local mode leaves to the caller, with pcs's owners and modes."""
    node.put(conf.encode(), COROSYNC_CONF, mode=0o644)
    node.put(corosync_key, COROSYNC_AUTHKEY, mode=0o400)
    node.put(pacemaker_key, PACEMAKER_AUTHKEY, mode=0o400)
    node.run(["chown", "hacluster:haclient", PACEMAKER_AUTHKEY])


def _read_text(node: Node, path: str, timeout: float) -> str:
    return node.run(["cat", path], timeout=timeout).stdout


def _read_bytes(node: Node, path: str, timeout: float) -> bytes:
    """A binary file (an authkey), base64 over the SSH session's text."""
    return base64.b64decode(node.run(["base64", "-w0", path], timeout=timeout).stdout)


def links_finding(
    spec: ClusterSpec, networks: int, statuses: Mapping[str, LinkStatus], words: Mapping[str, str]
) -> str:
    """A certification failure's text for knet links that never connected:
    which link, on which fleet network, between which nodes, and what
    corosync itself says on each node."""
    names = {st.local_nodeid: node for node, st in statuses.items()}
    nets = spec.link_networks(networks)
    lines = []
    down_links: set[int] = set()
    for node, st in sorted(statuses.items()):
        for link in st.links:
            down = link.down_peers()
            if down:
                down_links.add(link.link)
                net = nets[link.link] if link.link < len(nets) else "?"
                peers = ", ".join(names.get(i, f"nodeid {i}") for i in down)
                lines.append(
                    f"  {node}: knet link {link.link} (fleet network {net}, {link.address}) cannot reach {peers}"
                )
    said = [f"  corosync on {node}: " + text.replace("\n", "\n    ") for node, text in sorted(words.items()) if text]
    which = ", ".join(f"{k} (network {nets[k] if k < len(nets) else '?'}, eth{nets[k] if k < len(nets) else '?'})"
                      for k in sorted(down_links))  # fmt: skip
    return "\n".join(
        [
            f"FAIL: cluster {spec.cluster.name} cannot form on this image and spec: knet link(s) {which or '?'} "
            "never connected",
            *lines,
            *said,
            "  fix: let corosync's knet traffic (UDP 5405 and up, one port per link) through the image's firewall "
            "on that interface, or take the network out of cluster.links in the spec",
        ]
    )


def resources_finding(spec: ClusterSpec, state: ClusterState) -> str:
    """A certification failure's text for resources that failed while the
    cluster was set up: each with its agent and the agent's own words."""
    lines = []
    for f in state.failures:
        rsc = spec.resource(f.resource)
        agent = rsc.agent if rsc is not None else "fence device" if f.resource.startswith(STONITH_ID) else "?"
        where = f" ({spec.path}:{rsc.line})" if rsc is not None and rsc.line else ""
        lines.append(f"  {f.resource} [{agent}]{where}: {f.task} failed on {f.node}: {f.exitreason or f.exitstatus}")
    return "\n".join(
        [
            f"FAIL: cluster {spec.cluster.name} cannot run its resources on this image and spec:",
            *lines,
            "  fix: the agent's words above say what it lacked (a unit, a container image, a parameter); "
            "suites/image checks what the spec needs of the image",
        ]
    )


def not_converged(
    spec: ClusterSpec, state: ClusterState, expected_nodes: Sequence[str], fence_ids: Sequence[str] = (STONITH_ID,)
) -> str | None:
    """Why ``state`` is not the converged cluster of ``spec`` on
    ``expected_nodes``, or None when it is: every expected node online, every
    resource (and each of ``fence_ids``, the fence devices) started, no failed action, and resources
    where the spec wants them: the invariants (:mod:`dcnlab.cluster.invariants`:
    colocation, anti-colocation, bans, nothing active twice) hold. Scores
    short of INFINITY are preferences, not checked: with stickiness a
    resource that failed over may stay where it went."""
    offline = [n for n in expected_nodes if n not in state.online_nodes()]
    if offline:
        return f"nodes not online: {', '.join(offline)}"
    ids = [r.id for r in spec.resources]
    if spec.fencing.method != "none":
        ids += fence_ids
    stopped = [i for i in ids if not state.started(i)]
    if stopped:
        return f"resources not started: {', '.join(stopped)}"
    if state.failures:
        return "failed actions: " + ", ".join(
            f"{f.resource} {f.task} on {f.node} ({f.exitreason or f.exitstatus})" for f in state.failures
        )
    misplaced = invariants.check(invariants.merge([invariants.View("converged", 0.0, state)]), spec)
    if misplaced:
        return "resources not where the spec wants them: " + "; ".join(v.detail for v in misplaced)
    return None
