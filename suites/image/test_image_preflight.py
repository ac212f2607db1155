"""Preflight certification of a DCN image for a cluster spec, on every node of
a freshly booted fleet.

Before a cluster is built on an image, this suite checks in seconds what would
otherwise fail minutes later and obscurely. What it checks of the image comes
from the session's cluster spec (``--dcn-cluster-spec``, else the shipped
default), per node and per spec item, each case named by the node and the
spec's resource id:

- ``test_required_packages[dcn1]``: the cluster stack (pacemaker, its command
  line, corosync, pcs) and the packages that ship what the spec uses
  (resource-agents for ocf:heartbeat agents, podman for podman resources, the
  fence method's agents), with their versions;
- ``test_resource_agent[dcn1-vip]``: every resource's agent, as Pacemaker
  finds it (an OCF agent of any provider, or the systemd class);
- ``test_fence_agent[dcn1-fence_virt]``: the agent of ``fencing.method``;
- ``test_systemd_unit[dcn1-http]``: a systemd resource's unit is loaded, not
  enabled at boot, not running before the cluster, and starts and becomes
  active when started by hand (then it is stopped again);
- ``test_container_image[dcn1-app]``: a podman resource's image is in podman's
  local store and a container can be created from it with ``--pull=never``;

and what every cluster needs whatever its spec: the cluster services, no
corosync.conf yet, the firewall, time sync and unique machine ids. A spec
with no resource of a kind (or with fencing.method none) has one skipped
case saying so, ``[dcn1-none]``. Every failure
names the node, the spec item (resource id, spec file and line), what is
missing and how to fix it.

    pytest suites/image [--dcn-cluster-spec my.yaml] [--dcn-nodes 3] [--dcn-image PATH]

The rules and parsers live in ``dcnlab/certify/preflight.py`` (unit tested); the
cases are generated in ``suites/image/conftest.py``; docs/preflight.md tells
the whole story.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from dcnlab.certify import DcnlabError, Node, Result, cases, preflight, wait_until
from dcnlab.certify.preflight import AgentNeed, ContainerNeed, Family, ImageNeeds, UnitNeed

# Under emulation a first podman command (storage, netns, conmon) takes several seconds.
PODMAN_TIMEOUT = 240.0
# How long a start or stop by hand may take: the default spec allows its
# systemd workload 120 s, seen taking 40 s under TCG.
SYSTEMCTL_TIMEOUT = 180.0
# How long a unit may stay activating (or deactivating) once its start job is done.
SETTLE_TIMEOUT = 60.0

Report = Callable[[str, dict[str, str]], None]

# The whole preflight is quick next to any fault: part of every smoke run.
pytestmark = pytest.mark.smoke


def sh(node: Node, command: str, timeout: float = 60.0) -> Result:
    """Run a shell command on ``node`` and return its result whatever its exit code."""
    return node.run(command, timeout=timeout, check=False)


def _tail(text: str, chars: int = 600) -> str:
    return text.strip()[-chars:] or "(no output)"


# --------------------------------------------------------------------------- packages and services


def test_required_packages(dcn_node: Node, family: Family, image_needs: ImageNeeds, report_versions: Report) -> None:
    """The cluster stack and the packages that ship what the spec uses, with their versions."""
    names = image_needs.package_names(family)
    result = sh(dcn_node, preflight.package_query_command(family, names))
    installed = preflight.parse_package_query(result.stdout)
    report_versions(dcn_node.name, installed)
    print(f"{dcn_node.name}: " + ", ".join(f"{name} {installed.get(name, 'MISSING')}" for name in names))
    missing = preflight.missing_packages(family, installed, image_needs.packages)
    assert not missing, f"{dcn_node.name}: packages the cluster spec needs are missing:\n  " + "\n  ".join(missing)


def test_cluster_services_present(dcn_node: Node, family: Family) -> None:
    units = [unit for unit, _deb, _rpm in preflight.CLUSTER_UNITS]
    result = sh(dcn_node, "systemctl show -p Id,LoadState,UnitFileState,ActiveState " + " ".join(units))
    shown = preflight.parse_systemctl_show(result.stdout)
    problems = []
    for unit, deb, rpm in preflight.CLUSTER_UNITS:
        props = shown.get(unit, {})
        state = props.get("LoadState", "not shown")
        print(f"{dcn_node.name}: {unit} {state} {props.get('UnitFileState', '')} {props.get('ActiveState', '')}")
        if state != "loaded":
            pkg = deb if family == "deb" else rpm
            problems.append(
                f"{unit} has no unit file (LoadState={state}): it comes with {pkg}; "
                f"{preflight.install_hint(family, [pkg])}"
            )
    assert not problems, f"{dcn_node.name}: cluster services missing:\n  " + "\n  ".join(problems)


def test_no_corosync_conf_before_the_cluster(dcn_node: Node) -> None:
    """A node that has never been in a cluster carries no corosync.conf:
    `pcs cluster node add` refuses such a node (grow would fail), and pcsd
    syncs its auth tokens to the cluster that file names."""
    path = "/etc/corosync/corosync.conf"
    result = sh(dcn_node, f"test -e {path} && sed -n '/^totem/,/}}/p' {path}")
    assert not result.ok, (
        f"{dcn_node.name}: the image ships {path} (an example cluster configuration):\n{result.stdout}"
        f"  fix: remove it when building the image (RHEL/RHDE ship none; pcs writes it when a cluster is set up)"
    )


# --------------------------------------------------------------------------- firewall


def test_firewall_allows_ha_ports(dcn_node: Node) -> None:
    filters: list[preflight.InputFilter] = []
    seen: list[str] = []
    if sh(dcn_node, "firewall-cmd --state").stdout.strip() == "running":
        zones = preflight.parse_firewalld_active_zones(sh(dcn_node, "firewall-cmd --get-active-zones").stdout)
        if not zones:
            zones = [sh(dcn_node, "firewall-cmd --get-default-zone").stdout.strip()]
        for zone in zones:
            services = sh(dcn_node, f"firewall-cmd --zone={shlex.quote(zone)} --list-services").stdout
            ports = sh(dcn_node, f"firewall-cmd --zone={shlex.quote(zone)} --list-ports").stdout
            filters.append(preflight.firewalld_zone_filter(zone, services, ports))
    else:
        seen.append("firewalld not running")
    # firewalld itself programs nftables: its own chains are judged above.
    if not filters and sh(dcn_node, "command -v nft").ok:
        filters += preflight.nftables_filters(sh(dcn_node, "nft -j list ruleset").stdout)
        seen.append("nftables: " + ("; ".join(f"{f.source} {' '.join(f.notes)}" for f in filters) or "no ruleset"))
    if not filters and sh(dcn_node, "command -v iptables-save").ok:
        ipt = preflight.iptables_filter(sh(dcn_node, "iptables-save -t filter").stdout)
        filters.append(ipt)
        seen.append(f"iptables: {' '.join(ipt.notes)}")
    active = [f for f in filters if f.filtering]
    if not active:
        pytest.skip(
            f"{dcn_node.name}: no firewall filters incoming traffic ({'; '.join(seen)}), "
            "so the high-availability ports are open; nothing to check"
        )
    problems = [
        f"{f.source} blocks {', '.join(str(p) for p in f.missing())}" for f in active if f.missing(preflight.HA_PORTS)
    ]
    assert not problems, (
        f"{dcn_node.name}: the firewall blocks cluster traffic:\n  "
        + "\n  ".join(problems)
        + f"\n  fix: {preflight.HA_FIX}"
    )


# --------------------------------------------------------------------------- time and identity


def test_time_sync_configured(dcn_node: Node, family: Family) -> None:
    candidates = {
        "chrony.service": ("/etc/chrony/chrony.conf", preflight.chrony_sources),
        "chronyd.service": ("/etc/chrony.conf", preflight.chrony_sources),
        "systemd-timesyncd.service": ("/etc/systemd/timesyncd.conf", preflight.timesyncd_sources),
    }
    shown = preflight.parse_systemctl_show(
        sh(dcn_node, "systemctl show -p Id,LoadState,UnitFileState,ActiveState " + " ".join(candidates)).stdout
    )
    findings = []
    for unit, (conf, sources_of) in candidates.items():
        props = shown.get(unit, {})
        if props.get("LoadState") != "loaded":
            continue
        enabled = props.get("UnitFileState") in ("enabled", "enabled-runtime", "static", "alias")
        sources = sources_of(sh(dcn_node, f"cat {conf}").stdout)
        # timesyncd has compiled-in fallback servers; chrony needs a line.
        configured = bool(sources) or unit == "systemd-timesyncd.service"
        findings.append(f"{unit} {props.get('UnitFileState')}/{props.get('ActiveState')}, sources: {sources}")
        if enabled and configured:
            print(f"{dcn_node.name}: time sync by {findings[-1]}")
            return
    found = "; ".join(findings) or "no chrony, chronyd or systemd-timesyncd unit"
    pytest.fail(
        f"{dcn_node.name}: no time synchronisation is configured and enabled ({found}); "
        f"fix: {preflight.TIME_SYNC_FIX[family]}",
        pytrace=False,
    )


def test_machine_ids_are_valid_and_unique(dcn_nodes: list[Node]) -> None:
    ids = {node.name: sh(node, "cat /etc/machine-id").stdout.strip() for node in dcn_nodes}
    print("machine-ids: " + ", ".join(f"{n} {v}" for n, v in sorted(ids.items())))
    problems = [f"{name}: {p}" for name, value in sorted(ids.items()) if (p := preflight.machine_id_problem(value))]
    problems += [
        f"{', '.join(nodes)} share machine-id {value}" for value, nodes in preflight.shared_machine_ids(ids).items()
    ]
    assert not problems, "machine identity:\n  " + "\n  ".join(problems) + f"\n  fix: {preflight.MACHINE_ID_FIX}"


# --------------------------------------------------------------------------- agents


def _check_agent(node: Node, family: Family, need: AgentNeed) -> None:
    program, package = need.lister()
    if not sh(node, f"command -v {program}").ok:
        pkg = package.package(family)
        pytest.fail(
            f"{node.name}: {program} is missing, so {need.agent} (needed by {need.source}) cannot be looked up; "
            f"it comes with {pkg}; {preflight.install_hint(family, [pkg])}",
            pytrace=False,
        )
    # A class or provider with no agents makes crm_resource exit non-zero: that is an empty listing.
    listed = preflight.parse_agent_list(sh(node, need.listing_command()).stdout)
    print(f"{node.name}: {need.listing}: {len(listed)} entries")
    problem = need.problem(family, listed)
    assert problem is None, f"{node.name}: {problem}"


@pytest.mark.dcn_cases("agent_need", cases.agent_needs)
def test_resource_agent(dcn_node: Node, family: Family, agent_need: AgentNeed) -> None:
    """The resource's agent is where Pacemaker looks for it."""
    _check_agent(dcn_node, family, agent_need)


