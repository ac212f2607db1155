import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dcnlab.cluster.fencing import fence_virt_argv
from dcnlab.cluster.pcs import (
    BATCH_SCRIPT,
    BATCH_STARTUP,
    BOOT_DC_DEADTIME,
    DEFAULT_CIB_FILE,
    DEFAULT_COROSYNC_FILE,
    SEED_CIB_SH,
    Step,
    batch_input,
    batch_timeout,
    boot_dc_deadtime,
    bootstrap_plan,
    cluster_setup_argv,
    constraint_argv,
    host_auth_argv,
    host_auth_step,
    host_map,
    parse_batch,
    resource_argv,
    stonith_argv,
)
from dcnlab.cluster.spec import DEFAULT_SPEC, Ban, ClusterSpec, Colocation, Location, Order, load_spec, parse_spec
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.libvirt.fence_virtd import fence_virtd_argv, fence_virtd_conf
from dcnlab.fleet.spec import FleetSpec

DEFAULT = DEFAULT_SPEC
PLAN = FleetSpec(name="t1").plan()
NODES = [PLAN.node(i, networks=2) for i in (1, 2, 3)]
PASSWORD = "s3cret pass'word"


def spec_of(text: str) -> ClusterSpec:
    return parse_spec(text, "t.yaml")


def test_default_plan_sets_up_locally_builds_offline_and_pushes_once() -> None:
    plan = bootstrap_plan(load_spec(DEFAULT), NODES, PLAN, wait_seconds=600)
    assert plan.setup.argv[:3] == ("pcs", "cluster", "setup")
    assert plan.setup.argv[-3:] == ("--corosync_conf", DEFAULT_COROSYNC_FILE, "--overwrite")
    assert plan.start == ("systemctl", "start", "corosync", "pacemaker")
    argvs = [list(s.argv) for s in plan.configure]
    assert argvs[0] == ["pcs", "cluster", "cib", DEFAULT_CIB_FILE]
    middle = argvs[1:-1]
    assert middle
    assert all(a[:3] == ["pcs", "-f", DEFAULT_CIB_FILE] for a in middle)
    assert argvs[-1] == ["pcs", "cluster", "cib-push", DEFAULT_CIB_FILE, "--config", "--wait=600"]
    assert {s.node for s in plan.steps} == {"dcn1"} == {plan.first}
    # Everything is created before anything is constrained.
    kinds = [a[3] for a in middle]
    assert kinds == [
        "property",
        "resource",
        "stonith",
        "resource",
        "resource",
        "resource",
        "resource",
        *["constraint"] * 4,
    ]
    assert all(isinstance(x, str) for a in argvs for x in a)
    described = plan.describe()
    assert len(described) == len(plan.steps) + 1
    assert "every node: start the cluster stack: systemctl start corosync pacemaker" in described


def test_no_step_of_the_plan_needs_pcsd() -> None:
    # Networked `pcs cluster setup`, `host auth` and `--all` are what time out
    # against loaded pcsd daemons under TCG: none of them is in the plan.
    plan = bootstrap_plan(load_spec(DEFAULT), NODES, PLAN)
    for argv in [plan.start, *(s.argv for s in plan.steps)]:
        assert "auth" not in argv
        assert "--all" not in argv
        assert "--start" not in argv
    assert all(s.stdin is None for s in plan.steps)


def test_password_only_travels_on_stdin() -> None:
    auth = host_auth_step(NODES, PASSWORD)
    assert auth.stdin == PASSWORD + "\n"
    assert auth.node == "dcn1"
    for text in [repr(auth), auth.command(), auth.description]:
        assert "s3cret" not in text


def test_host_auth() -> None:
    assert host_auth_argv(NODES) == [
        "pcs",
        "host",
        "auth",
        "dcn1",
        "addr=10.77.0.11",
        "dcn2",
        "addr=10.77.0.12",
        "dcn3",
        "addr=10.77.0.13",
        "-u",
        "hacluster",
    ]


