"""The node's identity, on every node of a freshly booted fleet: the hostname
and one address per NIC on the NIC with the planned MAC, given through the
channel the image reads (dcnlab/image/identity.py), root logging in by key only,
and the identity kept across a reboot and a hypervisor power-cycle (what a
fence does) without cloud-init running again as a new instance.

    pytest suites/image -k identity [--dcn-image PATH] [--dcn-identity auto|cloud-init|smbios]

A disk-booted image (RHEL for Edge, bootc) must read the channel: these
cases are what says it did, before any cluster is built on it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dcnlab.certify import Fleet, Node, Result, preflight

pytestmark = pytest.mark.smoke

CLOUD_INIT_TIMEOUT = 300.0  # `cloud-init status --wait` on a guest still finishing its first boot under TCG
INSTANCE_ID = (
    "cat /var/lib/cloud/data/instance-id 2>/dev/null; echo; cat /var/lib/cloud/data/previous-instance-id 2>/dev/null"
)


def sh(node: Node, command: str, timeout: float = 60.0) -> Result:
    return node.run(command, timeout=timeout, check=False)


def _identity(node: Node) -> list[str]:
    return preflight.identity_problems(node.plan, sh(node, preflight.IDENTITY_COMMAND).stdout)


def test_identity_applied(dcn_node: Node) -> None:
    problems = _identity(dcn_node)
    assert not problems, f"{dcn_node.name}'s identity is not what the harness gave it:\n  " + "\n  ".join(problems)


def test_identity_channel_finished(dcn_node: Node, fleet: Fleet) -> None:
    channels = fleet.identity_channels
    print(f"{dcn_node.name}: identity channels offered: {', '.join(channels)}")
    if channels == ("kernel",):
        pytest.skip("identity on the kernel command line (direct kernel boot): no channel agent to finish")
    finished = []
    if "cloud-init" in channels and sh(dcn_node, "command -v cloud-init").ok:
        result = sh(dcn_node, "cloud-init status --wait --long", timeout=CLOUD_INIT_TIMEOUT)
        print(result.stdout.strip())
        # Exit 0: done; 2: done with recoverable errors (cloud-init 23+); 1: an error.
        if result.exit_code != 0 or "status: done" not in result.stdout:
            pytest.fail(
                f"{dcn_node.name}: cloud-init did not finish cleanly (exit {result.exit_code}):\n"
                f"{(result.stdout + result.stderr).strip()[-800:]}\n"
                "see `cloud-init analyze show` and /var/log/cloud-init.log on the node",
                pytrace=False,
            )
        finished.append("cloud-init")
    if "smbios" in channels:
        # PID 1 imports SMBIOS credentials into /run/credentials/@system.
        imported = sh(dcn_node, "ls /run/credentials/@system/ 2>&1").stdout.split()
        if {"ssh.authorized_keys.root", "tmpfiles.extra"} <= set(imported):
            failed = sh(dcn_node, "systemctl is-failed systemd-tmpfiles-setup.service").stdout.strip()
            assert failed != "failed", (
                f"{dcn_node.name}: systemd-tmpfiles-setup.service failed applying the credentials"
            )
            finished.append("smbios")
        elif channels == ("smbios",):
            pytest.fail(
                f"{dcn_node.name}: systemd did not import the SMBIOS credentials (/run/credentials/@system holds "
                f"{imported or 'nothing'}); the image needs systemd >= 252",
                pytrace=False,
            )
    assert finished, f"{dcn_node.name}: none of the channels offered ({', '.join(channels)}) was read"
    print(f"{dcn_node.name}: identity read through {', '.join(finished)}")


def test_root_logs_in_by_key_only(dcn_node: Node) -> None:
    settings = sh(dcn_node, preflight.ROOT_LOGIN_COMMAND).stdout
    shadow = sh(dcn_node, "getent shadow root | cut -d: -f2").stdout.strip()
    print(f"{dcn_node.name}: {' '.join(settings.split())}; root's password field starts {shadow[:1]!r}")
    problems = preflight.root_login_problems(settings, shadow)
    assert not problems, f"{dcn_node.name}: " + "; ".join(problems)


def test_identity_kept_across_reboot_and_power_cycle(fleet: Fleet, dcn_nodes: list[Node]) -> None:
    # One node is enough: every node has the same image and channels, and
    # each boot costs minutes under emulation.
    if fleet.identity_channels == ("kernel",):
        pytest.skip("direct kernel boot: the harness gives the identity on the kernel command line at every boot")
    node = dcn_nodes[0]
    instance = sh(node, INSTANCE_ID).stdout.split("\n")[0].strip()
    cycles: list[tuple[str, Callable[[], None]]] = [
        ("a reboot from inside", lambda: fleet.reboot(node.name)),
        ("a power-cycle from the hypervisor (as a fence does)", lambda: _power_cycle(fleet, node.name)),
    ]
    for how, cycle in cycles:
        cycle()
        problems = _identity(node)
        assert not problems, f"{node.name} after {how}:\n  " + "\n  ".join(problems)
        if instance:
            now, _, previous = sh(node, INSTANCE_ID).stdout.partition("\n")
            if now.strip() != instance or previous.strip() not in ("", instance):
                pytest.fail(
                    f"{node.name} after {how}: cloud-init ran as a new instance ({instance} -> {now.strip()}, "
                    f"previous {previous.strip()!r}); the seed's instance-id must stay the same across boots",
                    pytrace=False,
                )
        print(f"{node.name}: identity kept after {how}")


def _power_cycle(fleet: Fleet, name: str) -> None:
    fleet.power_off(name)
    fleet.power_on(name)
