"""The embedded libvirtd dies while a test uses the fleet: the test fails
with one error that says so (not a libvirt socket error to puzzle over), and
the teardown still removes everything: the VMs, the namespace, the daemons."""

from __future__ import annotations

from tests.robustness.conftest import VmSandbox

KILL_LIBVIRTD = """\
import os
import signal


def test_boot(fleet):
    pid = int((fleet.run_dir / "hv" / "run" / "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    print("LIBVIRTD KILLED", flush=True)
    fleet.domain_state("dcn1")
"""


def test_libvirtd_dying_mid_run_is_named_and_nothing_is_left(vm_sandbox: VmSandbox) -> None:
    child = vm_sandbox.spawn(test=KILL_LIBVIRTD)
    code = child.finish(timeout=600)
    out = child.text
    assert "LIBVIRTD KILLED" in out, out
    assert code == 1, f"exit {code}, not 1 (a failed test):\n{out}"
    # The summary line is cut at the terminal's width; the error's own line names the type.
    assert "FAILED test_boot.py::test_boot - dcnlab.fleet.libvirt.hypervisor.Hyper" in out, out
    assert "dcnlab.fleet.libvirt.hypervisor.HypervisorExited: the embedded libvirtd" in out, out
    netns = f"dcnlab-{vm_sandbox.name}"
    gone = f"HypervisorExited: the embedded libvirtd (namespace {netns}) is gone: killed, or it crashed"
    assert gone in out, out
    assert f"fleet {vm_sandbox.name}: removed" in out
    assert "incomplete" not in out, out
    assert vm_sandbox.box.leaks() == []
