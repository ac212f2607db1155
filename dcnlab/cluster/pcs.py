"""The pcs commands that build a spec's cluster, as argument lists.

Targets pcs 0.11 (Debian bookworm's 0.11.5, RHEL 9's 0.11.x). Nothing here runs
anything: :func:`bootstrap_plan` returns an ordered :class:`Plan` of
:class:`Step` s, each an argv for one node plus a description for progress
lines and Allure steps. Every value is one argv element, so nothing is ever
parsed by a shell (``Node.run`` quotes a list with ``shlex.join``).

The plan, and why it is shaped this way:

1. ``pcs cluster setup NAME dcn1 addr=.. addr=.. ... transport knet [link ..]
   [totem ..] --corosync_conf FILE --overwrite`` on the first node: pcs's own
   *local only mode* (``pcs cluster setup --help``). pcs writes exactly the
   corosync.conf it would distribute, one ``addr=`` per knet link in link
   order, and talks to no pcsd. The default (networked) mode was tried first:
   on three TCG guests sharing two host cores, pcsd answers its peers' setup
   requests after more than pcs's fixed 60 s request timeout, and ``pcs cluster
   setup`` (0.11.5) takes no ``--request-timeout``. Local mode leaves to the
   caller what pcs lists as skipped: copy corosync.conf and fresh corosync and
   pacemaker authkeys (256 random bytes each, as pcs makes them: pcs
   settings.py) to every node (and ``pcs host auth``, should a pcsd-backed
   command be wanted later: :func:`host_auth_step`; growing and shrinking
   take pcs's steps over SSH instead, :meth:`Cluster.add_node`).
2. ``systemctl start corosync pacemaker`` on every node: exactly what a local
   ``pcs cluster start`` does (pcs cluster.py ``start_cluster``: corosync, then
   pacemaker), without paying pcs's own start-up (20-40 s under TCG) on every
   node at once.
3. ``pcs cluster cib FILE`` saves the live CIB to a file on the first node, then
   every property, default, the fence device, resource and constraint is added
   with ``pcs -f FILE ...``: no pcsd and no CIB round trip per command (each
   pcs command costs 10-20 s under TCG, docs/facts.md), and no transient state where
   half the resources run without their constraints.
4. ``pcs cluster cib-push FILE --config --wait=N`` replaces the configuration
   section in one go and waits, through ``crm_resource --wait``, until the
   cluster has settled (no pending actions).

``pcs host auth`` (:func:`host_auth_argv`) takes the password on **stdin**, not
``-p``: an argv ends up in ``ps`` on the node and in every ``CommandError`` and
log line the harness writes. pcs reads it from stdin when stdin is not a TTY
(pcs/utils.py ``get_terminal_password``: ``isatty()`` false -> ``input()``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcnlab.cluster.spec import (
    STONITH_ID,
    Ban,
    ClusterSpec,
    Colocation,
    Constraint,
    Group,
    IPaddr2,
    Location,
    Order,
    Resource,
    score_text,
)
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.hosts import HostPlan, host_address
from dcnlab.fleet.spec import AddressPlan, NodePlan

DEFAULT_CIB_FILE = "/var/tmp/dcnlab-bootstrap.cib.xml"
DEFAULT_COROSYNC_FILE = "/var/tmp/dcnlab-corosync.conf"
# Where local mode leaves the caller to put things (pcs settings.py), and how.
COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_AUTHKEY = "/etc/corosync/authkey"
PACEMAKER_AUTHKEY = "/etc/pacemaker/authkey"  # owner hacluster:haclient, 0400
AUTHKEY_BYTES = 256
# What a local `pcs cluster start` runs, in its order (systemd starts the
# listed units in dependency order: pacemaker.service requires corosync).
START_ARGV = ("systemctl", "start", "corosync", "pacemaker")
STOP_ARGV = ("systemctl", "stop", "pacemaker", "corosync")
# Every corosync of the cluster reads its corosync.conf again (corosync-cfgtool(8) -R).
RELOAD_ARGV = ("corosync-cfgtool", "-R")
# What corosync-cfgtool prints when corosync refuses the reload for now: the
# membership is changing (a node just stopped its corosync or started it) and
# corosync answers CS_ERR_TRY_AGAIN until the new membership has formed.
RELOAD_BUSY = "CS_ERR_TRY_AGAIN"


def reload_busy(output: str) -> bool:
    """Whether ``corosync-cfgtool -R``'s output says to try again later,
    rather than that the reload failed."""
    return RELOAD_BUSY in output


# A cold start's controllers each wait Pacemaker's dc-deadtime (default 20 s)
# for a DC before holding an election: 20.5 s of the 33 s from starting the
# stack on every node to a DC (docs/facts.md). The bootstrap starts them all at
# once, with corosync's membership formed in seconds, so that wait buys
# nothing: a CIB seeded before the first start (when there is none yet) gives
# them BOOT_DC_DEADTIME, and the configuration pushed afterwards is the spec's
# alone (the seed's value is deleted before the CIB is saved, unless the spec
# sets dc-deadtime itself; then the seed carries the spec's value).
BOOT_DC_DEADTIME = "2s"
SEED_CIB_SH = r"""set -eu
cib=${CIB:-/var/lib/pacemaker/cib/cib.xml}
[ -e "$cib" ] && exit 0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cibadmin --empty > "$tmp"
CIB_file="$tmp" crm_attribute --type crm_config --name dc-deadtime --update "$1"
install -o hacluster -g haclient -m 0600 "$tmp" "$cib"
"""
DC_DEADTIME_DELETE_ARGV = ("crm_attribute", "--type", "crm_config", "--name", "dc-deadtime", "--delete")


def boot_dc_deadtime(spec: ClusterSpec) -> tuple[str, bool]:
    """The dc-deadtime a cold start's seeded CIB carries, and whether it is the
    harness's (to delete once a DC is elected) rather than the spec's."""
    mine = dict(spec.cluster.properties).get("dc-deadtime")
    return (mine, False) if mine is not None else (BOOT_DC_DEADTIME, True)


# pcsd is only needed by pcsd-backed commands (host auth, networked node
# add/remove), none of which the harness runs (Cluster.add_node/remove_node
# take pcs's steps over SSH): idle, it took ~15% of a TCG guest's single vCPU
# (top: 3:13 CPU minutes in 21 minutes of uptime), time that monitors and
# failovers then lack. The harness stops it on every node. Two units on
# pcs 0.11 (pcsd and its Ruby half); --no-block: nobody waits for the stop.
PCSD_STOP_SH = "systemctl stop --no-block pcsd.service; systemctl stop --no-block pcsd-ruby.service 2>/dev/null; true"
PCSD_START_ARGV = ("systemctl", "start", "--no-block", "pcsd.service")
HACLUSTER_USER = "hacluster"
# Seconds a step may take under KVM; the caller scales them by the accelerator
# (x4 under TCG). Measured under TCG: any pcs command 10-20 s, setup+start of 3
# nodes ~150 s (docs/facts.md), so these leave room without hiding a hang.
PCS_TIMEOUT = 30.0
AUTH_TIMEOUT = 45.0


@dataclass(frozen=True)
class Step:
    """One command of the plan, for one node."""

    description: str
    node: str
    argv: tuple[str, ...]
    timeout: float  # seconds under KVM: multiply by the accelerator's scale
    # Secret input (the hacluster password): feed it on stdin, never log it.
    stdin: str | None = field(default=None, repr=False)

    def command(self) -> str:
        """The argv as one shell-quoted line, safe to log (stdin is not in it)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Plan:
    """The bootstrap: ``setup`` on the first node, then the caller copies
    ``corosync_conf`` and the authkeys to every node and runs ``start`` on
    each, then ``configure`` on the first node."""

    setup: Step
    start: tuple[str, ...]
    configure: tuple[Step, ...]
    cib_file: str
    corosync_conf: str

    @property
    def first(self) -> str:
        return self.setup.node

    @property
    def steps(self) -> tuple[Step, ...]:
        """The first node's steps in order (``start`` runs on every node between
        ``setup`` and ``configure``)."""
        return (self.setup, *self.configure)

    def describe(self) -> list[str]:
        start = f"every node: start the cluster stack: {shlex.join(self.start)}"
        return [f"{self.setup.node}: {self.setup.description}: {self.setup.command()}", start] + [
            f"{s.node}: {s.description}: {s.command()}" for s in self.configure
        ]


