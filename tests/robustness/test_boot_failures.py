"""Nodes that never answer SSH: the run fails once the boot deadline
(``--dcn-boot-timeout``) passes, the error shows what the node's console said
(or that it said nothing), and nothing is left behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.robustness.conftest import VmSandbox
from tests.robustness.sandbox import setup_error

# Long enough for the default image to boot to a login prompt under TCG, so the
# console shows a node that is up: one node alone answers SSH in 19-28 s here
# (the single-boot floor, bench/results/main_job.json), and its serial console
# shows the login prompt right after ssh.service starts. Three times that.
BOOTED = 90
BOOT_BUDGET = 600.0  # the whole child run: hypervisor, boot deadline, teardown


def _waited(error: str) -> int:
    match = re.search(r"waited (\d+)s for dcn1 to answer SSH on ", error)
    assert match is not None, error
    return int(match.group(1))


def test_a_non_bootable_image_times_out_and_says_its_console_was_silent(
    vm_sandbox: VmSandbox, tiny_image: Path
) -> None:
    # tiny_image passes every image check; its MBR holds no boot code.
    box = vm_sandbox.box
    args = ("--dcn-image", str(tiny_image), "--dcn-nodes", "1", "--dcn-boot-timeout", "20")
    error = setup_error(box.pytest(*args, path=box.vm_path()))
    assert error.startswith("dcnlab.core.errors.ProvisionError: waiting for SSH failed on 1 of 1:"), error
    assert 20 <= _waited(error) < 60, error  # the deadline, plus the last probe in flight
    assert "dcn1 printed nothing on its serial console" in error
    assert "is the image bootable, and does its boot loader and kernel log to ttyS0?" in error
    assert "--dcn-boot-timeout SECONDS" in error
    assert vm_sandbox.box.leaks() == []


def test_a_node_whose_ssh_never_answers_times_out_with_its_console(vm_sandbox: VmSandbox) -> None:
    child = vm_sandbox.spawn("--dcn-boot-timeout", str(BOOTED), test="def test_boot(fleet):\n    pass\n")
    try:
        child.wait_for(f"fleet {vm_sandbox.name}: dcn1 started", timeout=180)
        # The guest boots for a minute yet; from now on its port 22 is a black
        # hole for the harness (a hung sshd, a firewall gone wrong).
        netns = f"dcnlab-{vm_sandbox.name}"
        block = ["ip", "netns", "exec", netns, "iptables", "-I", "OUTPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]
        subprocess.run(block, check=True, timeout=30, capture_output=True)
    except BaseException:
        child.kill()
        raise
    code = child.finish(timeout=BOOT_BUDGET)
    error = setup_error(subprocess.CompletedProcess(child.proc.args, code, child.text, ""))
    assert error.startswith("dcnlab.core.errors.ProvisionError: waiting for SSH failed on 1 of 1:"), error
    assert BOOTED <= _waited(error) < BOOTED + 60, error
    assert "console log tail (" in error
    assert "login:" in error, f"the console tail does not show the node up:\n{error}"
    assert vm_sandbox.box.leaks() == []
