"""Faults and their heals, the API the suites inject with: ``fault(PowerOff(node))``
through a :class:`FaultInjector` (the plugin's ``fault`` fixture), which heals
every fault it injected. A fault the engine cannot carry out raises
:class:`NotApplicable` before anything is done."""

from dcnlab.faults.base import Fault, FaultContext
from dcnlab.faults.hosts import HostLoss, HostPacketLoss, HostPartition
from dcnlab.faults.injector import FaultInjector
from dcnlab.faults.network import Isolate, NicDown, Partition
from dcnlab.faults.power import Freeze, GracefulShutdown, HardReset, PowerOff
from dcnlab.faults.process import KillProcess, ResourceFailure
from dcnlab.fleet.provider import NotApplicable

__all__ = [
    "Fault",
    "FaultContext",
    "FaultInjector",
    "Freeze",
    "GracefulShutdown",
    "HardReset",
    "HostLoss",
    "HostPacketLoss",
    "HostPartition",
    "Isolate",
    "KillProcess",
    "NicDown",
    "NotApplicable",
    "Partition",
    "PowerOff",
    "ResourceFailure",
]
