"""The ``dcnlab`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dcnlab.core.argtypes import bounded_int, checked
from dcnlab.core.errors import ConfigError, DcnlabError
from dcnlab.fleet.spec import FleetSpec, check_fleet_name
from dcnlab.image.firmware import FIRMWARE_CHOICES
from dcnlab.image.identity import IDENTITY_CHOICES

_T0 = time.monotonic()


def progress(line: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {line}", file=sys.stderr, flush=True)


positive_int = bounded_int(1)
fleet_name = checked(check_fleet_name)


def resolve_image(image: str | None, recipe: str | None) -> object:
    """A user image path, or the cached (built on first use) image of a recipe."""
    from dcnlab.image.builder import build_image, image_from_path

    if image is not None and recipe is not None:
        raise ConfigError("give either --image PATH or --recipe NAME, not both")
    if image is not None:
        return image_from_path(Path(image))
    return build_image(recipe or "dcn-debian", progress=progress)


def cmd_fleet_up(args: argparse.Namespace) -> int:
    from dcnlab.fleet.fleet import Fleet, check_placement

    spec = FleetSpec(
        name=args.name,
        nodes=args.nodes,
        networks=args.networks,
        vcpus=args.vcpus,
        memory_mib=args.memory,
        boot_timeout=args.boot_timeout,
        firmware=args.firmware,
        identity=args.identity,
        login_user=args.login_user,
        login_key=args.login_key,
    )
    check_placement(args.libvirt_uri, args.netns, args.lab_hosts)  # before an image build of minutes
    image = resolve_image(args.image, args.recipe)
    fleet = Fleet.up(
        spec,
        image,  # type: ignore[arg-type]
        libvirt_uri=args.libvirt_uri,
        netns=args.netns,
        accel=args.accel,
        persistent=True,
        progress=progress,
        lab_hosts=args.lab_hosts,
    )
    progress(f"fleet {fleet.name} is up in {fleet.timings['total']:.1f}s; reach it with:")
    for node in fleet.nodes.values():
        on = f" on host {fleet.host_of(node.name)}" if fleet.lab is not None else ""
        print(f"  dcnlab fleet ssh --name {fleet.name} {node.name}      # {', '.join(node.addresses)}{on}")
    print(f"  ssh -F {fleet.access.ssh_config} dcn1")
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from dcnlab.fleet.fleet import Fleet

    status = Fleet.attach(args.name, progress).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"fleet {status['name']}  run {status['run_id']}  {status['accelerator']}  {status['uri']}")
    for host in status["hosts"]:
        print(f"  host {host['name']}: {host['uri']} (namespace {host['netns']}, underlay {host['underlay']})")
    for net in status["networks"]:
        print(f"  network {net['index']}: {net['name']} {net['cidr']} bridge {net['bridge']}")
    for node in status["nodes"]:
        on = f"  on {node['host']}" if node["host"] else ""
        print(f"  {node['name']:8} {node['state']:10} {'  '.join(node['addresses'])}{on}")
    return 0


def cmd_fleet_ssh(args: argparse.Namespace) -> int:
    from dcnlab.fleet.fleet import Fleet

    fleet = Fleet.attach(args.name, progress)
    node = fleet.node(args.node)
    if not 0 <= args.network < fleet.spec.networks:
        raise ConfigError(f"--network {args.network}: fleet {fleet.name} has networks 0..{fleet.spec.networks - 1}")
    alias = node.name if args.network == 0 else f"{node.name}-n{args.network}"
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    argv = ["ssh", "-F", str(fleet.access.ssh_config), *([] if command else ["-t"]), alias, *command]
    # OpenSSH, not the library: a user may want an interactive shell here.
    return subprocess.call(argv)


def cmd_fleet_add(args: argparse.Namespace) -> int:
    from dcnlab.fleet.fleet import Fleet

    fleet = Fleet.attach(args.name, progress)
    node = fleet.add_node()
    print(node.name)
    return 0


def cmd_fleet_remove(args: argparse.Namespace) -> int:
    from dcnlab.fleet.fleet import Fleet

    Fleet.attach(args.name, progress).remove_node(args.node)
    return 0


def cmd_fleet_down(args: argparse.Namespace) -> int:
    from dcnlab.core.owner import RunRecord
    from dcnlab.fleet.fleet import _teardown, run_dir_of

    run_dir = run_dir_of(args.name)
    if not (run_dir / RunRecord.FILE).exists():
        raise ConfigError(f"no fleet named {args.name!r}; `dcnlab fleet list` shows the fleets there are")
    # Down works on a broken fleet too (hypervisor killed): no attach needed.
    _teardown(RunRecord.load(run_dir), run_dir, None, progress)
    return 0


def cmd_fleet_list(args: argparse.Namespace) -> int:
    from dcnlab.core import paths
    from dcnlab.core.owner import RunRecord

    runs = paths.runs_dir()
    for run_dir in sorted(runs.iterdir()) if runs.exists() else []:
        try:
            rec = RunRecord.load(run_dir)
        except (OSError, ValueError, TypeError):
            print(f"{run_dir.name:20} (unreadable: `dcnlab gc` removes it)")
            continue
        owner = (
            "kept"
            if rec.persistent
            else ("abandoned" if rec.abandoned() else f"pid {rec.owner.pid if rec.owner else '?'}")
        )
        print(f"{rec.name:20} {len(rec.nodes)} node(s)  {owner:10}  {rec.uri}")
    return 0


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from dcnlab.cluster.bootstrap import Cluster
    from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
    from dcnlab.fleet.fleet import Fleet

    spec = load_spec(Path(args.spec) if args.spec else DEFAULT_SPEC)
    fleet = Fleet.attach(args.name, progress)
    cluster = Cluster.up(fleet, spec, progress)
    cluster.remember()
    progress(f"cluster {spec.cluster.name} on fleet {fleet.name} converged in {cluster.timings['converged']:.0f}s")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from dcnlab.cluster.bootstrap import Cluster
    from dcnlab.fleet.fleet import Fleet

    cluster = Cluster.attach(Fleet.attach(args.name, progress), progress)
    state = cluster.state()
    if args.json:
        print(json.dumps(state.summary(), indent=2))
        return 0
    print(f"cluster {cluster.spec.cluster.name}: DC {state.dc or '-'}, {'quorate' if state.quorate else 'NOT quorate'}")
    for node in state.nodes:
        flags = [f for f, on in (("online", node.online), ("unclean", node.unclean), ("standby", node.standby)) if on]
        print(f"  {node.name:8} {' '.join(flags) or 'offline'}")
    for rsc in state.resources:
        print(f"  {rsc.id:12} {rsc.role:10} {' '.join(rsc.nodes)}")
    for fail in state.failures:
        print(f"  failed: {fail.resource} {fail.task} on {fail.node}: {fail.exitreason or fail.exitstatus}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from dcnlab.fleet.gc import collect

    report = collect(dry_run=args.dry_run, progress=progress)
    verb = "would remove" if args.dry_run else "removed"
    for item in report.removed:
        print(f"{verb}: {item}")
    for item in report.kept:
        print(f"kept: {item}")
    for item in report.errors:
        print(f"error: {item}", file=sys.stderr)
    if not report.removed:
        print("nothing to collect")
    return 1 if report.errors else 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from dcnlab.image.builder import build_image

    image = build_image(args.recipe, progress=progress, force=args.force)
    print(image.disk)
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
    from dcnlab.image.builder import list_images

    images = list_images()
    for image in images:
        print(f"{image.recipe:16} {image.digest}  {image.disk}")
    if not images:
        print("no images cached; `dcnlab image build` makes the default one")
    return 0


def cmd_ready_list(args: argparse.Namespace) -> int:
    from dcnlab.ready import store as readystate

    found = readystate.entries()
    for state in found:
        size = sum(f.stat().st_size for f in state.path.iterdir() if f.is_file())
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.saved_at))
        key = state.key
        print(
            f"{state.path.name}  {len(state.nodes)} nodes  {size / 2**30:.1f} GiB  saved {saved} by {state.saved_by}  "
            f"image {key.get('image')}  spec {key.get('cluster_spec')}  {key.get('domain_type')}"
        )
    if not found:
        print(f"no cached cluster-ready states in {readystate.ready_dir()}")
    return 0


def cmd_ready_clear(args: argparse.Namespace) -> int:
    from dcnlab.ready import store as readystate

    found = readystate.entries()
    for state in found:
        readystate.remove(state.path)
        print(f"removed {state.path}")
    readystate.evict()  # and leftovers of saves that never finished
    readystate.clear_locks()
    if not found:
        print(f"no cached cluster-ready states in {readystate.ready_dir()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dcnlab.report.timing import compare, load_report

    a, b = load_report(Path(args.a)), load_report(Path(args.b))
    print(compare(a, b, names=(args.a, args.b)), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dcnlab.report.allure_report import build_report, how_to_view

    index = build_report(Path(args.results), Path(args.out), progress=progress)
    print(how_to_view(index.parent))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dcnlab", description="Certify self-healing clusters of virtual DCNs.")
    sub = ap.add_subparsers(dest="topic", required=True)

    fleet = sub.add_parser("fleet", help="boot, inspect and remove fleets of virtual DCNs")
    fsub = fleet.add_subparsers(dest="action", required=True)

    def add(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Callable[..., int], help: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    up = add(fsub, "up", cmd_fleet_up, "boot a fleet and leave it running (returns when every node answers SSH)")
    up.add_argument("--name", required=True, type=fleet_name)
    up.add_argument("--nodes", type=positive_int, default=3)
    up.add_argument("--networks", type=positive_int, default=2)
    up.add_argument("--vcpus", type=positive_int, default=1)
    up.add_argument("--memory", type=positive_int, default=1024, help="MiB per node (default 1024)")
    up.add_argument("--image", help="a qcow2/raw disk image (default: the dcn-debian recipe, built on first use)")
    up.add_argument("--recipe", help="an image recipe name from dcnlab/image/recipes/")
    up.add_argument("--libvirt-uri", help="use this hypervisor instead of the embedded one")
    up.add_argument("--netns", help="with --libvirt-uri: the namespace its bridges live in")
    up.add_argument(
        "--lab-hosts",
        type=bounded_int(1, 8),
        default=1,
        help="spread the nodes over N embedded hypervisors, each a host of a local lab (default 1; docs/multihost.md)",
    )
    up.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    up.add_argument(
        "--boot-timeout",
        type=float,
        metavar="SECONDS",
        help="how long a node may take to answer SSH (default: 60 s under KVM, x4 under TCG, more on a busy host)",
    )
    up.add_argument(
        "--firmware",
        choices=FIRMWARE_CHOICES,
        default="auto",
        help="firmware of an image that boots its own boot loader: auto (from its partition table), bios or uefi",
    )
    up.add_argument(
        "--identity",
        choices=IDENTITY_CHOICES,
        default="auto",
        help="identity channel of an image that boots its own boot loader: auto (what the image says it reads, "
        "else every channel), cloud-init or smbios",
    )
    up.add_argument(
        "--login-user",
        default="root",
        metavar="USER",
        help="log in as USER (baked into the image with a key) and run as root through sudo -n",
    )
    up.add_argument("--login-key", default=None, metavar="PATH", help="the private key USER accepts")

    st = add(fsub, "status", cmd_fleet_status, "show a fleet's nodes, states and addresses")
    st.add_argument("--name", required=True, type=fleet_name)
    st.add_argument("--json", action="store_true")

    ssh = add(fsub, "ssh", cmd_fleet_ssh, "run a command on a node (or open a shell) through the fleet's namespace")
    ssh.add_argument("--name", required=True, type=fleet_name)
    ssh.add_argument("--network", type=int, default=0, help="reach the node over this network (default 0)")
    ssh.add_argument("node")
    ssh.add_argument("command", nargs=argparse.REMAINDER)

    an = add(fsub, "add-node", cmd_fleet_add, "boot one more node into a running fleet")
    an.add_argument("--name", required=True, type=fleet_name)
    rn = add(fsub, "remove-node", cmd_fleet_remove, "power off and delete one node of a running fleet")
    rn.add_argument("--name", required=True, type=fleet_name)
    rn.add_argument("node")

    dn = add(fsub, "down", cmd_fleet_down, "remove a fleet: domains, networks, disks, namespace, processes")
    dn.add_argument("--name", required=True, type=fleet_name)
    add(fsub, "list", cmd_fleet_list, "list the fleets on this machine")

    cluster = sub.add_parser("cluster", help="build and inspect the Pacemaker cluster on a fleet")
    csub = cluster.add_subparsers(dest="action", required=True)
    cu = add(csub, "up", cmd_cluster_up, "build a cluster spec on a running fleet and wait until it converges")
    cu.add_argument("--name", required=True, type=fleet_name)
    cu.add_argument("--spec", help="cluster spec YAML (default: the shipped default spec)")
    cs = add(csub, "status", cmd_cluster_status, "show nodes and resources as crm_mon sees them")
    cs.add_argument("--name", required=True, type=fleet_name)
    cs.add_argument("--json", action="store_true")

    gc = add(sub, "gc", cmd_gc, "remove what killed runs left behind (and nothing else)")
    gc.add_argument("--dry-run", action="store_true")

    image = sub.add_parser("image", help="build and list DCN images")
    isub = image.add_subparsers(dest="action", required=True)
    ib = add(isub, "build", cmd_image_build, "build (or reuse from the cache) an image; prints its path")
    ib.add_argument("--recipe", default="dcn-debian")
    ib.add_argument("--force", action="store_true", help="rebuild even if cached")
    add(isub, "list", cmd_image_list, "list cached images")

    rdy = sub.add_parser("ready", help="the cached cluster-ready states (restored instead of rebuilt)")
    rsub = rdy.add_subparsers(dest="action", required=True)
    add(rsub, "list", cmd_ready_list, "list the cached cluster-ready states")
    add(rsub, "clear", cmd_ready_clear, "remove every cached cluster-ready state (the next session builds its cluster)")

    cmp_ = add(sub, "compare", cmd_compare, "per-fault timing deltas between two runs' timing-report.json")
    cmp_.add_argument("a", metavar="RUN_A.json")
    cmp_.add_argument("b", metavar="RUN_B.json")

    rep = add(sub, "report", cmd_report, "build the Allure HTML report of a pytest --alluredir (opens nothing)")
    rep.add_argument("--results", required=True, metavar="DIR", help="the directory given to pytest --alluredir")
    rep.add_argument("--out", default="dcnlab-report/html", metavar="DIR", help="(default: dcnlab-report/html)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except DcnlabError as err:
        print(f"dcnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dcnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