def test_cluster_setup_has_one_addr_per_link() -> None:
    assert cluster_setup_argv(load_spec(DEFAULT), NODES, "/tmp/c.conf") == [
        "pcs",
        "cluster",
        "setup",
        "dcn",
        "dcn1",
        "addr=10.77.0.11",
        "addr=10.77.1.11",
        "dcn2",
        "addr=10.77.0.12",
        "addr=10.77.1.12",
        "dcn3",
        "addr=10.77.0.13",
        "addr=10.77.1.13",
        "transport",
        "knet",
        "totem",
        "token=3000",
        "--corosync_conf",
        "/tmp/c.conf",
        "--overwrite",
    ]


def test_cluster_setup_on_chosen_networks_with_link_and_totem_options() -> None:
    spec = spec_of(
        "cluster:\n  name: edge\n  links: [1]\n"
        "  corosync: {token: 1000, consensus: 1500, knet_ping_interval: 200, knet_ping_timeout: 400}\n"
    )
    argv = cluster_setup_argv(spec, NODES[:2], "/tmp/c.conf")
    assert argv == [
        "pcs",
        "cluster",
        "setup",
        "edge",
        "dcn1",
        "addr=10.77.1.11",
        "dcn2",
        "addr=10.77.1.12",
        "transport",
        "knet",
        "link",
        "linknumber=0",
        "ping_interval=200",
        "ping_timeout=400",
        "totem",
        "consensus=1500",
        "token=1000",
        "--corosync_conf",
        "/tmp/c.conf",
        "--overwrite",
    ]


def test_cluster_setup_without_corosync_options() -> None:
    argv = cluster_setup_argv(spec_of(""), NODES, "/tmp/c.conf")
    assert "totem" not in argv
    assert "link" not in argv
    assert argv[-4:] == ["knet", "--corosync_conf", "/tmp/c.conf", "--overwrite"]


def test_fence_virt_device() -> None:
    spec = load_spec(DEFAULT)
    assert stonith_argv(spec, NODES, "10.77.0.1") == [
        "stonith",
        "create",
        "fence_dcn",
        "fence_virt",
        "ipaddr=10.77.0.1",
        "ipport=1229",
        "key_file=/etc/cluster/fence_xvm.key",
        "timeout=30",
        "pcmk_host_map=dcn1:dcnlab-t1-dcn1;dcn2:dcnlab-t1-dcn2;dcn3:dcnlab-t1-dcn3",
        "pcmk_reboot_action=off",
    ]
    # `port` is the domain, filled in from the host map: never a device option.
    assert not any(a.startswith("port=") for a in stonith_argv(spec, NODES, "10.77.0.1"))


def test_fence_virsh_device_with_extra_params() -> None:
    spec = spec_of(
        "fencing:\n  method: fence_virsh\n  action: reboot\n  timeout: 20\n  network: 1\n"
        "  identity_file: /root/.ssh/k\n  params: {pcmk_delay_max: 5s}\n"
    )
    bootstrap_plan(spec, NODES, PLAN)  # network 1 exists
    assert stonith_argv(spec, NODES, "10.77.1.1") == [
        "stonith",
        "create",
        "fence_dcn",
        "fence_virsh",
        "ip=10.77.1.1",
        "username=root",
        "identity_file=/root/.ssh/k",
        "power_timeout=20",
        f"pcmk_host_map={host_map(NODES)}",
        "pcmk_reboot_action=reboot",
        "pcmk_delay_max=5s",
    ]


def test_fence_device_uses_the_gateway_of_the_fencing_network() -> None:
    spec = spec_of("fencing: {network: 1}")
    plan = bootstrap_plan(spec, NODES, PLAN)
    (fence,) = [s for s in plan.steps if "stonith" in s.argv]
    assert "ipaddr=10.77.1.1" in fence.argv