def bootstrap_plan(
    spec: ClusterSpec,
    nodes: Sequence[NodePlan],
    addresses: AddressPlan,
    *,
    wait_seconds: int = 300,
    cib_file: str = DEFAULT_CIB_FILE,
    corosync_conf: str = DEFAULT_COROSYNC_FILE,
    devices: Sequence[FenceDevice] | None = None,
) -> Plan:
    """The whole bootstrap of ``spec`` on ``nodes`` (see the module doc).

    ``addresses`` is the fleet's address plan (gateways, the VIP's /24);
    ``wait_seconds`` bounds the final ``--wait``, already scaled by the caller;
    ``devices`` the fence devices (default: :func:`fence_devices` on one host).
    """
    if not nodes:
        raise ConfigError("a cluster needs at least one node")
    networks = len(nodes[0].nics)
    spec.check_against(networks, max(n.index for n in nodes), addresses)
    first = nodes[0].name

    def step(description: str, argv: list[str], timeout: float = PCS_TIMEOUT) -> Step:
        return Step(description, first, tuple(argv), timeout)

    def offline(description: str, argv: list[str]) -> Step:
        return step(description, ["pcs", "-f", cib_file, *argv])

    names = ", ".join(n.name for n in nodes)
    setup = step(
        f"write corosync.conf of cluster {spec.cluster.name} for {names} (pcs local mode)",
        cluster_setup_argv(spec, nodes, corosync_conf),
    )
    steps = [step(f"save the CIB to {cib_file}", ["pcs", "cluster", "cib", cib_file])]
    if spec.cluster.properties:
        steps.append(offline("set cluster properties", property_argv(spec)))
    if spec.cluster.resource_defaults:
        steps.append(
            offline(
                "set resource defaults",
                ["resource", "defaults", "update", *_pairs(spec.cluster.resource_defaults)],
            )
        )
    if spec.cluster.op_defaults:
        steps.append(
            offline(
                "set operation defaults",
                ["resource", "op", "defaults", "update", *_pairs(spec.cluster.op_defaults)],
            )
        )
    for dev in fence_devices(spec, nodes, addresses) if devices is None else devices:
        on = f" for {', '.join(n.name for n in dev.nodes)} on host {dev.host}" if dev.host else ""
        steps.append(
            offline(
                f"create fence device {dev.id} ({spec.fencing.method}){on}",
                stonith_argv(spec, dev.nodes, dev.address, dev.id),
            )
        )
    for rsc, group in spec.creation_order():
        where = f" in group {group.id}" if group else ""
        steps.append(offline(f"create {rsc.id} ({rsc.agent}){where}", resource_argv(rsc, group, addresses, spec)))
        if rsc.no_monitor:
            # pcs always adds a monitor; `op delete RSC monitor` removes all of
            # them (pcs resource.py resource_operation_remove: no properties
            # given -> remove_all).
            steps.append(offline(f"remove the monitor of {rsc.id}", ["resource", "op", "delete", rsc.id, "monitor"]))
    for group in spec.groups:
        if group.meta:
            steps.append(
                offline(f"set meta attributes of group {group.id}", ["resource", "meta", group.id, *_pairs(group.meta)])
            )
    for con in spec.constraints:
        steps.append(offline(f"add {describe_constraint(con)}", constraint_argv(con)))
    steps.append(
        step(
            "push the configuration and wait until the cluster settles",
            ["pcs", "cluster", "cib-push", cib_file, "--config", f"--wait={wait_seconds}"],
            wait_seconds + PCS_TIMEOUT,
        )
    )
    return Plan(setup, START_ARGV, tuple(steps), cib_file, corosync_conf)


