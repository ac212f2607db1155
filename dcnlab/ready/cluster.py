"""A converged cluster, saved once and restored after (see :mod:`dcnlab.ready.store`).

key = ready.key_for(fleet_spec, image, cluster_spec, accel)
state = readystate.lookup(key)
cluster = ready.restore(fleet_spec, image, state, cluster_spec, accel=accel) if state else None
...                                   # else: Fleet.up, Cluster.up, then
ready.save(cluster, key)              # cache it; the cluster goes on from the saved state
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from dcnlab.cluster.bootstrap import Cluster, Progress
from dcnlab.cluster.fencing import start_fence_virtd
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import DcnlabError, ProvisionError
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.libvirt.hypervisor import hypervisor_versions
from dcnlab.fleet.provider import FenceEndpoint
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage
from dcnlab.ready import store as readystate
from dcnlab.ready.store import ReadyKey, ReadyState


def key_for(fleet: FleetSpec, image: BuiltImage, cluster: ClusterSpec, domain_type: str) -> ReadyKey:
    """The ready-state key of this fleet shape and spec on ``image``, under
    ``domain_type`` (``kvm`` or ``qemu``, from :func:`dcnlab.fleet.accel.detect`)."""
    return readystate.ready_key(
        image=image,
        fleet=fleet,
        cluster=cluster,
        domain_type=domain_type,
        hypervisor_versions=hypervisor_versions(),
    )


def restore(
    fleet_spec: FleetSpec,
    image: BuiltImage,
    state: ReadyState,
    cluster_spec: ClusterSpec,
    *,
    accel: str = "auto",
    progress: Progress = print,
) -> Cluster:
    """A new fleet named ``fleet_spec.name`` whose cluster comes from ``state``,
    verified healthy (:meth:`Cluster.verify_ready`). On any failure nothing of
    the fleet is left."""
    t0 = time.monotonic()
    fences: list[FenceEndpoint] = []
    fleet = Fleet.up(
        fleet_spec,
        image,
        accel=accel,
        progress=progress,
        restore=readystate.Restore(state, _fence_first(cluster_spec, state, fences)),
    )
    try:
        cluster = Cluster.restored(fleet, cluster_spec, fences, progress)
    except BaseException:
        fleet.down()
        raise
    cluster.timings["from_nothing"] = round(time.monotonic() - t0, 3)
    return cluster


def restore_into(fleet: Fleet, state: ReadyState, cluster_spec: ClusterSpec, progress: Progress) -> Cluster:
    """Replace the nodes of ``fleet`` (booted, with no cluster yet) by those
    of ``state``, and return their cluster, verified healthy."""
    fences: list[FenceEndpoint] = []
    fleet.renew_nodes(readystate.Restore(state, _fence_first(cluster_spec, state, fences)))
    return Cluster.restored(fleet, cluster_spec, fences, progress)


def renew(
    fleet: Fleet, state: ReadyState | None, cluster_spec: ClusterSpec, progress: Progress
) -> tuple[Cluster, bool]:
    """A fresh cluster on ``fleet``, and whether it was restored: every node
    replaced (same names and addresses), restored from ``state`` when given,
    else booted from the image and built with pcs. An entry that fails is
    removed from the cache and the cluster built instead."""
    if state is not None:
        try:
            return restore_into(fleet, state, cluster_spec, progress), True
        except DcnlabError as err:
            readystate.discard(state, err, progress)
    fleet.renew_nodes()
    return Cluster.up(fleet, cluster_spec, progress), False


def _fence_first(cluster_spec: ClusterSpec, state: ReadyState, out: list[FenceEndpoint]) -> Callable[[Fleet], None]:
    def before_resume(fleet: Fleet) -> None:
        # fence_virtd answers before the guests run again: a fence device
        # monitor due at resume must find it, with the key the guests hold.
        if cluster_spec.fencing.method != "fence_virt":
            return
        if not state.fence_key.is_file():
            raise ProvisionError(f"cached state {state.path} holds no fence key, and the spec fences with fence_virt")
        d = fleet.run_dir / "fence"
        d.mkdir(exist_ok=True)
        key = d / "fence_xvm.key"
        if key.exists():
            if key.read_bytes() != state.fence_key.read_bytes():
                raise ProvisionError(
                    f"fleet {fleet.name} already runs a fence_virtd with another key: "
                    "a cached cluster restores only onto a fleet without a cluster"
                )
        else:
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(state.fence_key.read_bytes())
        out.extend(start_fence_virtd(fleet, cluster_spec))

    return before_resume


def save(cluster: Cluster, key: ReadyKey) -> ReadyState | None:
    """Cache ``cluster`` (converged) under ``key``; it goes on from the saved
    state and passes the health check again. A cache that cannot be written
    (a full disk, say) costs the next run its speed, not this run its
    cluster: the failure is reported and None returned, as long as the
    cluster itself is healthy."""
    fleet = cluster.fleet
    fence_key = fleet.run_dir / "fence" / "fence_xvm.key" if cluster.fences else None
    t0 = time.monotonic()
    try:
        state = readystate.save(fleet, key, fence_key, cluster.progress)
    except DcnlabError as err:
        cluster.progress(f"cluster {cluster.spec.cluster.name}: not cached: {err}")
        state = None
    except OSError as err:
        cluster.progress(f"cluster {cluster.spec.cluster.name}: not cached ({readystate.ready_dir()}): {err}")
        state = None
    # Whatever happened, every domain must run again, with the host's time.
    fleet.ensure_running()
    fleet.set_clocks()
    cluster.verify_ready()
    cluster.timings["cached"] = round(time.monotonic() - t0, 3)
    if state is not None:
        cluster.progress(
            f"cluster {cluster.spec.cluster.name}: cached as {state.path.name} in {state.seconds_to_save:.0f}s; "
            f"saved, restored and verified in {cluster.timings['cached']:.0f}s"
        )
    return state