def test_no_fencing_means_no_device() -> None:
    spec = spec_of("cluster: {properties: {stonith-enabled: false}}\nfencing: {method: none}")
    plan = bootstrap_plan(spec, NODES, PLAN)
    assert not any("stonith" in s.argv for s in plan.steps)
    assert ["pcs", "-f", DEFAULT_CIB_FILE, "property", "set", "stonith-enabled=false"] in [
        list(s.argv) for s in plan.steps
    ]


def test_resources() -> None:
    spec = load_spec(DEFAULT)
    web = spec.group("web")
    vip, http, app, witness = (spec.resource(x) for x in ("vip", "http", "app", "witness"))
    assert vip is not None
    assert http is not None
    assert app is not None
    assert witness is not None
    assert resource_argv(vip, web, PLAN, spec) == [
        "resource",
        "create",
        "vip",
        "ocf:heartbeat:IPaddr2",
        "ip=10.77.0.100",
        "cidr_netmask=24",
        "nic=eth0",
        "op",
        "monitor",
        "interval=10s",
        "timeout=60s",
        "start",
        "timeout=60s",
        "stop",
        "timeout=60s",
        "--group",
        "web",
    ]
    assert resource_argv(http, web, PLAN, spec) == [
        "resource",
        "create",
        "http",
        "systemd:dcn-http",
        "op",
        "monitor",
        "interval=5s",
        "timeout=60s",
        "start",
        "timeout=120s",
        "stop",
        "timeout=120s",
        "--group",
        "web",
    ]
    assert resource_argv(app, None, PLAN, spec) == [
        "resource",
        "create",
        "app",
        "ocf:heartbeat:podman",
        "image=localhost/dcn-http:latest",
        "run_opts=--network host --env DCN_HTTP_PORT=8081",
        "allow_pull=false",
        "op",
        "monitor",
        "interval=10s",
        "timeout=90s",
        "start",
        "timeout=240s",
        "stop",
        "timeout=180s",
        "meta",
        "migration-threshold=1",
        "failure-timeout=60s",
    ]
    assert resource_argv(witness, None, PLAN, spec)[:4] == ["resource", "create", "witness", "ocf:pacemaker:Dummy"]


def test_vip_on_another_network_with_explicit_address_and_several_ops() -> None:
    spec = spec_of(
        "workloads:\n  - id: v\n    type: ipaddr2\n    network: 1\n    address: 10.77.1.50\n    cidr_netmask: 24\n"
        "    ops:\n      monitor: {interval: 10s, on-fail: restart}\n      start: {timeout: 40s}\n"
    )
    rsc = spec.resource("v")
    assert rsc is not None
    assert resource_argv(rsc, None, PLAN, spec)[4:] == [
        "ip=10.77.1.50",
        "cidr_netmask=24",
        "nic=eth1",
        "op",
        "monitor",
        "interval=10s",
        "on-fail=restart",
        "start",
        "timeout=40s",
    ]


def test_no_monitor_removes_the_one_pcs_adds() -> None:
    spec = spec_of("workloads:\n  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy', ops: {monitor: null}}\n")
    steps = [list(s.argv)[3:] for s in bootstrap_plan(spec, NODES, PLAN).configure]
    create = steps.index(["resource", "create", "d", "ocf:pacemaker:Dummy"])
    assert steps[create + 1] == ["resource", "op", "delete", "d", "monitor"]


def test_defaults_and_group_meta() -> None:
    spec = spec_of(
        "cluster:\n  resource_defaults: {resource-stickiness: INFINITY}\n  op_defaults: {timeout: 1min}\n"
        "workloads:\n  - {id: g, group: [a], meta: {target-role: Stopped}}\n  - {id: a, type: ipaddr2}\n"
    )
    steps = [list(s.argv)[3:] for s in bootstrap_plan(spec, NODES, PLAN).configure]
    assert ["resource", "defaults", "update", "resource-stickiness=INFINITY"] in steps
    assert ["resource", "op", "defaults", "update", "timeout=60s"] in steps
    assert ["resource", "meta", "g", "target-role=Stopped"] in steps