# rpm-ostree images (RHEL for Edge, bootc) keep package-created users such as
# hacluster in /usr/lib/passwd and /usr/lib/group (nss-altfiles), where
# chpasswd cannot change them: copy the user's line into /etc/passwd and give
# it a locked /etc/shadow entry first, as linux-system-roles/ha_cluster does
# (docs/facts.md). A no-op on images where hacluster is in /etc/passwd.
# ETC and LIB let the unit tests run it on a scratch tree.
HACLUSTER_TO_ETC_SH = r"""set -eu
etc=${ETC:-/etc} lib=${LIB:-/usr/lib} user=hacluster
if ! grep -q "^$user:" "$etc/passwd"; then
  line=$(grep "^$user:" "$lib/passwd" 2>/dev/null) || {
    echo "no $user user in $etc/passwd or $lib/passwd: is pacemaker installed?" >&2; exit 3; }
  printf '%s\n' "$line" >> "$etc/passwd"
fi
if [ -e "$etc/shadow" ] && ! grep -q "^$user:" "$etc/shadow"; then
  printf '%s:!:%s::::::\n' "$user" "$(( $(date +%s) / 86400 ))" >> "$etc/shadow"
fi
"""


def hacluster_password_step(node: NodePlan, hacluster_password: str) -> Step:
    """Set the hacluster password on ``node`` (for pcsd), on rpm-ostree images
    too (:data:`HACLUSTER_TO_ETC_SH`); the password on stdin, never in argv."""
    script = HACLUSTER_TO_ETC_SH + f"chpasswd <<EOF\n{HACLUSTER_USER}:$(cat)\nEOF\n"
    return Step(
        f"set the {HACLUSTER_USER} password on {node.name}",
        node.name,
        ("sh", "-c", script),
        PCS_TIMEOUT,
        stdin=hacluster_password + "\n",
    )


