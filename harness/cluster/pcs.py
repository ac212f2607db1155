"""The pcs commands that build a spec's cluster, as argument lists.

Targets pcs 0.11 (Debian bookworm's 0.11.5, RHEL 9's 0.11.x). Nothing here runs
anything: :func:`bootstrap_plan` returns an ordered :class:`Plan` of
:class:`Step` s, each an argv for one node plus a description for progress
lines and Allure steps. Every value is one argv element, so nothing is ever
parsed by a shell (``Node.run`` quotes a list with ``shlex.join``).

The plan, and why it is shaped this way:

1. ``pcs host auth`` once, on the first node. ``pcs cluster setup`` then hands
   the tokens to every node itself (pcs lib/commands/cluster/setup.py,
   ``UpdateKnownHosts``). The password goes on **stdin**, not ``-p``: an argv
   ends up in ``ps`` on the node and in every ``CommandError`` and log line the
   harness writes. pcs reads it from stdin when stdin is not a TTY
   (pcs/utils.py ``get_terminal_password``: ``isatty()`` false -> ``input()``).
2. ``pcs cluster setup NAME dcn1 addr=.. addr=.. ... transport knet [link ..]
   [totem ..] --start --wait=N``: one ``addr=`` per knet link, in link order.
3. ``pcs cluster cib FILE`` saves the live CIB to a file on that node, then
   every property, default, the fence device, resource and constraint is added
   with ``pcs -f FILE ...``: no pcsd and no CIB round trip per command (each
   pcs command costs 10-20 s under TCG, FACTS.md), and no transient state where
   half the resources run without their constraints.
4. ``pcs cluster cib-push FILE --config --wait=N`` replaces the configuration
   section in one go and waits, through ``crm_resource --wait``, until the
   cluster has settled (no pending actions).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.cluster.spec import (
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
from harness.errors import ConfigError
from harness.spec import AddressPlan, NodePlan

DEFAULT_CIB_FILE = "/var/tmp/dcnlab-bootstrap.cib.xml"
HACLUSTER_USER = "hacluster"
# Seconds a step may take under KVM; the caller scales them by the accelerator
# (x4 under TCG). Measured under TCG: any pcs command 10-20 s, setup+start of 3
# nodes ~150 s (FACTS.md), so these leave room without hiding a hang.
PCS_TIMEOUT = 30.0
AUTH_TIMEOUT = 45.0
SETUP_EXTRA = 60.0  # setup's own --wait comes on top


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
    steps: tuple[Step, ...]
    cib_file: str

    def describe(self) -> list[str]:
        return [f"{s.node}: {s.description}: {s.command()}" for s in self.steps]


def bootstrap_plan(
    spec: ClusterSpec,
    nodes: Sequence[NodePlan],
    addresses: AddressPlan,
    *,
    hacluster_password: str,
    wait_seconds: int = 300,
    cib_file: str = DEFAULT_CIB_FILE,
) -> Plan:
    """The whole bootstrap of ``spec`` on ``nodes`` (run every step on ``nodes[0]``).

    ``addresses`` is the fleet's address plan (gateways, the VIP's /24);
    ``wait_seconds`` bounds both ``--wait`` s, already scaled by the caller.
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
    steps = [
        Step(
            f"authenticate pcsd on {names}",
            first,
            tuple(host_auth_argv(nodes)),
            AUTH_TIMEOUT,
            stdin=hacluster_password + "\n",
        ),
        step(
            f"set up and start cluster {spec.cluster.name} on {names}",
            cluster_setup_argv(spec, nodes, wait_seconds),
            wait_seconds + SETUP_EXTRA,
        ),
        step(f"save the CIB to {cib_file}", ["pcs", "cluster", "cib", cib_file]),
    ]
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
    if spec.fencing.method != "none":
        gateway = str(addresses.network(spec.fencing.network).gateway)
        steps.append(
            offline(f"create fence device {STONITH_ID} ({spec.fencing.method})", stonith_argv(spec, nodes, gateway))
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
    return Plan(tuple(steps), cib_file)


def host_auth_argv(nodes: Sequence[NodePlan]) -> list[str]:
    """``pcs host auth`` for every node at its network-0 address (pcsd, port 2224).

    The password is not in it: feed ``PASSWORD\\n`` on stdin (see the module doc).
    """
    argv = ["pcs", "host", "auth"]
    for node in nodes:
        argv += [node.name, f"addr={node.address(0)}"]
    return [*argv, "-u", HACLUSTER_USER]


def cluster_setup_argv(spec: ClusterSpec, nodes: Sequence[NodePlan], wait_seconds: int) -> list[str]:
    """``pcs cluster setup`` with one ``addr=`` per knet link (pcs 0.11 syntax:
    ``setup NAME (NODE [addr=ADDR]...)... [transport knet [link OPTS]...]
    [totem OPTS] [--start [--wait=N]]``)."""
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
    return [*argv, "--start", f"--wait={wait_seconds}"]


def property_argv(spec: ClusterSpec) -> list[str]:
    return ["property", "set", *_pairs(spec.cluster.properties)]


def host_map(nodes: Sequence[NodePlan]) -> str:
    """``pcmk_host_map``: cluster node name -> libvirt domain name."""
    return ";".join(f"{node.name}:{node.domain}" for node in nodes)


def stonith_argv(spec: ClusterSpec, nodes: Sequence[NodePlan], gateway: str) -> list[str]:
    """``pcs stonith create fence_dcn ...`` (without the ``pcs -f FILE`` prefix).

    fence_virt's parameters (fence-agents agents/virt/client/options.c):
    ``ipaddr`` (set = TCP mode, main.c), ``ipport`` (TCP port; default 1229),
    ``key_file``, ``timeout`` (seconds). ``port`` is the *domain* to fence and
    comes from ``pcmk_host_map``, so it must not be given as a device option.
    fence_virsh (agents/virsh/fence_virsh.py) runs ``virsh`` over ssh as
    ``username`` with ``identity_file``.
    """
    fencing = spec.fencing
    argv = ["stonith", "create", STONITH_ID, fencing.method]
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
