"""Unit tests of the preflight's parsers and rules (dcnlab/certify/preflight.py): no VM."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from dcnlab.certify import preflight
from dcnlab.certify.preflight import (
    HA_PORTS,
    ImageNeeds,
    InputFilter,
    Port,
    PortRange,
    PreflightError,
    SpecRef,
    UnitNeed,
    chrony_sources,
    firewalld_zone_filter,
    iptables_filter,
    machine_id_problem,
    missing_packages,
    nftables_filters,
    os_family,
    package_query_command,
    parse_agent_list,
    parse_firewalld_active_zones,
    parse_package_query,
    parse_systemctl_show,
    requirements_of,
    settled_state,
    shared_machine_ids,
    timesyncd_sources,
    unit_file,
    unit_state_problems,
)
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- OS family


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n', "deb"),
        ('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\nVARIANT_ID=edge\n', "rpm"),
        ("ID=rocky\nID_LIKE='rhel centos fedora'\n", "rpm"),
        ("ID=linuxmint\nID_LIKE=ubuntu\n", "deb"),
    ],
)
def test_os_family(text: str, family: str) -> None:
    assert os_family(text) == family


def test_unknown_os_family_names_the_id() -> None:
    with pytest.raises(PreflightError, match="'arch'"):
        os_family("ID=arch\n")


# ---------------------------------------------------------------- packages


def test_package_query_commands_quote_names() -> None:
    deb = package_query_command("deb", ["pacemaker", "pcs"])
    assert deb.startswith("dpkg-query -W -f ")
    assert deb.endswith(" pacemaker pcs")
    assert "${Version}" in deb
    rpm = package_query_command("rpm", ["pacemaker"])
    assert rpm.startswith("rpm -q --qf ")
    assert "%{VERSION}-%{RELEASE}" in rpm


def test_parse_dpkg_query_keeps_only_installed() -> None:
    out = "pacemaker\tii \t2.1.5-1+deb12u1\npcs\trc \t0.11.5-1\npodman\tii \t4.3.1+ds1-8\n"
    assert parse_package_query(out) == {"pacemaker": "2.1.5-1+deb12u1", "podman": "4.3.1+ds1-8"}


def test_parse_rpm_query_skips_not_installed_lines() -> None:
    out = "pacemaker\tii \t2.1.7-5.el9\npackage fence-virt is not installed\n"
    assert parse_package_query(out) == {"pacemaker": "2.1.7-5.el9"}


def test_missing_packages_name_package_what_needs_it_and_fix_per_family() -> None:
    needs = requirements_of(load_spec(DEFAULT_SPEC)).packages
    installed = {name: "1" for name in requirements_of(load_spec(DEFAULT_SPEC)).package_names("deb")}
    del installed["resource-agents"]
    (line,) = missing_packages("deb", installed, needs)
    assert line.startswith("resource-agents is not installed (the ocf:heartbeat agents")
    # The spec items that need it, with the spec's lines.
    assert "needed by resource vip (" in line
    assert "default.yaml:" in line
    assert "resource app (" in line
    assert "packages.include" in line
    rpm_lines = missing_packages("rpm", {}, needs)
    assert any(line.startswith("pacemaker-cli ") for line in rpm_lines)
    assert any("needed by every cluster" in line for line in rpm_lines)
    assert all("blueprint" in line for line in rpm_lines)
    # Each package once, though two requirements name pacemaker-cli on RHEL.
    assert len(rpm_lines) == len({line.split()[0] for line in rpm_lines})
    rpm_installed = {name: "1" for name in requirements_of(load_spec(DEFAULT_SPEC)).package_names("rpm")}
    assert missing_packages("rpm", rpm_installed, needs) == []


# ---------------------------------------------------------------- units


def test_parse_systemctl_show_blocks() -> None:
    out = (
        "Id=pcsd.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n\n"
        "Id=corosync.service\nLoadState=loaded\nUnitFileState=disabled\nActiveState=inactive\n\n"
        "Id=pacemaker.service\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n"
    )
    units = parse_systemctl_show(out)
    assert units["pcsd.service"]["UnitFileState"] == "enabled"
    assert units["pacemaker.service"]["LoadState"] == "not-found"
    assert units["pacemaker.service"]["UnitFileState"] == ""


def test_parse_systemctl_show_without_id_is_an_error() -> None:
    with pytest.raises(PreflightError, match="Id="):
        parse_systemctl_show("LoadState=loaded\n")


# ---------------------------------------------------------------- firewall


def test_firewalld_active_zones() -> None:
    out = "public\n  interfaces: eth0 eth1\ntrusted\n  sources: 10.0.0.0/8\n"
    assert parse_firewalld_active_zones(out) == ["public", "trusted"]


def test_firewalld_ha_service_opens_the_ports() -> None:
    zone = firewalld_zone_filter("public", "cockpit dhcpv6-client high-availability ssh", "")
    assert zone.filtering
    assert zone.missing() == []


def test_firewalld_explicit_ports_and_gaps() -> None:
    zone = firewalld_zone_filter("public", "ssh", "2224/tcp 5404-5405/udp")
    assert zone.missing() == []
    partial = firewalld_zone_filter("public", "ssh", "2224/tcp 5405/udp")
    assert partial.missing() == [Port("udp", 5404)]
    assert firewalld_zone_filter("trusted", "", "").missing() == []


def nft(*items: dict[str, object]) -> str:
    return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]})


def chain(name: str, policy: str = "accept", hook: str | None = "input", table: str = "filter") -> dict[str, object]:
    c: dict[str, object] = {"family": "inet", "table": table, "name": name, "handle": 1}
    if hook:
        c.update(type="filter", hook=hook, prio=0, policy=policy)
    return {"chain": c}


def rule(chain_name: str, *expr: Mapping[str, object], table: str = "filter") -> dict[str, object]:
    return {"rule": {"family": "inet", "table": table, "chain": chain_name, "handle": 2, "expr": list(expr)}}


def dport(proto: str, right: object) -> dict[str, object]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": right}}


CT_ESTABLISHED = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}


def test_nft_empty_ruleset_does_not_filter() -> None:
    assert nftables_filters(nft()) == []
    (only,) = nftables_filters(nft(chain("input")))
    assert not only.filtering
    assert only.missing() == []


def test_nft_drop_policy_with_ha_accepts() -> None:
    text = nft(
        chain("input", policy="drop"),
        rule("input", CT_ESTABLISHED, {"accept": None}),
        rule("input", dport("tcp", 2224), {"counter": {"packets": 0, "bytes": 0}}, {"accept": None}),
        rule("input", dport("udp", {"range": [5404, 5405]}), {"accept": None}),
    )
    (only,) = nftables_filters(text)
    assert only.filtering
    assert only.missing() == []


def test_nft_drop_policy_without_ha_names_ports() -> None:
    text = nft(chain("input", policy="drop"), rule("input", dport("tcp", {"set": [22, 2224]}), {"accept": None}))
    (only,) = nftables_filters(text)
    assert only.missing() == [Port("udp", 5404), Port("udp", 5405)]


def test_nft_follows_jumps_and_respects_rule_order() -> None:
    text = nft(
        chain("input", policy="drop"),
        chain("ha", hook=None),
        rule("input", {"jump": {"target": "ha"}}),
        rule("ha", dport("udp", {"set": [5404, 5405]}), {"accept": None}),
        rule("ha", dport("tcp", 2224), {"accept": None}),
    )
    assert nftables_filters(text)[0].missing() == []
    # An unconditional drop before the accepts makes them dead rules.
    dead = nft(
        chain("input"),
        rule("input", {"drop": None}),
        rule("input", dport("tcp", 2224), {"accept": None}),
    )
    assert nftables_filters(dead)[0].missing() == list(HA_PORTS)


def test_nft_conditional_drop_is_not_filtering_and_accept_all_wins() -> None:
    invalid = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}
    (only,) = nftables_filters(nft(chain("input"), rule("input", invalid, {"drop": None})))
    assert not only.filtering
    (open_all,) = nftables_filters(nft(chain("input", policy="drop"), rule("input", {"accept": None})))
    assert open_all.accepts_all
    assert open_all.missing() == []


def test_nft_every_input_chain_counts() -> None:
    text = nft(
        chain("input"),
        rule("input", {"accept": None}),
        chain("INPUT", policy="drop", table="other"),
    )
    filters = nftables_filters(text)
    # Accepting everything in one base chain does not get a packet past another.
    assert [(f.source, f.missing()) for f in filters] == [
        ("nftables inet filter input", []),
        ("nftables inet other INPUT", list(HA_PORTS)),
    ]


def test_nft_bad_json_is_preflight_error() -> None:
    with pytest.raises(PreflightError, match="JSON"):
        nftables_filters("Error: permission denied")


def test_iptables_accept_policy_no_rules() -> None:
    out = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
    found = iptables_filter(out)
    assert not found.filtering
    assert found.missing() == []


def test_iptables_rhel_style_reject_with_ports() -> None:
    out = (
        "-P INPUT ACCEPT\n"
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A INPUT -i lo -j ACCEPT\n"
        "-A INPUT -p tcp -m tcp --dport 2224 -j ACCEPT\n"
        "-A INPUT -p udp -m multiport --dports 5404,5405 -j ACCEPT\n"
        '-A INPUT -m comment --comment "last" -j REJECT --reject-with icmp-host-prohibited\n'
    )
    found = iptables_filter(out)
    # The comment match makes that REJECT conditional in form, but the policy
    # decides nothing here: what matters is that the ports are accepted.
    assert found.missing() == []


def test_iptables_save_format() -> None:
    out = (
        "# Generated by iptables-nft-save v1.8.9\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n"
        "-A INPUT -p tcp -m tcp --dport 2224 -j ACCEPT\nCOMMIT\n# Completed\n"
    )
    found = iptables_filter(out)
    assert found.filtering
    assert found.missing() == [Port("udp", 5404), Port("udp", 5405)]
    empty = iptables_filter("# Generated by iptables-nft-save v1.8.9\n")  # no filter table at all
    assert not empty.filtering
    assert empty.notes == ("no filter table",)


def test_iptables_drop_policy_and_custom_chain() -> None:
    out = "-P INPUT DROP\n-N HA\n-A INPUT -j HA\n-A HA -p udp --dport 5404:5405 -j ACCEPT\n"
    found = iptables_filter(out)
    assert found.filtering
    assert found.missing() == [Port("tcp", 2224)]


def test_port_range_and_filter_helpers() -> None:
    assert PortRange("any", 5400, 5410).covers(Port("udp", 5404))
    assert not PortRange("tcp", 5404, 5405).covers(Port("udp", 5404))
    assert InputFilter("x", filtering=False).missing() == []
    with pytest.raises(PreflightError):
        preflight.parse_port_spec("ssh", "tcp")


# ---------------------------------------------------------------- time sync


def test_chrony_sources_skip_comments() -> None:
    conf = "# pool 2.debian.pool.org iburst\npool 2.debian.pool.org iburst\nsourcedir /run/chrony-dhcp\nmakestep 1 3\n"
    assert chrony_sources(conf) == ["pool 2.debian.pool.org iburst", "sourcedir /run/chrony-dhcp"]
    assert chrony_sources("driftfile /var/lib/chrony/drift\n") == []


def test_timesyncd_sources() -> None:
    assert timesyncd_sources("[Time]\n#NTP=\nNTP=10.0.0.1 10.0.0.2\n") == ["NTP=10.0.0.1 10.0.0.2"]
    assert timesyncd_sources("[Time]\n#NTP=\n") == []


# ---------------------------------------------------------------- machine-id


def test_machine_id_problems() -> None:
    assert machine_id_problem("0123456789abcdef0123456789abcdef\n") is None
    assert "empty" in (machine_id_problem("") or "")
    assert "32" in (machine_id_problem("uninitialized") or "")
    assert "zeros" in (machine_id_problem("0" * 32) or "")


def test_shared_machine_ids() -> None:
    ids = {"dcn1": "a" * 32, "dcn2": "b" * 32, "dcn3": "a" * 32 + "\n"}
    assert shared_machine_ids(ids) == {"a" * 32: ["dcn1", "dcn3"]}
    assert shared_machine_ids({"dcn1": "a" * 32}) == {}


# ---------------------------------------------------------------- agents


def test_agent_list_parsing() -> None:
    out = "IPaddr2\nIPsrcaddr\npodman\n\n"
    assert parse_agent_list(out) == {"IPaddr2", "IPsrcaddr", "podman"}
    # crm_resource's error text is no agent name.
    assert parse_agent_list("No agents found for standard 'ocf:heartbeat'") == set()


def test_pacemaker_features_parsing() -> None:
    out = (
        "Pacemaker 2.1.5 (Build: a3f44794f94)\n"
        " Supporting v3.16.1: agent-manpages cibsecrets corosync-ge-2 lha monotonic nagios remote systemd\n"
    )
    features = parse_agent_list(out)
    assert "systemd" in features
    assert "Pacemaker" not in features
    assert "v3.16.1" not in features


# ---------------------------------------------------------------- what a spec needs of the image


def needs_of(yaml_text: str) -> ImageNeeds:
    return requirements_of(parse_spec(yaml_text, "site.yaml"))


STACK_DEB = ["pacemaker", "pacemaker-cli-utils", "corosync", "pcs"]
STACK_RPM = ["pacemaker", "pacemaker-cli", "corosync", "pcs"]
NO_FENCING = "fencing: {method: none}\ncluster: {properties: {stonith-enabled: false}}\n"


def test_the_default_spec_needs_its_unit_image_agents_and_packages() -> None:
    spec = load_spec(DEFAULT_SPEC)
    needs = requirements_of(spec)
    http = spec.resource("http")
    assert http is not None
    (unit,) = needs.units
    assert unit == UnitNeed("http", "dcn-http.service", SpecRef("resource http", spec.path, http.line))
    assert str(unit.source) == f"resource http ({spec.path}:{http.line})"
    assert [(c.resource, c.image) for c in needs.containers] == [("app", "localhost/dcn-http:latest")]
    assert [(a.resource, a.agent, a.listing, a.name) for a in needs.agents] == [
        ("vip", "ocf:heartbeat:IPaddr2", "ocf:heartbeat", "IPaddr2"),
        ("http", "systemd:dcn-http", "features", "systemd"),
        ("app", "ocf:heartbeat:podman", "ocf:heartbeat", "podman"),
        ("witness", "ocf:pacemaker:Dummy", "ocf:pacemaker", "Dummy"),
    ]
    assert needs.fence_agent is not None
    assert (needs.fence_agent.agent, needs.fence_agent.listing, needs.fence_agent.name) == (
        "stonith:fence_virt",
        "stonith",
        "fence_virt",
    )
    assert needs.package_names("deb") == [
        *STACK_DEB,
        "resource-agents",
        "podman",
        "pacemaker-resource-agents",
        "fence-virt",
    ]
    # On RHEL Pacemaker's own agents come with pacemaker-cli, already in the stack.
    assert needs.package_names("rpm") == [*STACK_RPM, "resource-agents", "podman", "fence-virt"]


def test_the_cluster_stack_is_needed_by_every_spec() -> None:
    needs = needs_of(NO_FENCING)
    assert needs.package_names("deb") == STACK_DEB
    assert needs.package_names("rpm") == STACK_RPM
    assert [p.requirement for p in needs.packages] == list(preflight.REQUIRED_PACKAGES)
    assert all(p.needed_by == (preflight.EVERY_CLUSTER,) for p in needs.packages)
    assert (needs.units, needs.containers, needs.agents, needs.fence_agent) == ((), (), (), None)


def test_a_spec_without_podman_needs_no_podman_nor_container_image() -> None:
    needs = needs_of(
        "workloads:\n"
        "  - {id: vip, type: ipaddr2}\n"
        "  - {id: web, type: systemd, unit: nginx}\n"  # no .service: systemd loads nginx.service
    )
    assert needs.containers == ()
    assert "podman" not in needs.package_names("deb")
    assert [u.unit for u in needs.units] == ["nginx.service"]
    assert needs.package_names("deb") == [*STACK_DEB, "resource-agents", "fence-virt"]


def test_a_spec_with_only_dummy_needs_no_resource_agents() -> None:
    needs = needs_of(NO_FENCING + "workloads:\n  - {id: beat, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n")
    (agent,) = needs.agents
    assert (agent.resource, agent.listing, agent.name) == ("beat", "ocf:pacemaker", "Dummy")
    assert agent.listing_command() == "crm_resource --list-agents ocf:pacemaker"
    assert needs.package_names("deb") == [*STACK_DEB, "pacemaker-resource-agents"]
    assert needs.package_names("rpm") == STACK_RPM
    merged = preflight.merge_packages("rpm", needs.packages)
    (cli,) = [p for p in merged if p.requirement.package("rpm") == "pacemaker-cli"]
    assert cli.needed_by == (preflight.EVERY_CLUSTER, "resource beat (site.yaml:4)")


def test_pacemaker_daemon_agents_come_with_pacemaker() -> None:
    needs = needs_of(NO_FENCING + "workloads:\n  - {id: rem, type: ocf, agent: 'ocf:pacemaker:remote'}\n")
    (agent,) = needs.agents
    assert agent.package == preflight.PACEMAKER
    assert needs.package_names("deb") == STACK_DEB


def test_fencing_none_needs_no_fence_agent() -> None:
    needs = needs_of(NO_FENCING + "workloads:\n  - {id: vip, type: ipaddr2}\n")
    assert needs.fence_agent is None
    assert not {"fence-virt", "fence-agents", "fence-agents-all"} & set(needs.package_names("deb"))


def test_fence_virsh_needs_its_own_package_per_family() -> None:
    needs = needs_of("fencing: {method: fence_virsh}\n")
    fence = needs.fence_agent
    assert fence is not None
    assert (fence.resource, fence.agent, fence.name) == ("fencing", "stonith:fence_virsh", "fence_virsh")
    assert fence.listing_command() == "crm_resource --list-agents stonith"
    assert str(fence.source).startswith("fencing fence_virsh (site.yaml:")
    assert needs.package_names("deb") == [*STACK_DEB, "fence-agents"]
    assert needs.package_names("rpm") == [*STACK_RPM, "fence-agents-virsh"]
    line = fence.problem("rpm", {"fence_virt"})
    assert line is not None
    assert line.startswith("stonith:fence_virsh is missing (needed by fencing fence_virsh (site.yaml:")
    assert "it comes with fence-agents-virsh" in line
    assert fence.problem("rpm", {"fence_virsh"}) is None


def test_a_custom_provider_names_no_package_but_must_exist() -> None:
    needs = needs_of(NO_FENCING + "workloads:\n  - id: hist\n    type: ocf\n    agent: ocf:acme:historian\n")
    (agent,) = needs.agents
    assert (agent.listing, agent.name, agent.package) == ("ocf:acme", "historian", None)
    assert needs.package_names("deb") == STACK_DEB
    line = agent.problem("deb", set())
    assert line is not None
    assert line.startswith("ocf:acme:historian is missing (needed by resource hist (site.yaml:4))")
    assert "/usr/lib/ocf/resource.d/acme/historian" in line
    assert agent.problem("deb", {"historian"}) is None


def test_agent_problems_name_the_package_and_fix() -> None:
    needs = requirements_of(load_spec(DEFAULT_SPEC))
    vip, http, _app, _witness = needs.agents
    line = vip.problem("deb", {"podman"})
    assert line is not None
    assert line.startswith("ocf:heartbeat:IPaddr2 is missing (needed by resource vip (")
    assert "it comes with resource-agents; add resource-agents to the image recipe" in line
    assert vip.problem("deb", {"IPaddr2"}) is None
    assert http.listing_command() == "pacemakerd --features"
    assert http.lister()[0] == "pacemakerd"
    assert vip.lister()[0] == "crm_resource"
    line = http.problem("rpm", {"remote"})
    assert line is not None
    assert "no systemd support" in line
    assert "blueprint" in line
    assert http.problem("rpm", {"remote", "systemd"}) is None


def test_an_agent_of_an_unknown_class_is_a_preflight_error() -> None:
    with pytest.raises(PreflightError, match="'lsb:foo'"):
        preflight.agent_need("x", "lsb:foo", SpecRef("resource x", "s.yaml", 3))


def test_a_fence_agent_no_package_is_known_for_must_be_in_the_fence_bindir() -> None:
    need = preflight.agent_need("fencing", "stonith:fence_site", SpecRef("fencing fence_site", "s.yaml", 2))
    assert need.package is None
    line = need.problem("rpm", {"fence_virt"})
    assert line is not None
    assert "/usr/sbin/fence_site" in line
    assert "`fencing.method:`" in line


@pytest.mark.parametrize(
    ("unit", "loaded"),
    [
        ("dcn-http", "dcn-http.service"),
        ("dcn-http@9000", "dcn-http@9000.service"),
        ("ticker.timer", "ticker.timer"),
        ("data.mount", "data.mount"),
        ("app.v2", "app.v2.service"),  # a dot, but no unit type Pacemaker knows
    ],
)
def test_unit_file_follows_pacemakers_suffix_rule(unit: str, loaded: str) -> None:
    assert unit_file(unit) == loaded


# ---------------------------------------------------------------- a spec's units on a node


UNIT = UnitNeed("web", "nginx.service", SpecRef("resource web", "site.yaml", 7))


def show(load: str = "loaded", file_state: str = "disabled", active: str = "inactive") -> dict[str, str]:
    return {"Id": UNIT.unit, "LoadState": load, "UnitFileState": file_state, "ActiveState": active}


def test_a_unit_left_to_the_cluster_has_no_problem() -> None:
    assert unit_state_problems("dcn1", UNIT, show()) == []
    assert unit_state_problems("dcn1", UNIT, show(file_state="static")) == []


def test_a_missing_unit_names_node_spec_item_and_fix() -> None:
    (line,) = unit_state_problems("dcn2", UNIT, show(load="not-found", file_state="", active="inactive"))
    assert line.startswith("dcn2: nginx.service (resource web (site.yaml:7)) is not on the node (LoadState=not-found)")
    assert "/etc/systemd/system/nginx.service" in line
    assert "`unit:`" in line
    (line,) = unit_state_problems("dcn2", UNIT, {})
    assert "LoadState=not shown" in line
    (line,) = unit_state_problems("dcn2", UNIT, show(load="masked"))
    assert "systemctl unmask nginx.service" in line


def test_a_unit_enabled_or_running_before_the_cluster_is_a_problem() -> None:
    lines = unit_state_problems("dcn1", UNIT, show(file_state="enabled", active="active"))
    assert len(lines) == 2
    assert "is enabled at boot (UnitFileState=enabled)" in lines[0]
    assert "systemctl disable nginx.service" in lines[0]
    assert "is already active before the cluster exists" in lines[1]
    (line,) = unit_state_problems("dcn1", UNIT, show(file_state="enabled-runtime"))
    assert "enabled-runtime" in line
    (line,) = unit_state_problems("dcn1", UNIT, show(active="activating"))
    assert "already activating" in line


@pytest.mark.parametrize(
    ("stdout", "state"),
    [
        ("active\n", "active"),
        ("failed\n", "failed"),
        ("inactive\n", "inactive"),
        ("activating\n", None),
        ("", "unknown"),
    ],
)
def test_settled_state_waits_out_transitions(stdout: str, state: str | None) -> None:
    assert settled_state(stdout) == state


def test_image_fix_per_family() -> None:
    assert "customize.run" in preflight.image_fix("deb", "localhost/app:1")
    rpm = preflight.image_fix("rpm", "localhost/app:1")
    assert 'source = "localhost/app:1"' in rpm
    assert "`image:`" in rpm


# ---------------------------------------------------------------- the suite's cases


def collect_image_suite(*args: str) -> list[str]:
    """The node ids ``pytest suites/image --collect-only`` lists (no VM is booted)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/image", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line]