def host_auth_step(nodes: Sequence[NodePlan], hacluster_password: str) -> Step:
    """``pcs host auth`` of every node, run on the first; the password on stdin."""
    names = ", ".join(n.name for n in nodes)
    return Step(
        f"authenticate pcsd on {names}",
        nodes[0].name,
        tuple(host_auth_argv(nodes)),
        AUTH_TIMEOUT,
        stdin=hacluster_password + "\n",
    )


def host_auth_argv(nodes: Sequence[NodePlan]) -> list[str]:
    """``pcs host auth`` for every node at its network-0 address (pcsd, port 2224).

    The password is not in it: feed ``PASSWORD\\n`` on stdin (see the module doc).
    """
    argv = ["pcs", "host", "auth"]
    for node in nodes:
        argv += [node.name, f"addr={node.address(0)}"]
    return [*argv, "-u", HACLUSTER_USER]


def cluster_setup_argv(spec: ClusterSpec, nodes: Sequence[NodePlan], corosync_conf: str) -> list[str]:
    """``pcs cluster setup`` in local mode, one ``addr=`` per knet link (pcs 0.11
    syntax: ``setup NAME (NODE [addr=ADDR]...)... [transport knet [link ..]...]
    [totem OPTS] [--corosync_conf PATH [--overwrite]]``)."""
    links = spec.link_networks(len(nodes[0].nics))
    argv = ["pcs", "cluster", "setup", spec.cluster.name]
    for node in nodes:
        argv.append(node.name)
        argv += [f"addr={node.address(net)}" for net in links]
    argv += ["transport", "knet"]
    opts = spec.cluster.corosync
    if opts.knet_ping_interval is not None and opts.knet_ping_timeout is not None:
        # pcs names them ping_interval/ping_timeout and writes knet_ping_* into
        # each link's interface section (pcs lib/corosync/constants.py).
        for link in range(len(links)):
            argv += [
                "link",
                f"linknumber={link}",
                f"ping_interval={opts.knet_ping_interval}",
                f"ping_timeout={opts.knet_ping_timeout}",
            ]
    totem = [f"{name}={value}" for name, value in (("consensus", opts.consensus), ("token", opts.token)) if value]
    if totem:
        argv += ["totem", *totem]
    return [*argv, "--corosync_conf", corosync_conf, "--overwrite"]


def property_argv(spec: ClusterSpec) -> list[str]:
    return ["property", "set", *_pairs(spec.cluster.properties)]


def host_map(nodes: Sequence[NodePlan]) -> str:
    """``pcmk_host_map``: cluster node name -> libvirt domain name."""
    return ";".join(f"{node.name}:{node.domain}" for node in nodes)


@dataclass(frozen=True)
class FenceDevice:
    """One fence device the harness creates: its id, the address its agent asks
    (a host's fence listener), and the nodes it may fence. A fleet on one host
    has one (:data:`STONITH_ID`, at the gateway, every node); a fleet over
    several hosts one per host (``fence_dcn-HOST``, at that host's address,
    the nodes placed there and no other: a listener answers "off" with success
    for a domain its host does not have, docs/multihost.md)."""

    id: str
    address: str
    nodes: tuple[NodePlan, ...]
    host: str = ""


