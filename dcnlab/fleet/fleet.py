"""A fleet of virtual DCNs: networks, nodes, their disks, and their teardown.

Life cycle: :meth:`Fleet.up` creates a run directory and a :class:`RunRecord`
*before* anything else, so every object that follows is findable by
``dcnlab gc`` even if the process is killed mid-way. :meth:`Fleet.down`
removes exactly what the record and the owner labels say is ours.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from dcnlab.core import interrupts, paths
from dcnlab.core.errors import CommandError, ConfigError, DcnlabError, HypervisorError, ProvisionError
from dcnlab.core.keys import generate_key
from dcnlab.core.owner import RunRecord
from dcnlab.core.parallel import on_each
from dcnlab.core.proc import run_local
from dcnlab.core.wait import Deadline, wait_until
from dcnlab.fleet import hosts as hostplan
from dcnlab.fleet.accel import Accel, detect
from dcnlab.fleet.credentials import identity_credentials, oem_strings
from dcnlab.fleet.hosts import DEFAULT_LAB_UNDERLAY, HostPlan, host_address, place
from dcnlab.fleet.libvirt import fence_virtd
from dcnlab.fleet.libvirt.hypervisor import (
    EmbeddedHypervisor,
    ExternalHypervisor,
    Hypervisor,
    HypervisorExited,
    delete_netns,
    kill_netns_processes,
    kill_run_processes,
)
from dcnlab.fleet.libvirt.lab import Lab, stop_lab
from dcnlab.fleet.libvirt.multihost import MultiHostProvider
from dcnlab.fleet.libvirt.provider import LibvirtProvider
from dcnlab.fleet.node import Access, Node
from dcnlab.fleet.provider import BootSpec, FenceEndpoint, MachineSpec, NotApplicable, Owner, Provider
from dcnlab.fleet.seed import seed_documents, write_seed_image
from dcnlab.fleet.spec import FleetSpec, NodePlan
from dcnlab.fleet.sshconfig import ssh_config_text
from dcnlab.image.builder import BuiltImage
from dcnlab.image.firmware import resolve as resolve_firmware
from dcnlab.image.identity import channels as identity_channels
from dcnlab.image.identity import describe as describe_channels
from dcnlab.image.identity import login

Progress = Callable[[str], None]

# Seconds a node takes to answer SSH under KVM on an idle core; scaled by the
# accelerator and by how many guests share each host core.
BOOT_BASE_SECONDS = 60.0


def netns_name(fleet: str) -> str:
    return f"dcnlab-{fleet}"


def run_dir_of(name: str) -> Path:
    return paths.runs_dir() / name


def check_placement(libvirt_uri: str | None, netns: str | None, lab_hosts: int = 1) -> None:
    """Where the fleet would run, checked before anything is created (the
    CLI calls it before it builds an image, too)."""
    if netns is not None and libvirt_uri is None:
        raise ConfigError("--netns only applies with --libvirt-uri (the embedded hypervisor makes its own)")
    if lab_hosts != 1:
        if libvirt_uri is not None:
            raise ConfigError("--lab-hosts starts embedded hypervisors of its own: leave out --libvirt-uri")
        hostplan.lab_hosts(lab_hosts)  # the count's bounds
    if netns is not None and not Path(f"/run/netns/{netns}").exists():
        raise ConfigError(f"--netns {netns}: no such network namespace (see `ip netns list`)")


def image_to_dict(image: BuiltImage) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(image).items()}


def image_from_dict(data: dict[str, Any]) -> BuiltImage:
    return BuiltImage(
        recipe=data["recipe"],
        digest=data["digest"],
        disk=Path(data["disk"]),
        kernel=Path(data["kernel"]) if data.get("kernel") else None,
        initrd=Path(data["initrd"]) if data.get("initrd") else None,
        cmdline=data["cmdline"],
        built_seconds=data.get("built_seconds", 0.0),
        identity=tuple(data.get("identity", ())),
        login_user=data.get("login_user"),
        login_key=Path(data["login_key"]) if data.get("login_key") else None,
    )


def run_with_clock(node: Node, script: str, stdin: str | None, timeout: float) -> None:
    """Set ``node``'s clock from the host's, then run ``script``, in one
    command. The session is opened first and the time read right before the
    command goes: read before the connect, it was ~11 s old by the time a
    resumed TCG guest ran it (CI dry run: "dcn1's clock is -11s off")."""
    node.connect()
    node.run(f"date -u -s @{time.time():.3f} >/dev/null && {script}", stdin=stdin, timeout=timeout)


class NodeSource(Protocol):
    """Brings a fleet's nodes up some other way than booting the image: the
    cluster-ready store restores them from saved states (:mod:`dcnlab.ready.store`).
    The fleet's networks exist when it is called; it defines each node through
    :meth:`Fleet.define_node`, starts them its own way, and returns once they answer
    SSH (:meth:`Fleet.wait_for_ssh`). The fleet itself knows no store."""

    def describe(self) -> str:
        """Where the nodes come from, for progress lines."""
        ...

    def bring_up(self, fleet: Fleet, plans: Sequence[NodePlan]) -> None: ...


class Fleet:
    def __init__(
        self,
        record: RunRecord,
        run_dir: Path,
        hv: Hypervisor,
        image: BuiltImage,
        accel: Accel,
        progress: Progress,
        machines: Provider | None = None,
    ) -> None:
        """``machines``: the engine's side (default: libvirt through ``hv``)."""
        self.record = record
        self.run_dir = run_dir
        self.hv = hv
        self.image = image
        self.accel = accel
        self.progress = progress
        self.spec = FleetSpec(**record.spec)
        self.plan = self.spec.plan(private_hypervisor=record.embedded)
        # The run's own key, which every identity channel gives root.
        self.run_key = run_dir / "id_ed25519"
        user, key = login(image.login_user, image.login_key, self.spec.login_user, self.spec.login_key, self.run_key)
        self.access = Access(netns=hv.netns, key=key, ssh_config=run_dir / "ssh_config", user=user)
        self.nodes: dict[str, Node] = {}
        for index in record.nodes:
            plan = self.plan.node(index, self.spec.networks)
            self.nodes[plan.name] = Node(plan, self.access)
        self.timings: dict[str, float] = {}
        # Several lab hosts (record.lab): host 1 is ``hv``, the others the lab's.
        self.lab: Lab | None = (
            Lab.from_record(record.name, record.lab, hv) if record.lab and isinstance(hv, EmbeddedHypervisor) else None
        )
        # Networks, machines, power, links and snapshots: the one engine connection.
        self.machines: Provider = machines if machines is not None else self.new_provider()
        # Whether this fleet may have created anything in the engine (a teardown
        # then asks it; a fleet that failed before its first network did not).
        self.created = False
        self.closing = False  # set by the teardown; waits for its nodes stop at once

    @property
    def name(self) -> str:
        return self.record.name

    def __repr__(self) -> str:
        return f"Fleet({self.name}, nodes={list(self.nodes)}, uri={self.hv.uri})"

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(
                f"fleet {self.name} has no node {name!r}; its nodes are {', '.join(self.nodes)}"
            ) from None

    def new_provider(self) -> Provider:
        """Another handle on the machines, with a connection of its own: for a
        thread (the sampler's) that must not share the fleet's."""
        if self.lab is None:
            return LibvirtProvider(self.hv.connect, self.hv.netns)
        return MultiHostProvider(
            {h.name: (h.plan, h.connect, h.netns) for h in self.lab.hosts},
            {self.nodes[n].domain: host for n, host in self.record.placement.items() if n in self.nodes},
            self.lab.stretch,
        )

    @property
    def hosts(self) -> list[HostPlan]:
        """The hosts the fleet runs on (one, unnamed, without a lab)."""
        return [h.plan for h in self.lab.hosts] if self.lab is not None else []

    def host_of(self, name: str) -> str:
        """The host that runs node ``name`` ("" on a fleet of one host)."""
        return self.record.placement.get(name, "")

    def nodes_on(self, host: str) -> list[str]:
        """The nodes that ``host`` runs."""
        return [n for n in hostplan.nodes_on(self.record.placement, host) if n in self.nodes]

    def _lab(self, what: str) -> Lab:
        if self.lab is None:
            raise NotApplicable(f"{what} needs a fleet over several hosts (--dcn-lab-hosts 2 or more)")
        return self.lab

    def cut_host(self, host: str, cut: bool = True) -> None:
        """Cut ``host`` off the other hosts (its underlay link down), or join it
        again: its nodes run on, together, but reach no node of another host."""
        self._lab(f"cutting off host {host}").set_underlay(host, not cut)

    def host_packet_loss(self, host: str, percent: float, on: bool = True) -> None:
        """Drop ``percent`` of the packets between ``host`` and every other host
        (at random), or stop dropping them."""
        self._lab(f"packet loss at host {host}").set_underlay_loss(host, percent, on)

    def lose_host(self, host: str) -> None:
        """``host`` dies whole (:meth:`Lab.kill_host`): its nodes, its libvirtd and
        its fence listener with it."""
        for name in self.nodes_on(host):
            self.node(name).close()
        self._lab(f"losing host {host}").kill_host(host)

    def revive_host(self, host: str) -> None:
        """Boot ``host`` again after :meth:`lose_host`, its nodes off (as after a
        power loss); the fleet's connection to it is opened anew on next use."""
        lab = self._lab(f"reviving host {host}")

        def changed(lab: Lab) -> None:
            self.record.lab = lab.to_record()
            self.record.save(self.run_dir)

        networks = [self.plan.network(i) for i in range(self.spec.networks)]
        lab.revive_host(host, networks, self.record.run_id, changed)
        self.progress(f"fleet {self.name}: host {host} is back, its nodes off")

    # -- creation -----------------------------------------------------------

    @classmethod
    def up(
        cls,
        spec: FleetSpec,
        image: BuiltImage,
        *,
        libvirt_uri: str | None = None,
        netns: str | None = None,
        accel: str = "auto",
        persistent: bool = False,
        progress: Progress = print,
        restore: NodeSource | None = None,
        lab_hosts: int = 1,
        underlay: str = DEFAULT_LAB_UNDERLAY,
    ) -> Fleet:
        """Create the fleet and return when every node answers SSH.

        With ``lab_hosts`` above 1 the fleet spans that many embedded
        hypervisors, each a host of the local lab (:mod:`dcnlab.fleet.libvirt.lab`)
        joined by ``underlay``; nodes are spread over them.

        With ``persistent`` the fleet is handed to the user once it is up
        (``dcnlab gc`` then leaves it alone); otherwise it belongs to this
        process and is garbage once this process is gone.

        With ``restore`` the nodes are not booted from the image: ``restore``
        brings them up (a cached cluster-ready state, :mod:`dcnlab.ready.store`),
        with this fleet's names, disks and SSH key.
        """
        if restore is not None and libvirt_uri is not None:
            raise ConfigError("nodes are restored from saved states only on the embedded hypervisor")
        if restore is not None and lab_hosts != 1:
            raise ConfigError("nodes are restored from saved states only on a fleet of one host")
        host_plans = hostplan.lab_hosts(lab_hosts, underlay, spec.subnet) if lab_hosts != 1 else []
        start = time.monotonic()
        check_placement(libvirt_uri, netns, lab_hosts)
        # Before anything is created: an image its firmware cannot boot.
        firmware, why = resolve_firmware(image.disk, image.kernel, spec.firmware)
        offered = identity_channels(image.kernel is not None, image.identity, spec.identity)
        user, _key = login(image.login_user, image.login_key, spec.login_user, spec.login_key, Path("run-key"))
        if user != "root":
            progress(f"fleet {spec.name}: the harness logs in as {user} (baked into the image), root through sudo")
        if image.kernel is None:
            said = (
                "as the image says"
                if spec.identity == "auto" and image.identity
                else ("asked for" if spec.identity != "auto" else "the image does not say which it reads")
            )
            progress(
                f"fleet {spec.name}: nodes boot their own boot loader under {firmware.upper()} ({why}); "
                f"identity through {' and '.join(offered)} ({said})"
            )
        run_dir = run_dir_of(spec.name)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise ConfigError(_exists_message(spec.name, run_dir)) from None
        record = RunRecord.new(
            spec.name,
            uri=libvirt_uri or "",
            embedded=libvirt_uri is None,
            netns=netns,
            spec=asdict(spec),
            image=image_to_dict(image),
        )
        record.save(run_dir)
        fleet: Fleet | None = None
        try:
            chosen = detect(accel, image.kernel, progress)
            record.domain_type = chosen.domain_type
            hv: Hypervisor
            if libvirt_uri is None:
                progress(f"fleet {spec.name}: starting the embedded hypervisor in namespace {netns_name(spec.name)}")

                def started(h: EmbeddedHypervisor) -> None:
                    record.netns, record.netns_created, record.supervisor = h.name, True, h.supervisor
                    record.uri = h.uri
                    record.save(run_dir)

                hv = EmbeddedHypervisor.start(run_dir / "hv", netns_name(spec.name), record.run_id, started)
                if host_plans:

                    def lab_changed(lab: Lab) -> None:
                        record.lab = lab.to_record()
                        record.save(run_dir)

                    Lab.start(spec.name, run_dir, record.run_id, host_plans, underlay, hv, lab_changed, progress)
            else:
                hv = ExternalHypervisor(libvirt_uri, netns)
            fleet = cls(record, run_dir, hv, image, chosen, progress)
            fleet.timings["hypervisor"] = time.monotonic() - start
            fleet._create(spec, restore)
            fleet.timings["total"] = time.monotonic() - start
            if persistent:
                fleet.release()
            return fleet
        except BaseException as err:
            # KeyboardInterrupt included: nothing of a half-built fleet may stay.
            if isinstance(err, KeyboardInterrupt):
                progress(f"fleet {spec.name}: interrupted, removing what was created")
            try:
                # Without a Fleet the engine was never reached: nothing to ask it.
                _teardown(record, run_dir, fleet, progress, engine_objects=fleet is not None and fleet.created)
            except DcnlabError as cleanup:
                # The cause of the failure matters more; the leftovers are reported.
                progress(f"fleet {spec.name}: {cleanup}")
            raise

    def _create(self, spec: FleetSpec, restore: NodeSource | None = None) -> None:
        t0 = time.monotonic()
        self.machines.reach()  # an unreachable engine fails before anything is created
        self.created = True
        generate_key(self.run_key, f"dcnlab-{self.record.run_id}")
        (self.run_dir / "disks").mkdir()
        (self.run_dir / "logs").mkdir()
        # Per-run password of the hacluster user (pcs host auth); never logged.
        pw_file = self.run_dir / "hacluster.pw"
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(18))
        for i in range(spec.networks):
            self.machines.create_network(self.plan.network(i), self.owner)
        self.timings["networks"] = time.monotonic() - t0
        plans = [self.plan.node(i, spec.networks) for i in range(1, spec.nodes + 1)]
        if restore is not None:
            self.progress(
                f"fleet {self.name}: {spec.networks} network(s) up; restoring {spec.nodes} node(s) "
                f"from {restore.describe()}"
            )
            restore.bring_up(self, plans)
            return
        self.progress(f"fleet {self.name}: {spec.networks} network(s) up; booting {spec.nodes} node(s)")
        self._boot(plans)

    def define_node(self, plan: NodePlan, disk: Path, *, uuid: str | None = None) -> Node:
        """Define ``plan``'s domain on ``disk`` without starting it, and make it a node
        of this fleet: for a :class:`NodeSource` that starts the domain its own way."""
        self._define(plan, disk, uuid=uuid)
        node = Node(plan, self.access)
        self.nodes[plan.name] = node
        self._write_ssh_config()
        return node

    def wait_for_ssh(self, nodes: Sequence[Node], t0: float, what: str = "waiting for SSH") -> None:
        """Return when every one of ``nodes`` answers SSH with this run's key; they
        share one deadline (:meth:`boot_seconds`), and ``t0`` is when they started."""
        deadline = Deadline.after(self.boot_seconds(len(nodes)))
        on_each(
            list(nodes),
            lambda n: self._wait_ssh(n, deadline, t0),
            label=lambda n: n.name,
            what=what,
            error=ProvisionError,
        )
        self.timings["ssh_ready"] = time.monotonic() - t0

    def _boot(self, plans: list[NodePlan]) -> list[Node]:
        t0 = time.monotonic()
        nodes = []
        for plan in plans:
            self._define_and_start(plan)
            node = Node(plan, self.access)
            self.nodes[plan.name] = node
            nodes.append(node)
        self.timings["define_start"] = time.monotonic() - t0
        self._write_ssh_config()
        self.wait_for_ssh(nodes, t0)
        return nodes

    def boot_seconds(self, booting: int) -> float:
        """How long ``booting`` nodes booting at once may take to answer SSH:
        the spec's ``boot_timeout``, else scaled by the accelerator and by how
        many guests share each host core."""
        if self.spec.boot_timeout is not None:
            return self.spec.boot_timeout
        share = max(1.0, booting / (os.cpu_count() or 1))
        return BOOT_BASE_SECONDS * self.accel.scale * share

    def _define_and_start(self, plan: NodePlan) -> None:
        disk = self.run_dir / "disks" / f"{plan.name}.qcow2"
        run_local(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.image.disk, disk], timeout=60)
        self._define(plan, disk)
        try:
            self.machines.power(plan.domain, "on")
        except HypervisorError as err:
            raise ProvisionError(f"cannot start node {plan.name}: {err}") from err
        on = f" on host {self.host_of(plan.name)}" if self.lab is not None else ""
        self.progress(f"fleet {self.name}: {plan.name} started{on} ({', '.join(str(n.address) for n in plan.nics)})")

    @functools.cached_property
    def firmware(self) -> tuple[str, str]:
        """The firmware every node boots with, and why (dcnlab.image.firmware)."""
        firmware, why = resolve_firmware(self.image.disk, self.image.kernel, self.spec.firmware)
        if firmware == "uefi":
            (self.run_dir / "nvram").mkdir(exist_ok=True)
        return firmware, why

    @functools.cached_property
    def identity_channels(self) -> tuple[str, ...]:
        """How every node learns its identity (dcnlab.image.identity)."""
        return identity_channels(self.image.kernel is not None, self.image.identity, self.spec.identity)

    @property
    def owner(self) -> Owner:
        """The label on everything this fleet creates in the engine."""
        return Owner(self.record.run_id, self.name)

    def _define(self, plan: NodePlan, disk: Path, uuid: str | None = None) -> None:
        """Define ``plan``'s domain on ``disk`` (recorded at once, for gc)."""
        networks = {i: self.plan.network(i) for i in range(self.spec.networks)}
        seed = None
        strings: list[str] = []
        public = self.run_key.with_name(self.run_key.name + ".pub").read_text().strip()
        # A disk that boots its own boot loader (an RHDE image) gets its
        # identity through the channels it reads instead of the kernel line.
        if "cloud-init" in self.identity_channels:
            documents = seed_documents(
                plan,
                networks,
                ssh_public_key=public,
                instance_id=f"{self.record.run_id}-{plan.name}",
            )
            seed = write_seed_image(documents, self.run_dir / "seeds" / f"{plan.name}.iso")
        if "smbios" in self.identity_channels:
            strings = oem_strings(identity_credentials(plan, networks, ssh_public_key=public))
        firmware, _why = self.firmware
        host = ""
        if self.lab is not None:
            host = (
                self.record.placement.get(plan.name)
                or place([plan.name], self.hosts, already=self.record.placement)[plan.name]
            )
            self.record.placement[plan.name] = host
            self.record.save(self.run_dir)
        self.created = True
        self.machines.define(
            MachineSpec(
                plan,
                owner=self.owner,
                domain_type=self.accel.domain_type,
                vcpus=self.spec.vcpus,
                memory_mib=self.spec.memory_mib,
                disk=disk,
                console_log=self.console_log(plan.name),
                boot=BootSpec(self.image.kernel, self.image.initrd, self.kernel_cmdline(plan)),
                networks=networks,
                seed=seed,
                uuid=uuid,
                firmware=firmware,
                nvram=self.run_dir / "nvram" / f"{plan.name}_VARS.fd" if firmware == "uefi" else None,
                oem_strings=tuple(strings),
                host=host,
            )
        )
        self.record.nodes.append(plan.index)
        self.record.save(self.run_dir)

    @property
    def _pubkey_b64(self) -> str:
        public = self.run_key.with_name(self.run_key.name + ".pub").read_text().strip()
        return base64.b64encode(public.encode()).decode()

    def kernel_cmdline(self, plan: NodePlan) -> str:
        ips = " ".join(f"ip={nic.address}:::255.255.255.0::{nic.guest_dev}:off" for nic in plan.nics)
        return " ".join(
            [
                self.image.cmdline,
                # Kernel chatter on an emulated UART slows a TCG boot; systemd's
                # status lines stay in the console log for post-mortems.
                "console=ttyS0 net.ifnames=0 mitigations=off quiet systemd.show_status=1",
                f"systemd.hostname={plan.name}",
                ips,
                # Static addresses: nothing to wait for, and waiting costs ~14 s under TCG.
                "systemd.mask=systemd-networkd-wait-online.service",
                f"dcnlab.ssh_key={self._pubkey_b64}",
                # No hacluster password here: it goes over SSH (pcs.host_auth_step).
            ]
        )

    @property
    def hacluster_password(self) -> str:
        return (self.run_dir / "hacluster.pw").read_text()

    def _wait_ssh(self, node: Node, deadline: Deadline, t0: float) -> None:
        def answers() -> bool:
            if self.closing:
                raise ProvisionError(f"fleet {self.name} is being torn down")
            state = self.domain_state(node.name)
            if state not in ("running", "blocked"):
                raise ProvisionError(f"{node.name} is {state}, not running")
            # A bare TCP probe first: a paramiko attempt against a guest that is
            # still booting costs far more host CPU than the guest can spare.
            probe = ["nc", "-z", "-w", "2", node.address(), "22"]
            if not run_local(probe, netns=self.access.netns, timeout=10, check=False).ok:
                return False
            return node.run("true", timeout=20).ok

        try:
            wait_until(
                answers,
                timeout=deadline,
                what=f"{node.name} to answer SSH on {node.address()}",
                interval=1.0,
                describe_failure=lambda: self._boot_failure(node.name),
                give_up_on=(ProvisionError, HypervisorExited),  # not running, or no hypervisor: it will not answer
            )
        except DcnlabError as err:
            raise ProvisionError(str(err)) from err
        self.progress(f"fleet {self.name}: {node.name} answers SSH after {time.monotonic() - t0:.1f}s")

    def _boot_failure(self, name: str) -> str:
        """What a user needs when a node never answered SSH: its console, and
        what to change."""
        log = self.console_log(name)
        if not log.exists() or log.stat().st_size == 0:
            seen = (
                f"{name} printed nothing on its serial console ({log}): is the image bootable, "
                "and does its boot loader and kernel log to ttyS0?"
            )
        else:
            seen = f"console log tail ({log}):\n{self.console_tail(name)}"
        # An image that reads none of the channels offered boots to a login
        # prompt nobody can use: say what was offered and what each needs.
        offered = self.identity_channels
        return (
            f"{seen}\nIdentity channels offered: {describe_channels(offered)}. An image that reads none of "
            "them boots without its addresses or key"
            + ("; choose another with --dcn-identity (fleet up: --identity)" if offered != ("kernel",) else "")
            + ".\nIf the host is only slow, allow more time: --boot-timeout SECONDS "
            "(pytest: --dcn-boot-timeout SECONDS)."
        )

    def _write_ssh_config(self) -> None:
        text = ssh_config_text([n.plan for n in self.nodes.values()], self.access)
        self.access.ssh_config.write_text(text)

    # -- replacing every node ------------------------------------------------

    def renew_nodes(self, restore: NodeSource | None = None) -> None:
        """Replace every node by a new one, on the same names and addresses:
        restored from ``restore`` (a cached cluster-ready state), or booted
        fresh from the image. The fleet's networks and hypervisor stay."""
        plans = [self.plan.node(i, self.spec.networks) for i in range(1, self.spec.nodes + 1)]
        for node in list(self.nodes.values()):
            node.close()
            self.machines.undefine(node.domain, self.owner)
            if node.plan.index in self.record.nodes:
                self.record.nodes.remove(node.plan.index)
            (self.run_dir / "disks" / f"{node.name}.qcow2").unlink(missing_ok=True)
            (self.run_dir / "seeds" / f"{node.name}.iso").unlink(missing_ok=True)
            del self.nodes[node.name]
        self.record.save(self.run_dir)
        if restore is not None:
            self.progress(f"fleet {self.name}: restoring {len(plans)} node(s) from {restore.describe()}")
            restore.bring_up(self, plans)
        else:
            self.progress(f"fleet {self.name}: booting {len(plans)} new node(s)")
            self._boot(plans)

    # -- growing and shrinking ----------------------------------------------

    def add_node(self) -> Node:
        """Boot one more node (next free index) and return when it answers SSH."""
        index = max(self.record.nodes, default=0) + 1
        (node,) = self._boot([self.plan.node(index, self.spec.networks)])
        return node

    def remove_node(self, name: str) -> None:
        """Power off and delete one node, its domain and its disk."""
        node = self.node(name)
        node.close()
        self.machines.undefine(node.domain, self.owner)
        self.record.nodes.remove(node.plan.index)
        self.record.placement.pop(name, None)
        self.record.save(self.run_dir)
        del self.nodes[name]
        (self.run_dir / "disks" / f"{name}.qcow2").unlink(missing_ok=True)
        self._write_ssh_config()

    def power_on(self, name: str) -> None:
        """Start a node that is off (fenced, powered off) and wait for SSH."""
        node = self.node(name)
        node.close()
        t0 = time.monotonic()
        try:
            self.machines.power(node.domain, "on")
        except HypervisorError as err:
            raise ProvisionError(f"cannot power on {name}: {err}") from err
        self._wait_ssh(node, Deadline.after(self.boot_seconds(1)), t0)

    def power_off(self, name: str) -> None:
        """Cut a node's power from the hypervisor, as a fence does: no
        shutdown runs in the guest. :meth:`power_on` brings it back."""
        node = self.node(name)
        node.close()
        self.machines.power(node.domain, "off")

    def reboot(self, name: str) -> None:
        """Reboot a node from inside (``systemctl reboot``) and wait until it
        answers SSH again from a new boot."""
        node = self.node(name)
        boot_id = "cat /proc/sys/kernel/random/boot_id"
        before = node.run(boot_id, timeout=30).stdout.strip()
        # The connection may drop before the command returns: its result says nothing.
        node.run("systemctl reboot", timeout=30, check=False)
        node.close()
        t0 = time.monotonic()

        def rebooted() -> bool:
            now = node.run(boot_id, timeout=20).stdout.strip()
            return now not in ("", before)

        try:
            wait_until(
                rebooted,
                timeout=self.boot_seconds(1),
                what=f"{name} to answer SSH from a new boot after `systemctl reboot`",
                interval=2.0,
                describe_failure=lambda: self._boot_failure(name),
            )
        except DcnlabError as err:
            raise ProvisionError(str(err)) from err
        self.progress(f"fleet {self.name}: {name} rebooted and answers SSH after {time.monotonic() - t0:.1f}s")

    # -- fencing --------------------------------------------------------------

    def fence_listeners(self, network: int, port: int, timeout: float = 60.0) -> list[FenceEndpoint]:
        """The hypervisor side of fence_virt, one per host: a listener on the
        host's address on ``network`` (a single host's: the gateway) and
        ``port`` that powers off that host's machines, and only those, for a
        guest holding the fleet's key (started, or found running). Only
        embedded hypervisors run them."""
        if not isinstance(self.hv, EmbeddedHypervisor):
            raise ConfigError(
                "fencing method fence_virt needs the embedded hypervisor (fence_virtd runs next to it); "
                "with --libvirt-uri use fencing method fence_virsh or none"
            )
        net = self.plan.network(network)
        if self.lab is None:
            return [fence_virtd.start(self.hv, self.run_dir / "fence", str(net.gateway), port, timeout)]
        workdir = self.run_dir / "fence"
        endpoints = []
        for host in self.lab.hosts:
            address = str(host_address(net, host.plan))
            # One key for the fleet: every host's listener accepts the same guests.
            endpoint = fence_virtd.start(host.hv, workdir, address, port, timeout, name=f"fence_virtd-{host.name}")
            endpoints.append(replace(endpoint, host=host.name))
        return endpoints

    # -- pausing --------------------------------------------------------------

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Every running node of the fleet paused for the block (its cluster
        frozen whole, as in a save), then resumed together with its clocks set:
        a second fleet, or a node booting into this one, gets the host's CPUs
        meanwhile. Nodes the block adds run on, untouched."""
        frozen = self.suspend_all()
        try:
            yield
        finally:
            self.ensure_running()
            self.set_clocks(frozen)

    def suspend_all(self) -> list[str]:
        """Every running node paused (the cluster frozen whole), its SSH sessions
        closed first: they would not survive. Returns the names paused."""
        frozen = []
        for node in self.nodes.values():
            if self.machines.state(node.domain) != "running":
                continue
            node.close()
            self.machines.power(node.domain, "suspend")
            frozen.append(node.name)
        return frozen

    def ensure_running(self) -> None:
        """Resume every paused domain of the fleet."""
        for node in self.nodes.values():
            if self.machines.state(node.domain) == "paused":
                self.machines.power(node.domain, "resume")

    def set_clocks(self, names: Iterable[str] | None = None) -> None:
        """Set the guests' clocks (every node's, or ``names``') from the host's: a
        restored or resumed guest's clock stands where it was when it stopped."""
        on_each(
            [self.node(name) for name in names] if names is not None else list(self.nodes.values()),
            lambda node: run_with_clock(node, "true", None, 60 * self.accel.scale),
            label=lambda node: node.name,
            what="setting the guest clocks",
            error=ProvisionError,
        )

    # -- reading ------------------------------------------------------------

    def running(self) -> list[Node]:
        """The nodes whose domains run (not off, fenced or paused)."""
        return [n for n in self.nodes.values() if self.domain_state(n.name) == "running"]

    def domain_state(self, name: str) -> str:
        """The power state of ``name``'s machine (:data:`dcnlab.fleet.provider.POWER_STATES`)."""
        return self.machines.state(self.node(name).domain)

    def console_log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.console.log"

    def console_tail(self, name: str, lines: int = 25) -> str:
        path = self.console_log(name)
        if not path.exists():
            return "(no console output yet)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_id": self.record.run_id,
            "uri": self.hv.uri,
            "embedded": self.record.embedded,
            "netns": self.hv.netns,
            "accelerator": self.accel.name,
            "hosts": [
                {"name": h.name, "uri": h.uri, "netns": h.netns, "underlay": str(h.plan.underlay)}
                for h in (self.lab.hosts if self.lab is not None else [])
            ],
            "persistent": self.record.persistent,
            "image": str(self.image.disk),
            "ssh_config": str(self.access.ssh_config),
            "networks": [
                {"index": i, "name": n.name, "bridge": n.bridge, "cidr": str(n.cidr), "gateway": str(n.gateway)}
                for i in range(self.spec.networks)
                for n in [self.plan.network(i)]
            ],
            "nodes": [
                {
                    "name": node.name,
                    "domain": node.domain,
                    "state": self.domain_state(node.name),
                    "host": self.host_of(node.name),
                    "addresses": node.addresses,
                    "macs": [nic.mac for nic in node.plan.nics],
                    "console_log": str(self.console_log(node.name)),
                }
                for node in self.nodes.values()
            ],
        }

    # -- hand-off and teardown ----------------------------------------------

    def release(self) -> None:
        """Hand the fleet to the user: it outlives this process and gc keeps it."""
        self.record.persistent = True
        self.record.owner = None
        self.record.save(self.run_dir)

    def down(self) -> None:
        _teardown(self.record, self.run_dir, self, self.progress, engine_objects=self.created)

    @classmethod
    def attach(cls, name: str, progress: Progress = print) -> Fleet:
        """Reach a fleet that another process created (CLI status/ssh/down)."""
        run_dir = run_dir_of(name)
        if not (run_dir / RunRecord.FILE).exists():
            known = ", ".join(sorted(p.name for p in paths.runs_dir().glob("*") if p.is_dir())) or "none"
            raise ConfigError(f"no fleet named {name!r} (known fleets: {known}); start one with `dcnlab fleet up`")
        record = RunRecord.load(run_dir)
        hv = _hypervisor_of(record, run_dir)
        if isinstance(hv, EmbeddedHypervisor) and not hv.alive():
            raise HypervisorError(
                f"the embedded hypervisor of fleet {name} is gone (was it killed?); "
                f"remove the rest with `dcnlab fleet down --name {name}`"
            )
        accel = Accel("kvm" if record.domain_type == "kvm" else "tcg", "as recorded when the fleet was created")
        fleet = cls(record, run_dir, hv, image_from_dict(record.image), accel, progress)
        fleet.created = True
        return fleet


