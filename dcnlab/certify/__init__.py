"""What the certification suites are written with: the case tables
(:mod:`dcnlab.certify.cases`), running a failover run to its verdicts
(:mod:`dcnlab.certify.failover`), and the vocabulary of the layers below that a
case touches (the cluster and its state, nodes, observers, waiting, errors),
so that a suite imports ``dcnlab.certify`` and ``dcnlab.faults`` and nothing
else of dcnlab (tests/unit/test_layers.py holds it). Expectations, constraints
and the image preflight are in their modules here."""

from dcnlab.certify import cases
from dcnlab.certify.failover import CaseReport, FailoverResult, run_failover
from dcnlab.certify.workloads import FailoverCase, FailoverRun, Workload
from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.crm import ClusterState
from dcnlab.cluster.invariants import Violation
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.cluster.thresholds import FAULT_KINDS, Thresholds, membership_change_limit
from dcnlab.core.errors import ClusterError, ConfigError, DcnlabError, WaitTimeout
from dcnlab.core.proc import Result
from dcnlab.core.wait import wait_until
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.node import Node
from dcnlab.observe.journal import record_journals
from dcnlab.observe.probe import Availability, ClientProbe
from dcnlab.observe.sampler import ClusterSampler
from dcnlab.observe.timeline import EventKind, Recorder

__all__ = [
    "FAULT_KINDS",
    "Availability",
    "CaseReport",
    "ClientProbe",
    "Cluster",
    "ClusterError",
    "ClusterSampler",
    "ClusterSpec",
    "ClusterState",
    "ConfigError",
    "DcnlabError",
    "EventKind",
    "FailoverCase",
    "FailoverResult",
    "FailoverRun",
    "Fleet",
    "Node",
    "Recorder",
    "Result",
    "Thresholds",
    "Violation",
    "WaitTimeout",
    "Workload",
    "cases",
    "membership_change_limit",
    "record_journals",
    "run_failover",
    "wait_until",
]