@pytest.mark.parametrize(
    ("con", "argv"),
    [
        (Colocation("app", "web"), ["constraint", "colocation", "add", "app", "with", "web", "INFINITY"]),
        (Colocation("w", "web", -1_000_000), ["constraint", "colocation", "add", "w", "with", "web", "-INFINITY"]),
        (
            Order("web", "app", "Optional"),
            ["constraint", "order", "start", "web", "then", "start", "app", "kind=Optional"],
        ),
        (Location("web", "dcn1", 50), ["constraint", "location", "web", "prefers", "dcn1=50"]),
        (Location("web", "dcn2", -20), ["constraint", "location", "web", "avoids", "dcn2=20"]),
        (Ban("d", "dcn3"), ["constraint", "location", "d", "avoids", "dcn3=INFINITY"]),
    ],
)
def test_constraints(con: Colocation | Order | Location | Ban, argv: list[str]) -> None:
    assert constraint_argv(con) == argv


def test_every_value_survives_the_shell_quoting_node_run_applies() -> None:
    spec = spec_of(
        "workloads:\n  - id: app\n    type: podman\n    image: 'img:1'\n"
        "    run_opts: \"--env A='x y' --env B=$HOME;rm -rf /\"\n"
    )
    for step in bootstrap_plan(spec, NODES, PLAN).steps:
        assert shlex.split(step.command()) == list(step.argv)


def test_plan_refuses_a_spec_the_fleet_cannot_hold() -> None:
    spec = load_spec(DEFAULT)
    one_network = [PLAN.node(i, networks=1) for i in (1, 2, 3)]
    with pytest.raises(ConfigError, match="knet link on network 1"):
        bootstrap_plan(spec, one_network, PLAN)
    with pytest.raises(ConfigError, match="at least one node"):
        bootstrap_plan(spec, [], PLAN)


def test_steps_carry_timeouts_that_cover_their_waits() -> None:
    plan = bootstrap_plan(load_spec(DEFAULT), NODES, PLAN, wait_seconds=500)
    push = plan.steps[-1]
    assert push.timeout > 500
    assert all(s.timeout > 0 for s in plan.steps)


# ------------------------------------------------- the hypervisor side of it


def test_fence_virtd_conf_for_a_tcp_listener() -> None:
    text = fence_virtd_conf(
        address="10.77.0.1",
        port=1229,
        key_file="/run/dcnlab/t1/fence_xvm.key",
        libvirt_uri="qemu:///system?socket=/run/dcnlab/t1/hv/run/libvirt-sock",
    )
    assert text == (
        "fence_virtd {\n"
        '\tlistener = "tcp";\n'
        '\tbackend = "libvirt";\n'
        "}\n\n"
        "listeners {\n"
        "\ttcp {\n"
        '\t\taddress = "10.77.0.1";\n'
        '\t\tport = "1229";\n'
        '\t\tfamily = "ipv4";\n'
        '\t\tkey_file = "/run/dcnlab/t1/fence_xvm.key";\n'
        "\t}\n"
        "}\n\n"
        "backends {\n"
        "\tlibvirt {\n"
        '\t\turi = "qemu:///system?socket=/run/dcnlab/t1/hv/run/libvirt-sock";\n'
        "\t}\n"
        "}\n"
    )


def test_fence_virtd_conf_refuses_what_it_cannot_quote() -> None:
    with pytest.raises(ConfigError, match="key_file"):
        fence_virtd_conf(address="10.77.0.1", port=1229, key_file='/x/"k', libvirt_uri="qemu:///system")