def _hypervisor_of(record: RunRecord, run_dir: Path) -> Hypervisor:
    if record.embedded:
        return EmbeddedHypervisor(run_dir / "hv", record.netns or netns_name(record.name), record.supervisor)
    return ExternalHypervisor(record.uri, record.netns)


def _exists_message(name: str, run_dir: Path) -> str:
    try:
        record = RunRecord.load(run_dir)
    except (OSError, ValueError, TypeError):
        return f"fleet {name!r} already has a run directory {run_dir}; remove it with `dcnlab gc`"
    if record.abandoned():
        return f"fleet {name!r} was left behind by a run that died; run `dcnlab gc`, then try again"
    return f"fleet {name!r} already exists; use it, pick another --name, or `dcnlab fleet down --name {name}`"


def _teardown(
    record: RunRecord, run_dir: Path, fleet: Fleet | None, progress: Progress, *, engine_objects: bool = True
) -> None:
    """Remove everything of one run; every step runs even if an earlier one
    failed, and the failures are raised together at the end. A first Ctrl-C
    meanwhile is held until it is done (:mod:`dcnlab.core.interrupts`).

    ``engine_objects`` is False only when this process knows it created
    nothing in the engine (a create that failed before its first network):
    the engine is then not asked, so an unreachable libvirt is reported once,
    as the cause, and not again as an incomplete teardown."""
    with interrupts.deferred(f"fleet {record.name}: teardown", progress):
        progress(f"fleet {record.name}: tearing down")  # once Ctrl-C is held
        _remove_all(record, run_dir, fleet, progress, engine_objects)