def fence_device_id(host: str) -> str:
    return f"{STONITH_ID}-{host}" if host else STONITH_ID


def fence_devices(
    spec: ClusterSpec,
    nodes: Sequence[NodePlan],
    addresses: AddressPlan,
    hosts: Sequence[HostPlan] = (),
    placement: Mapping[str, str] | None = None,
) -> list[FenceDevice]:
    """The fence devices of ``spec`` on ``nodes``: one per host of ``hosts``
    that ``placement`` (node name -> host) puts a node on, else one for all."""
    if spec.fencing.method == "none":
        return []
    net = addresses.network(spec.fencing.network)
    if not hosts:
        return [FenceDevice(STONITH_ID, str(net.gateway), tuple(nodes))]
    where = placement or {}
    unplaced = [n.name for n in nodes if where.get(n.name) not in {h.name for h in hosts}]
    if unplaced:
        raise ConfigError(
            f"nodes {', '.join(unplaced)} are placed on none of the hosts {', '.join(h.name for h in hosts)}"
        )
    return [
        FenceDevice(fence_device_id(h.name), str(host_address(net, h)), on, h.name)
        for h in hosts
        if (on := tuple(n for n in nodes if where[n.name] == h.name))
    ]


def stonith_argv(spec: ClusterSpec, nodes: Sequence[NodePlan], gateway: str, device: str = STONITH_ID) -> list[str]:
    """``pcs stonith create fence_dcn ...`` (without the ``pcs -f FILE`` prefix).

    fence_virt's parameters (fence-agents agents/virt/client/options.c):
    ``ipaddr`` (set = TCP mode, main.c), ``ipport`` (TCP port; default 1229),
    ``key_file``, ``timeout`` (seconds). ``port`` is the *domain* to fence and
    comes from ``pcmk_host_map``, so it must not be given as a device option.
    fence_virsh (agents/virsh/fence_virsh.py) runs ``virsh`` over ssh as
    ``username`` with ``identity_file``.
    """
    fencing = spec.fencing
    argv = ["stonith", "create", device, fencing.method]
    if fencing.method == "fence_virt":
        argv += [
            f"ipaddr={gateway}",
            f"ipport={fencing.port}",
            f"key_file={fencing.key_file}",
            f"timeout={fencing.timeout}",
        ]
    else:
        argv += [
            f"ip={gateway}",
            "username=root",
            f"identity_file={fencing.identity_file}",
            f"power_timeout={fencing.timeout}",
        ]
    argv += [f"pcmk_host_map={host_map(nodes)}", f"pcmk_reboot_action={fencing.action}"]
    if device != STONITH_ID:
        # One of several hosts' devices: it may be asked for these nodes only
        # (static-list is already the default with a host map; said, not implied).
        argv.append("pcmk_host_check=static-list")
    return [*argv, *_pairs(fencing.params)]


def resource_argv(rsc: Resource, group: Group | None, addresses: AddressPlan, spec: ClusterSpec) -> list[str]:
    """``pcs resource create ...`` (without the ``pcs -f FILE`` prefix)."""
    argv = ["resource", "create", rsc.id, rsc.agent]
    if isinstance(rsc, IPaddr2):
        argv += [f"ip={spec.vip_address(rsc, addresses)}", f"cidr_netmask={rsc.cidr_netmask}", f"nic={rsc.nic}"]
    argv += _pairs(rsc.params())
    if rsc.ops:
        argv.append("op")
        for op in rsc.ops:
            argv += [op.name, *op.options()]
    if rsc.meta:
        argv += ["meta", *_pairs(rsc.meta)]
    if group is not None:
        # pcs 0.11 spelling; pcs 0.12 replaced it by a `group NAME` keyword.
        argv += ["--group", group.id]
    return argv


