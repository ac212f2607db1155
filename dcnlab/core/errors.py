"""One exception tree for the whole harness, one class per phase.

Every message says what went wrong *and* what to do next, so a CLI user sees a
one-line error and a pytest user sees the same line in the failure report.
"""

from __future__ import annotations


class DcnlabError(Exception):
    """Root of every error the harness raises on purpose."""


class ConfigError(DcnlabError):
    """Bad input: options, spec files, names. Raised before anything is created."""


class ImageError(DcnlabError):
    """An image is missing, corrupt, or its build failed."""


class HypervisorError(DcnlabError):
    """libvirt could not be started, reached, or asked to do something."""


class ProvisionError(DcnlabError):
    """A fleet (networks, domains, disks) could not be created."""


class CommandError(DcnlabError):
    """A command (local or on a node) failed; the full result is attached."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class WaitTimeout(DcnlabError):
    """A condition did not become true before its deadline."""


class ClusterError(DcnlabError):
    """The cluster could not be formed, or its state could not be read."""


class FaultError(DcnlabError):
    """A fault could not be injected or healed; the cluster may need a look."""


class CertificationFailure(ClusterError):
    """The image or cluster spec under test cannot deliver what is certified
    (its cluster cannot form, a resource cannot start): a finding about the
    product, not an error of dcnlab. Messages start with ``FAIL: `` like a
    verdict's, name what failed (link and network, resource and agent) with
    the stack's own words, and say what to change."""