@pytest.mark.dcn_cases("fence_need", cases.fence_needs)
def test_fence_agent(dcn_node: Node, family: Family, fence_need: AgentNeed) -> None:
    """The agent of the spec's fencing method is where Pacemaker looks for it."""
    _check_agent(dcn_node, family, fence_need)


# --------------------------------------------------------------------------- the spec's systemd units


def _unit_state(node: Node, unit: str) -> str | None:
    return preflight.settled_state(sh(node, f"systemctl is-active {shlex.quote(unit)}").stdout)


@pytest.mark.dcn_cases("unit_need", cases.unit_needs)
def test_systemd_unit(dcn_node: Node, unit_need: UnitNeed) -> None:
    """The unit exists, only the cluster starts it, and it runs when started."""
    unit, node = unit_need.unit, dcn_node.name
    q = shlex.quote(unit)
    shown = preflight.parse_systemctl_show(
        sh(dcn_node, f"systemctl show -p Id,LoadState,UnitFileState,ActiveState {q}").stdout
    )
    props = shown.get(unit, {})
    print(f"{node}: {unit} {props.get('LoadState')} {props.get('UnitFileState')} {props.get('ActiveState')}")
    problems = preflight.unit_state_problems(node, unit_need, props)
    # A unit found running is left alone: stopping it could break whatever started it.
    assert not problems, "\n".join(problems)
    where = f"{node}: {unit} ({unit_need.source})"
    fix = (
        "fix the unit in the image: the cluster would fail to start it the same way (a service the cluster "
        "runs must stay active: a Type=oneshot one needs RemainAfterExit=yes)"
    )
    try:
        try:
            # systemctl start waits for the start job; is-active then tells a
            # service that runs from one that exited or failed at once.
            start = sh(dcn_node, f"systemctl start {q}", timeout=SYSTEMCTL_TIMEOUT)
            state = wait_until(
                lambda: _unit_state(dcn_node, unit), timeout=SETTLE_TIMEOUT, what=f"{unit} on {node} to settle"
            )
        except DcnlabError as err:  # the start outlived its limit, or the unit never settled
            pytest.fail(f"{where} did not start by hand: {err}; {fix}", pytrace=False)
        if start.ok and state == "active":
            print(f"{node}: {unit} started by hand in {start.duration:.1f}s")
            return
        status = sh(dcn_node, f"systemctl status --no-pager --lines=20 {q}").stdout
        pytest.fail(
            f"{where} did not run when started by hand (`systemctl start` exited {start.exit_code}: "
            f"{_tail(start.stderr)}; then is-active said {state}); {fix}\n{_tail(status, 2000)}",
            pytrace=False,
        )
    finally:
        sh(dcn_node, f"systemctl stop {q}", timeout=SYSTEMCTL_TIMEOUT)