def constraint_argv(con: Constraint) -> list[str]:
    """``pcs constraint ...`` (without the ``pcs -f FILE`` prefix).

    A negative score is a positional argument: pcs does not take it for an
    option (pcs/cli/common/parse_args.py ``_is_negative_num`` covers -INFINITY).
    """
    if isinstance(con, Colocation):
        return ["constraint", "colocation", "add", con.rsc, "with", con.with_rsc, score_text(con.score)]
    if isinstance(con, Order):
        return ["constraint", "order", "start", con.first, "then", "start", con.then, f"kind={con.kind}"]
    if isinstance(con, Location):
        verb = "prefers" if con.score >= 0 else "avoids"
        return ["constraint", "location", con.rsc, verb, f"{con.node}={score_text(abs(con.score))}"]
    # Not `pcs resource ban`: that writes a cli-ban constraint meant to be
    # cleared again, where the spec means a permanent location rule.
    return ["constraint", "location", con.rsc, "avoids", f"{con.node}=INFINITY"]


def describe_constraint(con: Constraint) -> str:
    if isinstance(con, Colocation):
        verb = "apart from" if con.score < 0 else "with"
        return f"colocation of {con.rsc} {verb} {con.with_rsc} ({score_text(con.score)})"
    if isinstance(con, Order):
        return f"order {con.first} then {con.then} ({con.kind})"
    if isinstance(con, Location):
        return f"location of {con.rsc} on {con.node} ({score_text(con.score)})"
    assert isinstance(con, Ban)
    return f"ban of {con.rsc} from {con.node}"


def _pairs(params: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{name}={value}" for name, value in params]


# ------------------------------------------------------------ batched pcs runs

# The guest side: copied to the node and run with its own python3 (it imports
# pcs, which only the node has).
BATCH_SCRIPT = Path(__file__).with_name("pcs_batch_guest.py")
BATCH_PATH_ON_NODE = "/var/tmp/dcnlab-pcs-batch.py"
BATCH_MARK = "@@dcnlab-pcs "
# Seconds (under KVM) for the batch's single start of Python and pcs.
BATCH_STARTUP = 30.0


def batch_input(steps: Sequence[Step]) -> str:
    """The batch script's stdin: one JSON argv per step, without ``pcs``."""
    lines = []
    for step in steps:
        if step.argv[:1] != ("pcs",) or step.stdin is not None:
            raise ValueError(f"step '{step.description}' cannot be batched: {step.command()}")
        lines.append(json.dumps(list(step.argv[1:])))
    return "\n".join(lines) + "\n"


def batch_timeout(steps: Sequence[Step]) -> float:
    """Seconds under KVM for the whole batch: one start-up plus every step's."""
    return BATCH_STARTUP + sum(s.timeout for s in steps)


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    exit_code: int | None  # None: the step began but never ended (killed, timed out)
    seconds: float | None
    output: str


@dataclass(frozen=True)
class BatchOutcome:
    outcomes: tuple[StepOutcome, ...]  # the steps that began, in order
    preamble: str  # anything printed before the first step (an import error, say)

    @property
    def failed(self) -> StepOutcome | None:
        for outcome in self.outcomes:
            if outcome.exit_code != 0:
                return outcome
        return None

    def not_started(self, steps: Sequence[Step]) -> list[Step]:
        return list(steps[len(self.outcomes) :])


def parse_batch(output: str, steps: Sequence[Step]) -> BatchOutcome:
    """Split the batch script's stdout into each step's outcome and output."""
    preamble: list[str] = []
    current: list[str] | None = None
    begun: dict[int, list[str]] = {}
    ended: dict[int, tuple[int, float]] = {}
    for line in output.splitlines():
        if line.startswith(BATCH_MARK):
            try:
                record = json.loads(line[len(BATCH_MARK) :])
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("begin"), int):
                current = begun.setdefault(record["begin"], [])
                continue
            if isinstance(record, dict) and isinstance(record.get("end"), int):
                ended[record["end"]] = (int(record.get("exit", 1)), float(record.get("seconds", 0.0)))
                current = None
                continue
        (current if current is not None else preamble).append(line)
    outcomes = []
    for index in sorted(begun):
        if index >= len(steps):
            raise ValueError(f"pcs batch output names step {index} of {len(steps)}")
        code, seconds = ended.get(index, (None, None))
        outcomes.append(StepOutcome(steps[index], code, seconds, "\n".join(begun[index])))
    return BatchOutcome(tuple(outcomes), "\n".join(preamble))
