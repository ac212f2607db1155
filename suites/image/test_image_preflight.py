"""Preflight certification of a DCN image, on every node of a freshly booted fleet.

Before a cluster is built on an image, this suite checks in seconds what would
otherwise fail minutes later and obscurely: the cluster packages and their
versions, the cluster services, the firewall, time sync, machine identity,
the resource and fence agents the cluster uses, and podman with the workload
image offline. Every failure names the missing piece and how to fix it.

    pytest suites/image [--dcn-nodes 3] [--dcn-image PATH]

The rules and parsers live in ``harness/preflight.py`` (unit tested).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from harness import preflight
from harness.node import Node
from harness.preflight import Family
from harness.proc import Result

# Under emulation a first podman run (storage, netns, conmon) takes several seconds.
PODMAN_TIMEOUT = 240.0
WORKLOAD_IMAGE = "localhost/dcn-http:latest"
WORKLOAD_PORT = 8080

Report = Callable[[str, dict[str, str]], None]

# The whole preflight is quick next to any fault: part of every smoke run.
pytestmark = pytest.mark.smoke


def sh(node: Node, command: str, timeout: float = 60.0) -> Result:
    """Run a shell command on ``node`` and return its result whatever its exit code."""
    return node.run(command, timeout=timeout, check=False)


# --------------------------------------------------------------------------- packages and services


def test_required_packages(dcn_node: Node, family: Family, report_versions: Report) -> None:
    names = [req.package(family) for req in preflight.REQUIRED_PACKAGES]
    result = sh(dcn_node, preflight.package_query_command(family, names))
    installed = preflight.parse_package_query(result.stdout)
    report_versions(dcn_node.name, installed)
    print(f"{dcn_node.name}: " + ", ".join(f"{name} {installed.get(name, 'MISSING')}" for name in names))
    missing = preflight.missing_packages(family, installed)
    assert not missing, f"{dcn_node.name}: required packages missing:\n  " + "\n  ".join(missing)


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


def test_resource_and_fence_agents_present(dcn_node: Node, family: Family) -> None:
    if not sh(dcn_node, "command -v crm_resource").ok:
        pkg = "pacemaker-cli-utils" if family == "deb" else "pacemaker-cli"
        pytest.fail(
            f"{dcn_node.name}: crm_resource is missing, so no agent can be listed; "
            f"{preflight.install_hint(family, [pkg])}",
            pytrace=False,
        )
    listings = {}
    for listing in preflight.agent_lookups(family):
        # A class with no agents makes crm_resource exit non-zero: that is an empty listing.
        listings[listing] = preflight.parse_agent_list(sh(dcn_node, preflight.AGENT_LISTINGS[listing]).stdout)
    print(f"{dcn_node.name}: " + "; ".join(f"{k}: {len(v)} entries" for k, v in listings.items()))
    missing = preflight.missing_agents(family, listings)
    assert not missing, f"{dcn_node.name}: agents the cluster needs are missing:\n  " + "\n  ".join(missing)


# --------------------------------------------------------------------------- podman and workloads


def _image_fix(family: Family) -> str:
    if family == "deb":
        return "the dcn-debian recipe builds it at image build time (customize.run, images/guest/dcn-http-image)"
    return "embed it in the blueprint ([[containers]], see images/rhde/README.md)"


def test_podman_runs_the_workload_image_offline(dcn_node: Node, family: Family) -> None:
    if not sh(dcn_node, "command -v podman").ok:
        pytest.fail(f"{dcn_node.name}: podman is missing; {preflight.install_hint(family, ['podman'])}", pytrace=False)
    exists = sh(dcn_node, f"podman image exists {WORKLOAD_IMAGE}", timeout=PODMAN_TIMEOUT)
    assert exists.ok, f"{dcn_node.name}: {WORKLOAD_IMAGE} is not in podman's local store; {_image_fix(family)}"
    # --pull=never: a registry is never asked, so this passes only offline-ready.
    run = sh(dcn_node, f"podman run --rm --pull=never --network none {WORKLOAD_IMAGE} true", timeout=PODMAN_TIMEOUT)
    assert run.ok, (
        f"{dcn_node.name}: podman cannot run {WORKLOAD_IMAGE} offline (exit {run.exit_code}): "
        f"{run.stderr.strip()[-600:]}"
    )
    print(f"{dcn_node.name}: podman ran {WORKLOAD_IMAGE} offline in {run.duration:.1f}s")


def test_container_workload_serves_http(dcn_node: Node) -> None:
    """The image's own command serves the page (inside the container's private loopback)."""
    fetch = preflight.retry_shell(f"timeout 5 wget -qO- http://127.0.0.1:{WORKLOAD_PORT}/")
    inner = f"dcn-http & {fetch}"
    result = sh(
        dcn_node,
        f"podman run --rm --pull=never --network none --hostname {dcn_node.name}-ct {WORKLOAD_IMAGE} "
        f"sh -c {shlex.quote(inner)}",
        timeout=PODMAN_TIMEOUT,
    )
    assert result.ok, f"{dcn_node.name}: the {WORKLOAD_IMAGE} container did not serve HTTP: {result.describe()}"
    assert result.stdout.strip() == f"dcn-http node={dcn_node.name}-ct runtime=container", result.stdout


def test_host_workload_serves_http(dcn_node: Node) -> None:
    """dcn-http.service exists, is not enabled at boot (Pacemaker starts it), and serves its node's name."""
    shown = preflight.parse_systemctl_show(
        sh(dcn_node, "systemctl show -p Id,LoadState,UnitFileState,ActiveState dcn-http.service").stdout
    )
    props = shown.get("dcn-http.service", {})
    assert props.get("LoadState") == "loaded", (
        f"{dcn_node.name}: dcn-http.service is missing (LoadState={props.get('LoadState')}); the dcn-debian recipe "
        "installs it from images/guest/ (for RHDE: images/rhde/README.md)"
    )
    assert props.get("UnitFileState") not in ("enabled", "enabled-runtime"), (
        f"{dcn_node.name}: dcn-http.service is enabled at boot; only the cluster may start it "
        "(`systemctl disable dcn-http.service` in the image)"
    )
    assert props.get("ActiveState") != "active", f"{dcn_node.name}: dcn-http.service is already running before the test"
    try:
        # Whether the start worked shows in the page fetch; its status goes into the message.
        sh(dcn_node, "systemctl start dcn-http.service", timeout=60)
        fetch = preflight.retry_shell(preflight.fetch_command(f"http://127.0.0.1:{WORKLOAD_PORT}/"))
        page = sh(dcn_node, fetch, timeout=60)
        status = sh(dcn_node, "systemctl status --no-pager dcn-http.service").stdout
        assert page.ok, f"{dcn_node.name}: dcn-http.service did not answer on port {WORKLOAD_PORT}:\n{status}"
        assert page.stdout.strip() == f"dcn-http node={dcn_node.name} runtime=systemd", page.stdout
    finally:
        sh(dcn_node, "systemctl stop dcn-http.service", timeout=60)