def test_fence_virtd_runs_in_the_foreground_with_its_own_pid_file() -> None:
    assert fence_virtd_argv("/r/fv.conf", "/r/fv.pid") == [
        "fence_virtd",
        "-F",
        "-w",
        "-f",
        "/r/fv.conf",
        "-p",
        "/r/fv.pid",
    ]
    assert fence_virtd_argv("/r/fv.conf", "/r/fv.pid", debug=2)[-2:] == ["-d", "2"]


def test_fence_virt_check_from_a_node() -> None:
    spec = load_spec(DEFAULT)
    assert fence_virt_argv(spec, "10.77.0.1") == [
        "fence_virt",
        "-T",
        "10.77.0.1",
        "-p",
        "1229",
        "-k",
        "/etc/cluster/fence_xvm.key",
        "-t",
        "30",
        "-o",
        "list",
    ]
    assert fence_virt_argv(spec, "10.77.0.1", "status", "dcnlab-t1-dcn2")[-4:] == [
        "-o",
        "status",
        "-H",
        "dcnlab-t1-dcn2",
    ]
    with pytest.raises(ConfigError, match="needs a domain"):
        fence_virt_argv(spec, "10.77.0.1", "off")


# ------------------------------------------------------------ batched pcs runs


def _steps(*argvs: list[str]) -> list[Step]:
    return [Step(f"step {i}", "dcn1", ("pcs", *argv), 10.0) for i, argv in enumerate(argvs)]


def test_batch_input_is_one_json_argv_per_step_without_pcs() -> None:
    steps = _steps(["-f", "/x", "property", "set", "a=b c"], ["cluster", "cib-push", "/x"])
    lines = batch_input(steps).splitlines()
    assert [json.loads(line) for line in lines] == [
        ["-f", "/x", "property", "set", "a=b c"],
        ["cluster", "cib-push", "/x"],
    ]
    assert batch_timeout(steps) == BATCH_STARTUP + 20.0


def test_batch_refuses_secrets_and_non_pcs_steps() -> None:
    with pytest.raises(ValueError, match="cannot be batched"):
        batch_input([host_auth_step(NODES, PASSWORD)])
    with pytest.raises(ValueError, match="cannot be batched"):
        batch_input([Step("x", "dcn1", ("crm_mon",), 1.0)])


def _fake_pcs(tmp_path: Path) -> Path:
    """A stand-in for the node's pcs package, to exercise the batch script's
    own logic (fork per command, markers, stop at the first failure) here."""
    pkg = tmp_path / "pcs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(
        "import os, sys\n"
        "IMPORTS = os.environ['IMPORT_LOG']\n"
        "open(IMPORTS, 'a').write('imported\\n')\n"
        "STATE = []\n"
        "def main(argv):\n"
        "    STATE.append(argv)  # must not leak into the next command (fork)\n"
        "    print('out', argv, len(STATE))\n"
        "    print('err', argv, file=sys.stderr)\n"
        "    if argv[0] == 'fail': sys.exit(3)\n"
        "    if argv[0] == 'boom': raise RuntimeError('bug')\n"
    )
    return tmp_path


