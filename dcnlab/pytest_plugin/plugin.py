"""pytest glue for dcnlab: options, and fixtures that adapt the library.

Registered as the ``dcnlab`` pytest11 entry point, so a separate repository of
suites gets these fixtures by installing dcnlab (``-p no:dcnlab`` turns it off).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from dcnlab.certify import cases
from dcnlab.certify.preflight import PreflightError
from dcnlab.certify.workloads import check_requirements
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, ClusterSpec, load_spec
from dcnlab.cluster.thresholds import Thresholds, parse_overrides
from dcnlab.core.argtypes import bounded_int, checked, existing_file, seconds
from dcnlab.core.errors import ConfigError, DcnlabError
from dcnlab.fleet.accel import detect
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.fleet.spec import (
    MAX_BOOT_TIMEOUT,
    MAX_NETWORKS,
    MAX_NODES,
    FleetSpec,
    check_fleet_name,
)
from dcnlab.image.firmware import FIRMWARE_CHOICES
from dcnlab.image.identity import IDENTITY_CHOICES
from dcnlab.pytest_plugin import allure_glue
from dcnlab.ready import cluster as ready
from dcnlab.ready import store as readystate
from dcnlab.ready.session import CACHE_MODES, SessionCluster, cache_entry
from dcnlab.report.timing import CasePhases, ClusterStart, RunReport

# The fault fixtures, registered with this plugin (one entry point: -p no:dcnlab turns off both).
pytest_plugins = ["dcnlab.pytest_plugin.faults"]


_fleet_name = checked(check_fleet_name)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("dcnlab", "dcnlab fleet of virtual DCNs")
    g.addoption(
        "--dcn-nodes",
        type=bounded_int(1, MAX_NODES),
        default=None,
        help=f"nodes in the fleet (default: the cluster spec's cluster.nodes, else {DEFAULT_NODES})",
    )
    g.addoption("--dcn-networks", type=bounded_int(1, MAX_NETWORKS), default=2, help="bridged networks (default 2)")
    g.addoption("--dcn-vcpus", type=bounded_int(1, 16), default=1, help="vCPUs per node (default 1)")
    g.addoption("--dcn-memory", type=bounded_int(768, 65536), default=1024, help="MiB per node (default 1024)")
    g.addoption(
        "--dcn-image",
        type=existing_file("image file (build one with `dcnlab image build`)"),
        default=None,
        help="disk image to certify (default: dcn-debian)",
    )
    g.addoption("--dcn-recipe", default="dcn-debian", help="image recipe to build when --dcn-image is not given")
    g.addoption("--dcn-libvirt-uri", default=None, help="use this libvirt instead of the embedded hypervisor")
    g.addoption("--dcn-netns", default=None, help="with --dcn-libvirt-uri: the namespace its bridges live in")
    g.addoption(
        "--dcn-lab-hosts",
        type=bounded_int(1, 8),
        default=1,
        help="spread the fleet over N embedded hypervisors, hosts of a local lab (default 1; docs/multihost.md)",
    )
    g.addoption("--dcn-accel", choices=("auto", "kvm", "tcg"), default="auto", help="accelerator (default auto)")
    g.addoption(
        "--dcn-boot-timeout",
        type=seconds(MAX_BOOT_TIMEOUT),
        metavar="SECONDS",
        default=None,
        help="how long a node may take to answer SSH (default: 60 s under KVM, x4 under TCG, more on a busy host)",
    )
    g.addoption(
        "--dcn-firmware",
        choices=FIRMWARE_CHOICES,
        default="auto",
        help="firmware of an image that boots its own boot loader: auto (from its partition table: BIOS when it "
        "can, else UEFI), bios or uefi (OVMF; the cluster-ready cache is not used then)",
    )
    g.addoption(
        "--dcn-identity",
        choices=IDENTITY_CHOICES,
        default="auto",
        help="how an image that boots its own boot loader learns its hostname, addresses and root's key: auto "
        "(what the image's manifest says it reads, else every channel), cloud-init (a NoCloud seed) or smbios "
        "(systemd credentials); docs/images.md",
    )
    g.addoption(
        "--dcn-login-user",
        default="root",
        metavar="USER",
        help="log in as USER, baked into the image with a key, and run as root through sudo -n (for an image "
        "whose root does not log in over SSH); default: the image's own login user if its manifest names one, "
        "else root with the run's key",
    )
    g.addoption(
        "--dcn-login-key",
        default=None,
        metavar="PATH",
        help="the private key USER of --dcn-login-user accepts (default: the key kept beside a recipe's image)",
    )
    g.addoption("--dcn-name", type=_fleet_name, default=None, help="fleet name (default pt<pid>)")
    g.addoption("--dcn-keep", action="store_true", help="leave the fleet up after the session and say how to reach it")
    g.addoption(
        "--dcn-ready-cache",
        choices=CACHE_MODES,
        default="use",
        help="the cached cluster-ready state: use = restore the session cluster from it when image, spec and "
        "harness are unchanged, else build and cache it; refresh = build and replace it; off = always build, "
        "cache nothing (default use; embedded hypervisor only)",
    )
    g.addoption(
        "--dcn-cluster-spec",
        type=existing_file("cluster spec file"),
        default=None,
        help="cluster spec (YAML) to build on the fleet (default: the shipped default spec)",
    )
    g.addoption(
        "--dcn-threshold",
        action="append",
        default=[],
        metavar="FAULT.TIMING=SECONDS",
        help="override a certification threshold of the spec, e.g. power-off.downtime=60 or "
        "default.detection=10 (timings: detection, fencing, recovery, downtime); repeatable",
    )
    g.addoption(
        "--dcn-repeat",
        type=bounded_int(1, 1000),
        default=1,
        help="run every certification case N times (the timing report gives p50/p95/max and the failure rate)",
    )
    g.addoption(
        "--dcn-report",
        type=Path,
        default=Path("dcnlab-report"),
        help="directory for timing-report.json and timing-report.md (default ./dcnlab-report)",
    )


@dataclass(frozen=True)
class DcnOptions:
    spec: FleetSpec
    image: Path | None
    recipe: str
    libvirt_uri: str | None
    netns: str | None
    accel: str
    keep: bool
    ready_cache: str = "off"  # use, refresh, off (--dcn-ready-cache)
    lab_hosts: int = 1  # --dcn-lab-hosts

    def fleet_up(self, image: Any, progress: Any, **changes: Any) -> Fleet:
        """Boot a fleet from these options; ``changes`` replace fields of the
        fleet spec (``name``, ``nodes``...) for a test that needs its own."""
        return Fleet.up(
            replace(self.spec, **changes),
            image,
            libvirt_uri=self.libvirt_uri,
            netns=self.netns,
            accel=self.accel,
            progress=progress,
            lab_hosts=self.lab_hosts,
        )


DEFAULT_NODES = 3


def fleet_nodes(config: pytest.Config) -> int:
    """The fleet's size: ``--dcn-nodes``, else the spec's ``cluster.nodes``
    (the site's size), else DEFAULT_NODES. Read from the spec file alone
    (not checked against a fleet, which needs this number first)."""
    if config.option.dcn_nodes is not None:
        return int(config.option.dcn_nodes)
    try:
        nodes = load_spec(config.option.dcn_cluster_spec or DEFAULT_SPEC).cluster.nodes
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from err
    return nodes or DEFAULT_NODES


def _cluster_spec(config: pytest.Config) -> ClusterSpec:
    """Load and check the spec against the fleet's shape: a bad spec is a
    usage error before any VM boots, naming the file and line."""
    path = config.option.dcn_cluster_spec or DEFAULT_SPEC
    try:
        spec = load_spec(path)
        fleet = FleetSpec(name="check", nodes=fleet_nodes(config), networks=config.option.dcn_networks)
        spec.check_against(fleet.networks, fleet.nodes, fleet.plan())
        # A requirement the configuration cannot guarantee is the spec's
        # error, refused before any VM boots.
        check_requirements(spec)
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from err
    return spec


_SPEC = pytest.StashKey[ClusterSpec]()


def session_spec(config: pytest.Config) -> ClusterSpec:
    """The session's cluster spec (``--dcn-cluster-spec`` or the default),
    loaded and checked once. Suites read it at collection to generate their
    cases from the user's workloads and constraints, before any VM boots."""
    spec = config.stash.get(_SPEC, None)
    if spec is None:
        spec = config.stash[_SPEC] = _cluster_spec(config)
    return spec


def _threshold_overrides(config: pytest.Config) -> dict[str, Thresholds]:
    try:
        return parse_overrides(config.option.dcn_threshold)
    except ConfigError as err:
        raise pytest.UsageError(f"--dcn-threshold: {err}") from err


def _check_image_options(config: pytest.Config) -> None:
    """A missing, corrupt or foreign ``--dcn-image`` and an unknown
    ``--dcn-recipe`` are usage errors before anything starts, not fixture
    errors once the session runs. The shipped default recipe is left to its
    own unit tests: loading it here would stop every session (unit tests
    included) while someone edits it."""
    opt = config.option
    if opt.dcn_image is None and opt.dcn_recipe == "dcn-debian":
        return
    from dcnlab.image.builder import image_from_path, load_recipe

    option = "--dcn-image" if opt.dcn_image is not None else "--dcn-recipe"
    try:
        if opt.dcn_image is not None:
            image_from_path(opt.dcn_image)
        else:
            load_recipe(opt.dcn_recipe)
    except DcnlabError as err:
        raise pytest.UsageError(f"{option}: {err}") from err


_STARTED = pytest.StashKey[float]()  # wall clock: ready-state entries saved since are this run's (refresh)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STARTED] = time.time()
    config.addinivalue_line(
        "markers",
        "destructive: may leave the cluster broken; gets a fresh cluster, and so does the next test on it",
    )
    config.addinivalue_line(
        "markers",
        "dcn_cases(argname, table): parametrize argname with a case table of dcnlab.certify.cases, "
        "generated from the session's cluster spec",
    )
    if config.option.dcn_cluster_spec is not None:
        session_spec(config)
    _threshold_overrides(config)
    _options(config)  # the fleet's shape and --dcn-netns: usage errors now, not in the first fixture
    _check_image_options(config)
    # pytest turns SIGINT into a clean teardown but dies on SIGTERM (CI
    # timeouts, kill): make both tear the fleet down.
    if hasattr(signal, "SIGTERM") and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


CALL_FAILED = pytest.StashKey[bool]()  # the test itself (not its set-up or teardown) failed
# Where a test's time went (dcnlab.report.timing.CasePhases): pytest's durations per
# phase, the fault injector's clock (fault, heal, health) and how the test got
# its cluster (built, restored, reused).
_DURATIONS = pytest.StashKey[dict[str, float]]()
FAULT_PHASES = pytest.StashKey[dict[str, float]]()
CLUSTER_HOW = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A harness error while a fixture sets up (image, fleet, cluster...) is
    reported as its one message, which says what failed and what to do; the
    library's traceback under it would bury that (``--tb=long`` shows it).
    Also notes whether the test failed, for ``cluster``'s teardown, and
    where the time of a test on VMs went, for the timing report."""
    report = yield
    if call.when == "call":
        item.stash[CALL_FAILED] = report.failed
    durations = item.stash.setdefault(_DURATIONS, {})
    durations[call.when] = report.duration
    if call.when == "teardown" and "fleet" in getattr(item, "fixturenames", ()):
        _record_phases(item, durations)
    failed = call.excinfo
    if (
        failed is not None
        and failed.errisinstance(DcnlabError)
        and call.when == "setup"
        and item.config.option.tbstyle == "auto"
    ):
        report.longrepr = failed.exconly()
    return report


def _record_phases(item: pytest.Item, durations: dict[str, float]) -> None:
    """Add where a test on VMs spent its time to the run's timing report;
    not for a test skipped before it started (nothing was spent)."""
    if "call" not in durations and durations.get("setup", 0.0) < 1.0:
        return
    fault = item.stash.get(FAULT_PHASES, {})
    phases = CasePhases.of(
        item.nodeid,
        item.stash.get(CLUSTER_HOW, ""),
        setup=durations.get("setup", 0.0),
        call=durations.get("call", 0.0),
        teardown=durations.get("teardown", 0.0),
        fault=fault.get("fault", 0.0),
        heal=fault.get("heal", 0.0),
        health=fault.get("health", 0.0),
    )
    item.config.stash.setdefault(REPORT, RunReport()).phases.append(phases)


def xdist_worker(config: pytest.Config) -> str:
    """This process's pytest-xdist worker id (``gw0``...), or "" when it is not
    a worker. From the worker's config, not ``PYTEST_XDIST_WORKER``: a pytest
    that a worker's test starts inherits that variable without being a worker."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    return str(workerinput.get("workerid", ""))


def _options(config: pytest.Config) -> DcnOptions:
    opt = config.option
    worker = xdist_worker(config)
    name = opt.dcn_name or f"pt{os.getpid()}"
    if opt.dcn_name and worker:
        name = f"{opt.dcn_name[:15]}-{worker}"  # one isolated fleet per xdist worker
    try:
        spec = FleetSpec(
            name=name,
            nodes=fleet_nodes(config),
            networks=opt.dcn_networks,
            vcpus=opt.dcn_vcpus,
            memory_mib=opt.dcn_memory,
            boot_timeout=opt.dcn_boot_timeout,
            firmware=opt.dcn_firmware,
            identity=opt.dcn_identity,
            login_user=opt.dcn_login_user,
            login_key=opt.dcn_login_key,
        )
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from err
    if opt.dcn_netns and not opt.dcn_libvirt_uri:
        raise pytest.UsageError("--dcn-netns only applies with --dcn-libvirt-uri")
    if opt.dcn_netns and not Path(f"/run/netns/{opt.dcn_netns}").exists():
        raise pytest.UsageError(f"--dcn-netns {opt.dcn_netns}: no such network namespace (see `ip netns list`)")
    if opt.dcn_lab_hosts != 1 and opt.dcn_libvirt_uri:
        raise pytest.UsageError("--dcn-lab-hosts starts embedded hypervisors of its own: leave out --dcn-libvirt-uri")
    # A shared hypervisor may already hold the saved domains' UUIDs: build
    # there. Saved states are of one host's domains: a lab builds too.
    ready_cache = "off" if opt.dcn_libvirt_uri or opt.dcn_lab_hosts != 1 else opt.dcn_ready_cache
    return DcnOptions(
        spec,
        opt.dcn_image,
        opt.dcn_recipe,
        opt.dcn_libvirt_uri,
        opt.dcn_netns,
        opt.dcn_accel,
        opt.dcn_keep,
        ready_cache,
        opt.dcn_lab_hosts,
    )


def _progress(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    # An xdist worker has no terminal of its own; its stderr is the run's.
    worker = bool(xdist_worker(config))

    def say(line: str) -> None:
        if capture is None:
            print(f"[dcnlab] {line}", file=sys.stderr, flush=True)
            return
        # Fixture setup runs with output captured; progress must reach the
        # terminal while a fleet boots, not after.
        with capture.global_and_fixture_disabled():
            if worker or reporter is None:
                print(f"[dcnlab] {line}", file=sys.stderr, flush=True)
            else:
                reporter.write_line(f"[dcnlab] {line}")

    return say


@pytest.fixture(scope="session")
def dcn_options(pytestconfig: pytest.Config) -> DcnOptions:
    return _options(pytestconfig)


@pytest.fixture(scope="session")
def dcn_image(dcn_options: DcnOptions, pytestconfig: pytest.Config) -> Any:
    """The image under certification: ``--dcn-image``, or the recipe's cached build."""
    from dcnlab.image.builder import build_image, image_from_path

    if dcn_options.image is not None:
        return image_from_path(dcn_options.image)
    return build_image(dcn_options.recipe, progress=_progress(pytestconfig))


_RESTORED = pytest.StashKey[SessionCluster]()


def uses_cluster(item: pytest.Item) -> bool:
    """Whether ``item`` runs on the session's cluster (directly or through
    the fault fixtures' ``fault_cluster``)."""
    return bool({"cluster", "fault_cluster"} & set(getattr(item, "fixturenames", ())))


def is_destructive(item: pytest.Item) -> bool:
    """Whether ``item`` may leave the cluster broken (marked ``destructive``):
    the ``cluster`` fixture hands it a fresh cluster, and the next test too."""
    return item.get_closest_marker("destructive") is not None


# What this process runs after a test: pytest hands each test's protocol the
# next item. Without xdist that is the collection order; an xdist worker runs
# the tests its scheduler sends, one step ahead, so only the next is known there.
_NEXT = pytest.StashKey["pytest.Item | None"]()
_RUNNING = pytest.StashKey[pytest.Item]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    item.stash[_NEXT] = nextitem
    item.config.stash[_RUNNING] = item
    return (yield)


def tests_after(item: pytest.Item) -> tuple[Sequence[pytest.Item], bool]:
    """The tests this process runs after ``item`` as far as it knows them, and
    whether that is all of them. An xdist worker knows one: the scheduler
    sends it tests while it runs (``--dist load``), and a worker runs a test
    only once the next one, or the end, has come."""
    if xdist_worker(item.config):
        if _NEXT not in item.stash:
            return (), False
        following = item.stash[_NEXT]
        return ((following,), False) if following is not None else ((), True)
    items = item.session.items
    try:
        index = items.index(item)
    except ValueError:
        return (), False  # not a collected item (called oddly): nothing is known
    return items[index + 1 :], True


def next_test_reuses_the_cluster(item: pytest.Item, following: Sequence[pytest.Item], complete: bool) -> bool:
    """Whether the next test on the cluster after ``item`` (among
    ``following``, which is every test after it when ``complete``) takes it as
    ``item`` leaves it: there is one, and neither is destructive (the
    ``cluster`` fixture renews the cluster for both). When it is not known,
    it is assumed to: the safe side."""
    if is_destructive(item):
        return False
    nxt = next((other for other in following if uses_cluster(other)), None)
    if nxt is None:
        return not complete
    return not is_destructive(nxt)


def next_fleet_user_renews(following: Sequence[pytest.Item], complete: bool) -> bool:
    """Whether, among the tests ``following`` (all of them when ``complete``),
    the fleet is next used through the session's cluster (which renews a
    spoiled cluster before the test) or not at all: then nodes that the test
    before left down are never seen down. When it is not known: it is not."""
    nxt = next((o for o in following if "fleet" in getattr(o, "fixturenames", ())), None)
    if nxt is None:
        return complete
    return uses_cluster(nxt)


def _first_fleet_user_needs_a_cluster(config: pytest.Config) -> bool:
    """Whether the test the session fleet comes up for (its first user in this
    process) also uses its cluster: then the fleet may come up with its
    cluster, restored from the cache. When it does not (image preflight, fleet
    tests), it gets freshly booted nodes first; the cluster fixture restores
    over them later."""
    running = config.stash.get(_RUNNING, None)
    return running is not None and uses_cluster(running)


@pytest.fixture(scope="session")
def fleet(dcn_options: DcnOptions, dcn_image: Any, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """A running fleet for the whole session, torn down at the end (kept with --dcn-keep).

    When the session starts with a test on the cluster and the ready-state
    cache holds this image, shape and spec, the fleet comes up with its
    cluster restored (seconds instead of minutes), verified like a built one.
    """
    config = request.config
    say = _progress(config)
    f: Fleet | None = None
    if _first_fleet_user_needs_a_cluster(request.config):
        # Asked for here, not as a parameter: a session of fleet tests only
        # needs no cluster spec (nor a valid one).
        cluster_spec: ClusterSpec = request.getfixturevalue("cluster_spec")
        domain_type = detect(dcn_options.accel, dcn_image.kernel, say).domain_type
        cached = cache_entry(dcn_options.ready_cache, dcn_options.spec, dcn_image, cluster_spec, domain_type)
        if cached is not None and cached[1] is not None:
            state = cached[1]
            with allure_glue.step(f"provision: restore the cached cluster-ready state {state.path.name}"):
                t0 = time.monotonic()
                try:
                    restored = ready.restore(
                        dcn_options.spec, dcn_image, state, cluster_spec, accel=dcn_options.accel, progress=say
                    )
                except DcnlabError as err:
                    readystate.discard(state, err, say)
                else:
                    seconds = round(time.monotonic() - t0, 1)
                    start = ClusterStart("restored", seconds, why="with the session fleet")
                    request.getfixturevalue("timing_report").clusters.append(start)
                    config.stash[_RESTORED] = SessionCluster(restored, state)
                    f = restored.fleet
    if f is None:
        hosts = f" over {dcn_options.lab_hosts} lab hosts" if dcn_options.lab_hosts != 1 else ""
        with allure_glue.step(
            f"provision: {dcn_options.spec.nodes} nodes on {dcn_options.spec.networks} networks{hosts}"
        ):
            f = dcn_options.fleet_up(dcn_image, say)
    try:
        yield f
    finally:
        if dcn_options.keep:
            f.release()
            say(
                f"fleet {f.name} kept: `dcnlab fleet ssh --name {f.name} dcn1` to reach it, "
                f"`dcnlab fleet down --name {f.name}` to remove it"
            )
        else:
            f.down()


@pytest.fixture(scope="session")
def dcn_nodes(fleet: Fleet) -> list[Node]:
    return list(fleet.nodes.values())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Per-node tests get the node name as their id: test_x[dcn1], test_x[dcn2]...
    if "dcn_node" in metafunc.fixturenames or "dcn_host" in metafunc.fixturenames:
        count = fleet_nodes(metafunc.config)
        metafunc.parametrize("dcn_node_name", [f"dcn{i}" for i in range(1, count + 1)], scope="session")
    # After the node: ids read node first, like every per-node case (test_unit[dcn1-http]).
    for mark in metafunc.definition.iter_markers("dcn_cases"):
        argname, table = mark.args
        metafunc.parametrize(argname, _case_params(metafunc.config, table))
    # Certification cases take `dcn_repeat`: --dcn-repeat N runs each N times.
    count = metafunc.config.option.dcn_repeat
    if "dcn_repeat" in metafunc.fixturenames and count > 1:
        metafunc.parametrize("dcn_repeat", range(count), ids=[f"r{i}" for i in range(count)])


def _case_params(config: pytest.Config, table: cases.Table) -> list[Any]:
    """A case table's rows as pytest params. Their markers are registered here, as
    the table names them (a workload's id is the spec's), so --strict-markers holds."""
    session = cases.Session(
        session_spec(config), config.option.dcn_networks, fleet_nodes(config), config.option.dcn_lab_hosts
    )
    try:
        rows = table(session)
    except (DcnlabError, PreflightError) as err:
        # A collection error naming the table, the spec and the problem: nothing runs.
        pytest.fail(f"case table {table.__name__} on {session.spec.path}: {err}", pytrace=False)
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    params = []
    for row in rows:
        for name in row.marks:
            if name not in known:
                config.addinivalue_line("markers", f"{name}: cases marked {name} by the spec's case tables")
                known.add(name)
        marks = [getattr(pytest.mark, name) for name in row.marks]
        if row.skip:
            marks.append(pytest.mark.skip(reason=row.skip))
        params.append(pytest.param(row.value, id=row.id, marks=marks))
    return params


@pytest.fixture
def dcn_repeat() -> int:
    """Which repeat of a case this is (0-based); parametrized by --dcn-repeat N > 1."""
    return 0


# --------------------------------------------------------------- timing report

REPORT = pytest.StashKey[RunReport]()


@pytest.fixture(scope="session")
def timing_report(pytestconfig: pytest.Config) -> RunReport:
    """The run's timing report: cases add a :class:`CaseRecord`; it is written
    to --dcn-report and summarised at the end of the run."""
    return pytestconfig.stash.setdefault(REPORT, RunReport())


# Under pytest-xdist each worker keeps its own report; it goes to the
# controller through xdist's workeroutput, which merges them and writes one.
_WORKER_REPORT = "dcnlab_timing_report"


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    report = config.stash.get(REPORT, None)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        if report is not None:
            workeroutput[_WORKER_REPORT] = json.dumps(report.to_dict())
        return
    allure_glue.write_run_info(config, report.environment if report else None)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist: a worker finished; merge its timing report into the run's."""
    data = getattr(node, "workeroutput", {}).get(_WORKER_REPORT)
    if data:
        node.config.stash.setdefault(REPORT, RunReport()).merge(RunReport.from_dict(json.loads(data)))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(REPORT, None)
    if report is None or not (report.cases or report.phases) or xdist_worker(config):
        return
    json_path, md_path = report.write(config.option.dcn_report)
    terminalreporter.section("dcnlab timing report")
    terminalreporter.write_line(report.text())
    terminalreporter.write_line(f"(written to {json_path} and {md_path})")


@pytest.fixture(scope="session")
def dcn_node(fleet: Fleet, dcn_node_name: str) -> Node:
    """One node of the fleet; tests using it run once per node."""
    return fleet.node(dcn_node_name)


@pytest.fixture(scope="session")
def dcn_host(dcn_node: Node) -> Any:
    """The testinfra host of one node; tests using it run once per node."""
    return dcn_node.host


@pytest.fixture(scope="session")
def cluster_spec(pytestconfig: pytest.Config) -> ClusterSpec:
    return session_spec(pytestconfig)


@pytest.fixture(scope="session")
def thresholds(cluster_spec: ClusterSpec, pytestconfig: pytest.Config) -> dict[str, Thresholds]:
    """Certification thresholds per fault name ("default" for all): the
    spec's ``certification.thresholds``, overlaid by ``--dcn-threshold``."""
    table = cluster_spec.threshold_table()
    for fault, override in _threshold_overrides(pytestconfig).items():
        table[fault] = table.get(fault, Thresholds()).over(override)
    return table


@pytest.fixture(scope="session")
def session_cluster(
    fleet: Fleet,
    cluster_spec: ClusterSpec,
    dcn_options: DcnOptions,
    dcn_image: Any,
    timing_report: RunReport,
    pytestconfig: pytest.Config,
) -> SessionCluster:
    """The spec's Pacemaker cluster on the session fleet, converged and
    verified (:meth:`Cluster.verify_ready`). It goes away with the fleet.

    From the ready-state cache when it holds this image, shape and spec
    (``--dcn-ready-cache``); else built with pcs and then cached.
    """
    say = _progress(pytestconfig)
    restored = pytestconfig.stash.get(_RESTORED, None)
    if restored is not None and restored.current.fleet is fleet:
        return restored
    cached = cache_entry(dcn_options.ready_cache, dcn_options.spec, dcn_image, cluster_spec, fleet.accel.domain_type)
    if cached is None:
        return _session_cluster_from(fleet, cluster_spec, None, None, timing_report, say)
    key, state = cached
    if state is not None:
        return _session_cluster_from(fleet, cluster_spec, key, state, timing_report, say)
    # Nothing to restore yet: build it, unless another session with the same
    # inputs (the other xdist worker) is building it now; then wait and
    # restore what it saved. Under refresh only an entry saved during this
    # run counts.
    with readystate.building(key, say):
        if dcn_options.ready_cache == "refresh":
            state = readystate.lookup_since(key, pytestconfig.stash[_STARTED])
        else:
            state = readystate.lookup(key)
        return _session_cluster_from(fleet, cluster_spec, key, state, timing_report, say)


def _session_cluster_from(
    fleet: Fleet,
    cluster_spec: ClusterSpec,
    key: readystate.ReadyKey | None,
    state: readystate.ReadyState | None,
    timing_report: RunReport,
    say: Callable[[str], None],
) -> SessionCluster:
    """The session's cluster restored from ``state`` over ``fleet``'s nodes, or
    built with pcs (no entry, or it failed and is removed) and then saved as
    the entry for ``key`` when the cache is on."""
    t0 = time.monotonic()
    if state is not None:
        with allure_glue.step(f"cluster: restore the cached cluster-ready state {state.path.name}"):
            cluster, was_restored = ready.renew(fleet, state, cluster_spec, say)
        if was_restored:
            timing_report.clusters.append(ClusterStart("restored", round(time.monotonic() - t0, 1)))
            return SessionCluster(cluster, state)
    else:
        with allure_glue.step(f"cluster: build {cluster_spec.cluster.name} from {Path(str(cluster_spec.path)).name}"):
            cluster = Cluster.up(fleet, cluster_spec, say)
    timing_report.clusters.append(ClusterStart("built", round(time.monotonic() - t0, 1)))
    saved = None
    if key is not None:
        with allure_glue.step("cluster: save it to the ready-state cache, resume from it, verify"):
            saved = ready.save(cluster, key)
    return SessionCluster(cluster, saved)


@pytest.fixture
def cluster(
    session_cluster: SessionCluster, timing_report: RunReport, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """The session's cluster, converged and verified (see ``session_cluster``).

    A test marked ``destructive`` may leave it broken: it gets a fresh
    cluster (unless nothing has run on the current one yet), and so does the
    next test after it; so does the test after one that failed. Fresh means
    every node replaced: restored from the ready-state cache when the session
    has an entry, else booted and built.
    """
    sc = session_cluster
    destructive = is_destructive(request.node)
    why = sc.renewal_needed(destructive)
    if why:
        say = _progress(request.config)
        source = f"the cached cluster-ready state {sc.state.path.name}" if sc.state else "a new build"
        say(f"cluster {sc.current.spec.cluster.name}: a fresh one ({why}) from {source}")
        t0 = time.monotonic()
        sc.spoiled = "after a failed renewal"  # until the fresh one is verified: it leaves no cluster
        with allure_glue.step(f"cluster: a fresh one ({why}) from {source}"):
            sc.current, restored = ready.renew(sc.current.fleet, sc.state, sc.current.spec, say)
        seconds = round(time.monotonic() - t0, 1)
        start = ClusterStart("restored" if restored else "built", seconds, request.node.nodeid, why)
        timing_report.clusters.append(start)
        say(f"cluster {sc.current.spec.cluster.name}: {start.describe()}")
        if not restored:
            sc.state = None  # the entry failed and is gone
        sc.spoiled = ""
        request.node.stash[CLUSTER_HOW] = start.how
    elif not sc.used and timing_report.clusters:
        request.node.stash[CLUSTER_HOW] = timing_report.clusters[-1].how  # the session's, in this set-up
    else:
        request.node.stash[CLUSTER_HOW] = "reused"
    sc.used = True
    try:
        yield sc.current
    finally:
        if destructive:
            sc.spoiled = "after a destructive test"
        elif request.node.stash.get(CALL_FAILED, False):
            # A failed test may have stopped half way (a node still cut off,
            # a spare half joined): the next one must not inherit that.
            sc.spoiled = "after a failed test"