def _remove_all(
    record: RunRecord, run_dir: Path, fleet: Fleet | None, progress: Progress, engine_objects: bool
) -> None:
    errors: list[str] = []

    def step(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - collected and raised below
            errors.append(f"{what}: {err}")

    if fleet is not None:
        fleet.closing = True  # threads still waiting for a node give up at their next look
        for node in fleet.nodes.values():
            node.close()
    hv = fleet.hv if fleet is not None else _hypervisor_of(record, run_dir)
    # An embedded hypervisor whose libvirtd died is on its way out: nothing to ask.
    reachable = not isinstance(hv, EmbeddedHypervisor) or (hv.alive() and hv.libvirtd_alive())
    if reachable and record.uri and engine_objects:
        # Without a fleet (gc) only host 1 is asked: the lab's other hosts go whole below.
        machines = fleet.machines if fleet is not None else LibvirtProvider(hv.connect, hv.netns)

        def remove_engine_objects() -> None:
            try:
                machines.remove_owned(Owner(record.run_id, record.name))
            finally:
                machines.close()

        step("removing domains and networks", remove_engine_objects)
    elif fleet is not None:
        fleet.machines.close()
    if record.lab:
        # Hosts 2..N and the underlay; host 1 is the fleet's own hypervisor, below.
        def lab_down() -> None:
            failures = stop_lab(record.lab)
            if failures:
                raise ProvisionError("; ".join(failures))

        step("stopping the lab hosts", lab_down)
    if isinstance(hv, EmbeddedHypervisor):
        step("stopping the embedded hypervisor", hv.stop)
    step("stopping leftover processes", lambda: kill_run_processes(run_dir, record.run_id))
    if record.embedded:
        netns = record.netns or netns_name(record.name)
        step("stopping processes left in the namespace", lambda: kill_netns_processes(netns))
        step("deleting the namespace", lambda: delete_netns(netns))
    step("removing the run directory", lambda: shutil.rmtree(run_dir))
    if errors:
        raise ProvisionError(f"teardown of fleet {record.name} was incomplete:\n  " + "\n  ".join(errors))
    progress(f"fleet {record.name}: removed")


__all__ = ["CommandError", "Fleet", "netns_name", "run_dir_of"]