def test_the_image_suite_has_a_case_per_node_and_spec_item(tmp_path: Path) -> None:
    ids = collect_image_suite("--dcn-nodes", "1")
    # tests/meta/test_bad_image.py expects exactly these to fail on an image without resource-agents.
    assert {"test_required_packages[dcn1]", "test_resource_agent[dcn1-vip]", "test_resource_agent[dcn1-app]"} <= set(
        ids
    )
    assert "test_systemd_unit[dcn1-http]" in ids
    assert "test_container_image[dcn1-app]" in ids
    assert "test_fence_agent[dcn1-fence_virt]" in ids
    assert not [i for i in ids if "dcn-http" in i or "dcn2" in i]
    spec = tmp_path / "bare.yaml"
    spec.write_text(NO_FENCING + "workloads:\n  - {id: beat, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n")
    ids = collect_image_suite("--dcn-nodes", "2", "--dcn-cluster-spec", str(spec))
    assert "test_resource_agent[dcn2-beat]" in ids
    # Nothing of a kind the spec lacks: one skipped case each, saying why.
    for test in ("test_systemd_unit", "test_container_image", "test_fence_agent"):
        assert f"{test}[dcn1-none]" in ids


def test_the_fleet_takes_its_size_from_the_spec_unless_told() -> None:
    """cluster.nodes sizes the fleet (plant-4node: dcn1..dcn4); --dcn-nodes wins."""
    plant = str(REPO / "suites" / "specs" / "examples" / "plant-4node.yaml")
    ids = collect_image_suite("--dcn-cluster-spec", plant)
    assert "test_systemd_unit[dcn4-scada-hmi]" in ids
    assert not [i for i in ids if "dcn5" in i]
    assert not [i for i in collect_image_suite("--dcn-cluster-spec", plant, "--dcn-nodes", "4") if "dcn5" in i]
    assert "test_required_packages[dcn3]" in collect_image_suite()  # the default spec says nothing: 3