# --------------------------------------------------------------------------- the spec's container images


@pytest.mark.dcn_cases("image_need", cases.container_needs)
def test_container_image(dcn_node: Node, family: Family, image_need: ContainerNeed) -> None:
    """The image is in podman's local store, and a container is created from it offline."""
    image, node = image_need.image, dcn_node.name
    where = f"{node}: {image} ({image_need.source})"
    if not sh(dcn_node, "command -v podman").ok:
        pytest.fail(
            f"{node}: podman is missing, and {image_need.source} runs {image} with it; "
            f"{preflight.install_hint(family, [preflight.PODMAN.package(family)])}",
            pytrace=False,
        )
    q = shlex.quote(image)
    exists = sh(dcn_node, f"podman image exists {q}", timeout=PODMAN_TIMEOUT)
    assert exists.ok, (
        f"{where} is not in podman's local store, and a certified node pulls nothing; "
        f"fix: {preflight.image_fix(family, image)}"
    )
    # --pull=never: no registry is asked, so this passes only offline-ready.
    # Created, not run: the image need hold no shell nor `true`.
    created = sh(dcn_node, f"podman create --pull=never {q}", timeout=PODMAN_TIMEOUT)
    container = created.stdout.strip().splitlines()[-1] if created.ok and created.stdout.strip() else ""
    if container:
        sh(dcn_node, f"podman rm --force {shlex.quote(container)}", timeout=PODMAN_TIMEOUT)
    assert created.ok, (
        f"{where}: podman cannot create a container from it offline (exit {created.exit_code}): "
        f"{_tail(created.stderr)}; fix the image so `podman create --pull=never {image}` works "
        "(an image with neither CMD nor ENTRYPOINT needs one)"
    )
    print(f"{node}: created a container of {image} offline in {created.duration:.1f}s")
