"""Ctrl-C (SIGINT) and SIGKILL of pytest while a fleet boots, while a fault
is in place, and while the fleet is torn down.

SIGINT goes to the run's whole process group, as a terminal sends it. The
run must then remove everything itself, promptly: an interrupted boot does
not sit out the SSH deadline, and an interrupted teardown finishes first.
SIGKILL leaves the run no say: `dcnlab gc` must then remove what it left.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import pytest

from tests.robustness.conftest import VmSandbox
from tests.robustness.sandbox import Child

BOOT = 420.0  # hypervisor and one node to SSH under TCG on a busy host, with margin
CLEANUP = 90.0  # an interrupted run's own cleanup; far below any boot deadline (240 s under TCG)

# Faults from the hypervisor side that only a fleet needs: one NIC cut, then
# the node frozen (a paused domain with a link down is what teardown and gc
# must cope with). The test then waits for the interrupt.
UNDER_FAULT = """\
from dcnlab.faults.base import FaultContext
from dcnlab.faults.network import NicDown
from dcnlab.faults.power import Freeze
from dcnlab.observe.timeline import Recorder
from dcnlab.core.wait import wait_until


def test_boot(fleet):
    ctx = FaultContext(fleet, Recorder())
    NicDown("dcn1", 1).inject(ctx)
    Freeze("dcn1").inject(ctx)
    assert fleet.domain_state("dcn1") == "paused"
    print("FAULTS INJECTED", flush=True)
    wait_until(lambda: False, timeout=300, what="the interrupt", interval=1.0)
"""
PASSES = "def test_boot(fleet):\n    pass\n"


@dataclass(frozen=True)
class Phase:
    id: str
    test: str
    needle: str  # {name}: the fleet's name
    within: float


PHASES = [
    Phase("boot", PASSES, "fleet {name}: dcn1 started", 180.0),
    Phase("fault", UNDER_FAULT, "FAULTS INJECTED", BOOT),
    Phase("teardown", PASSES, "fleet {name}: tearing down", BOOT),
]


def _interrupt_at(vm: VmSandbox, phase: Phase, sig: signal.Signals) -> tuple[Child, int]:
    child = vm.spawn(test=phase.test)
    try:
        child.wait_for(phase.needle.format(name=vm.name), timeout=phase.within)
        child.signal(sig)
        return child, child.finish(timeout=CLEANUP)
    except BaseException:
        child.kill()
        raise


@pytest.mark.parametrize("phase", PHASES, ids=[p.id for p in PHASES])
def test_sigint_cleans_up_without_gc(vm_sandbox: VmSandbox, phase: Phase) -> None:
    child, code = _interrupt_at(vm_sandbox, phase, signal.SIGINT)
    out = child.text
    assert code == 2, f"exit {code}, not 2 (interrupted):\n{out}"
    assert f"fleet {vm_sandbox.name}: removed" in out, out
    assert "incomplete" not in out, out
    if phase.id == "boot":
        assert f"fleet {vm_sandbox.name}: interrupted, removing what was created" in out, out
    if phase.id == "teardown":
        assert f"fleet {vm_sandbox.name}: teardown: SIGINT received, finishing first" in out, out
    assert vm_sandbox.box.leaks() == []


@pytest.mark.parametrize("phase", PHASES, ids=[p.id for p in PHASES])
def test_sigkill_then_gc_removes_everything(vm_sandbox: VmSandbox, phase: Phase) -> None:
    child, code = _interrupt_at(vm_sandbox, phase, signal.SIGKILL)
    assert code == -signal.SIGKILL, f"exit {code}, not killed:\n{child.text}"
    left = vm_sandbox.box.leaks()
    # The kill landed while the run still had things: proof gc has work here.
    assert left, "nothing was left to collect: the kill came after the run had cleaned up"
    gc = vm_sandbox.box.cli("gc", path=vm_sandbox.box.vm_path())
    assert gc.returncode == 0, f"dcnlab gc failed ({gc.returncode}):\n{gc.stdout}\n{gc.stderr}"
    removed = [line for line in gc.stdout.splitlines() if line.startswith("removed: ") and vm_sandbox.name in line]
    assert removed, gc.stdout
    assert vm_sandbox.box.leaks() == [], f"left after gc (before it: {left})"
