"""Unit tests of the preflight's parsers and rules (harness/preflight.py): no VM."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping

import pytest

from harness import preflight
from harness.preflight import (
    HA_PORTS,
    InputFilter,
    Port,
    PortRange,
    PreflightError,
    agent_lookups,
    chrony_sources,
    firewalld_zone_filter,
    iptables_filter,
    machine_id_problem,
    missing_agents,
    missing_packages,
    nftables_filters,
    os_family,
    package_query_command,
    parse_agent_list,
    parse_firewalld_active_zones,
    parse_package_query,
    parse_systemctl_show,
    shared_machine_ids,
    timesyncd_sources,
)

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


# ---------------------------------------------------------------- guest shell


def test_fetch_and_retry_commands_run_in_sh() -> None:
    cmd = preflight.retry_shell(preflight.fetch_command("http://127.0.0.1:1/x y"), attempts=2, pause=0)
    assert "'http://127.0.0.1:1/x y'" in cmd
    assert "-T" not in cmd  # busybox 1.35's static wget crashes with it
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1  # nothing listens on port 1: every attempt fails, then exit 1
    ok = subprocess.run(["sh", "-c", preflight.retry_shell("true", attempts=3)], timeout=10)
    assert ok.returncode == 0


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


def test_missing_packages_name_package_and_fix_per_family() -> None:
    installed = {r.deb: "1" for r in preflight.REQUIRED_PACKAGES if r.deb != "resource-agents"}
    (line,) = missing_packages("deb", installed)
    assert line.startswith("resource-agents is not installed")
    assert "ocf:heartbeat:IPaddr2" in line
    assert "packages.include" in line
    rpm_lines = missing_packages("rpm", {})
    assert any(line.startswith("pacemaker-cli ") for line in rpm_lines)
    assert any(line.startswith("fence-agents-all ") for line in rpm_lines)
    assert all("blueprint" in line for line in rpm_lines)
    assert missing_packages("rpm", {r.rpm: "1" for r in preflight.REQUIRED_PACKAGES}) == []


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


def test_agent_lookups_group_by_listing_and_skip_what_rhel_lacks() -> None:
    deb = agent_lookups("deb")
    assert sorted(deb) == ["features", "ocf:heartbeat", "stonith"]
    assert set(deb) <= set(preflight.AGENT_LISTINGS)
    assert [r.agent for r in deb["stonith"]] == ["stonith:fence_xvm", "stonith:fence_virt", "stonith:fence_virsh"]
    assert "stonith:fence_virsh" not in [r.agent for r in agent_lookups("rpm")["stonith"]]


def test_missing_agents_names_the_package() -> None:
    listings = {
        "features": {"remote", "systemd"},
        "ocf:heartbeat": set(),
        "stonith": {"fence_xvm", "fence_virt", "fence_virsh"},
    }
    lines = missing_agents("deb", listings)
    assert len(lines) == 2
    assert lines[0].startswith("ocf:heartbeat:IPaddr2 is missing")
    assert all("resource-agents" in line for line in lines)
    listings["ocf:heartbeat"] = {"IPaddr2", "podman"}
    assert missing_agents("deb", listings) == []
    listings["features"] = {"remote"}
    (line,) = missing_agents("deb", listings)
    assert line.startswith("systemd is missing")
