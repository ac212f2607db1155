"""Faults and their heals, the API the suites inject with: ``fault(PowerOff(node))``
through a :class:`FaultInjector` (the plugin's ``fault`` fixture), which heals
every fault it injected. A fault the engine cannot carry out raises
:class:`NotApplicable` before anything is done."""

from dcnlab.faults.faults import (
    Fault,
    FaultContext,
    Freeze,
    GracefulShutdown,
    HardReset,
    Isolate,
    KillProcess,
    NicDown,
    Partition,
    PowerOff,
    ResourceFailure,
)
from dcnlab.faults.injector import FaultInjector
from dcnlab.fleet.provider import NotApplicable

__all__ = [
    "Fault",
    "FaultContext",
    "FaultInjector",
    "Freeze",
    "GracefulShutdown",
    "HardReset",
    "Isolate",
    "KillProcess",
    "NicDown",
    "NotApplicable",
    "Partition",
    "PowerOff",
    "ResourceFailure",
]