def _run_batch_script(tmp_path: Path, steps: list[Step]) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = _fake_pcs(tmp_path)
    log = tmp_path / "imports.log"
    env = {**os.environ, "PYTHONPATH": str(root), "IMPORT_LOG": str(log)}
    res = subprocess.run(
        [sys.executable, str(BATCH_SCRIPT)],
        input=batch_input(steps),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return res, log


def test_batch_script_runs_every_command_after_one_import(tmp_path: Path) -> None:
    steps = _steps(["one"], ["two"], ["three"])
    res, log = _run_batch_script(tmp_path, steps)
    assert res.returncode == 0, res.stdout + res.stderr
    assert log.read_text() == "imported\n"
    outcome = parse_batch(res.stdout, steps)
    assert outcome.failed is None
    assert [o.exit_code for o in outcome.outcomes] == [0, 0, 0]
    assert all(o.seconds is not None and o.seconds >= 0 for o in outcome.outcomes)
    # Each command sees a fresh pcs (forked), and its stderr in order with stdout.
    assert outcome.outcomes[1].output.splitlines() == ["out ['two'] 1", "err ['two']"]


@pytest.mark.parametrize(("bad", "code", "text"), [("fail", 3, "err ['fail']"), ("boom", 1, "RuntimeError: bug")])
def test_batch_script_stops_at_the_first_failure(tmp_path: Path, bad: str, code: int, text: str) -> None:
    steps = _steps(["one"], [bad], ["never"])
    res, _ = _run_batch_script(tmp_path, steps)
    assert res.returncode == 1
    outcome = parse_batch(res.stdout, steps)
    failed = outcome.failed
    assert failed is not None
    assert failed.step is steps[1]
    assert failed.exit_code == code
    assert text in failed.output
    assert outcome.not_started(steps) == [steps[2]]


def test_parse_batch_of_a_step_that_never_ended() -> None:
    steps = _steps(["one"], ["hangs"])
    out = (
        'Traceback? no\n@@dcnlab-pcs {"begin": 0}\nfine\n@@dcnlab-pcs {"end": 0, "exit": 0, "seconds": 1.5}\n'
        '@@dcnlab-pcs {"begin": 1}\nwaiting...\n'
    )
    outcome = parse_batch(out, steps)
    assert outcome.preamble == "Traceback? no"
    failed = outcome.failed
    assert failed is not None
    assert failed.step is steps[1]
    assert failed.exit_code is None
    assert failed.output == "waiting..."
    assert outcome.outcomes[0].seconds == 1.5


def test_the_cold_start_deadtime_is_the_harness_s_unless_the_spec_sets_one() -> None:
    assert boot_dc_deadtime(load_spec(DEFAULT)) == (BOOT_DC_DEADTIME, True)
    mine = spec_of(
        DEFAULT.read_text().replace("    stonith-enabled: true\n", "    stonith-enabled: true\n    dc-deadtime: 45s\n")
    )
    assert boot_dc_deadtime(mine) == ("45s", False)


def _seed(tmp_path: Path, *, existing: bool) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """SEED_CIB_SH with stand-ins for cibadmin, crm_attribute and install
    that log their arguments (and what CIB_file crm_attribute was given)."""
    bin_dir, log, cib = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "cib.xml"
    bin_dir.mkdir()
    stubs = {
        "cibadmin": 'echo "cibadmin $*" >> "$LOG"; echo "<cib/>"',
        "crm_attribute": 'echo "crm_attribute CIB_file=${CIB_file:+set} $*" >> "$LOG"',
        "install": 'echo "install $*" >> "$LOG"; cp "$7" "$8"',  # install -o U -g G -m MODE SRC DST
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    if existing:
        cib.write_text("<cib epoch='7'/>")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "CIB": str(cib)}
    done = subprocess.run(
        ["sh", "-c", SEED_CIB_SH, "seed-cib", "2s"], env=env, capture_output=True, text=True, check=False
    )
    return done, (log.read_text().splitlines() if log.exists() else [])


def test_a_fresh_node_gets_a_seeded_cib(tmp_path: Path) -> None:
    done, calls = _seed(tmp_path, existing=False)
    assert done.returncode == 0, done.stderr
    assert calls[0] == "cibadmin --empty"
    assert calls[1] == "crm_attribute CIB_file=set --type crm_config --name dc-deadtime --update 2s"
    assert calls[2].startswith("install -o hacluster -g haclient -m 0600 ")
    assert calls[2].endswith(str(tmp_path / "cib.xml"))
    assert (tmp_path / "cib.xml").read_text() == "<cib/>\n"


def test_a_node_with_a_cib_keeps_it(tmp_path: Path) -> None:
    done, calls = _seed(tmp_path, existing=True)
    assert done.returncode == 0, done.stderr
    assert calls == []
    assert (tmp_path / "cib.xml").read_text() == "<cib epoch='7'/>"
