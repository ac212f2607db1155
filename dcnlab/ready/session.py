"""The session's cluster and when a test gets a fresh one: the policy the
pytest plugin applies (its ``session_cluster`` and ``cluster`` fixtures), kept
here so that it is the library's and unit-tested (docs/ready-cache.md)."""

from __future__ import annotations

from dataclasses import dataclass

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage
from dcnlab.image.firmware import resolve as resolve_firmware
from dcnlab.ready import cluster as ready
from dcnlab.ready import store
from dcnlab.ready.store import ReadyKey, ReadyState

CACHE_MODES = ("use", "refresh", "off")  # --dcn-ready-cache


@dataclass
class SessionCluster:
    """The session fleet's cluster (the ``cluster`` fixture hands out
    ``current``), and what a fresh one is made from."""

    current: Cluster
    state: ReadyState | None  # the ready-state entry a fresh one is restored from; None: built again
    used: bool = False  # a test has run on it since it was built or restored
    # Why it may be broken, "" when it is not: the last test on it was
    # destructive or failed, or a renewal failed.
    spoiled: str = ""

    def renewal_needed(self, destructive: bool) -> str:
        """Why the next test (``destructive`` or not) needs a fresh cluster,
        or "" when it does not."""
        if self.spoiled:
            return self.spoiled
        if destructive and self.used:
            return "destructive test"
        return ""


def cache_entry(
    mode: str, fleet: FleetSpec, image: BuiltImage, spec: ClusterSpec, domain_type: str
) -> tuple[ReadyKey, ReadyState | None] | None:
    """The ready-state cache's key for this fleet, image and spec, and its entry
    when one may be used (``mode`` ``use``; ``refresh`` builds and saves anew);
    None when the cache is off or cannot hold such a cluster."""
    if mode == "off":
        return None
    if resolve_firmware(image.disk, image.kernel, fleet.firmware)[0] == "uefi":
        return None  # the nodes' UEFI variables are not part of a saved state
    if fleet.login_user != "root" or image.login_user:
        return None  # a restored state is re-keyed for root; a login user keeps the image's key
    key = ready.key_for(fleet, image, spec, domain_type)
    return key, (store.lookup(key) if mode == "use" else None)
