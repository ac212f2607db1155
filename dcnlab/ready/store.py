"""A cached "cluster ready" state: a converged cluster's saved VMs, restored
instead of rebuilt when nothing that shaped it has changed.

Building a cluster costs minutes under TCG (boot, pcs, convergence); restoring
the saved memory and disks of a converged one costs seconds (docs/facts.md: ~11 s
for three nodes). An entry lives in ``cache_dir()/ready/KEY`` and holds, per
node, libvirt's save image (``virDomainSave``) and a copy of the node's qcow2
overlay taken while the domain was stopped, plus the SSH key that reached the
guests when they were saved.

The key (:func:`ready_key`) covers what decides the saved guests: the image
(digest and path: an overlay names its backing file), the fleet's shape, the
cluster spec (without thresholds and line numbers), the accelerator, the
libvirt and QEMU versions, and the harness sources that shape the guests.
The fleet's *name* is not in it: a restore under another name rewrites what
is the host's (domain names, owner labels, disks, taps, networks, console
logs) and keeps what is the guest's ABI (UUID, MACs; libvirt checks both on
restore). Addresses and MACs do not depend on the fleet's name
(:class:`dcnlab.fleet.spec.AddressPlan`).

What differs after a restore, and who mends it:

- the guest clocks stand at the save time: set from the host's at resume;
- the guests accept the SSH key of the run that saved them: each run's own key
  replaces it at once (:func:`rekey`), so the harness still reaches guests
  with a key made for this run only;
- the fence device's ``pcmk_host_map`` names the saving fleet's domains:
  rewritten if this fleet's differ (they do not under the embedded
  hypervisor: :meth:`dcnlab.cluster.bootstrap.Cluster.restored`);
- corosync's, pacemaker's and fence_virt's keys are the cached cluster's own
  (on its disks): they stay, and fence_virtd of the new run gets the same key.

Nothing cached is trusted: a restored cluster passes the same health check a
built one does (every node online, every resource started, no failed action,
no transition pending, every knet link up, the fence path answering) before
any test sees it. Only the embedded hypervisor restores (a shared
hypervisor could already hold a domain with the saved UUID).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dcnlab.core import paths
from dcnlab.core.errors import HypervisorError, ProvisionError
from dcnlab.core.parallel import on_each
from dcnlab.core.proc import run_local
from dcnlab.core.wait import wait_until
from dcnlab.fleet.fleet import run_with_clock
from dcnlab.fleet.node import Node
from dcnlab.fleet.provider import SNAPSHOTS, require

if TYPE_CHECKING:
    from dcnlab.cluster.spec import ClusterSpec
    from dcnlab.fleet.fleet import Fleet
    from dcnlab.fleet.spec import FleetSpec, NodePlan
    from dcnlab.image.builder import BuiltImage

FORMAT = 1
MANIFEST = "manifest.json"
KEY_FILE = "id_ed25519"  # the SSH key the saved guests accept
FENCE_KEY_FILE = "fence_xvm.key"
# Entries kept (the default spec, and the bad-spec fixtures of the meta-test);
# the least recently used go first.
KEEP = 6
# Sources that decide what a saved guest holds: how it was booted and named,
# and how its cluster was built. Editing one of them invalidates every entry.
SHAPING_SOURCES = (
    "dcnlab/cluster",
    "dcnlab/fleet/libvirt/domainxml.py",
    "dcnlab/fleet/fleet.py",
    "dcnlab/ready/cluster.py",
    "dcnlab/ready/store.py",
    "dcnlab/fleet/seed.py",
    "dcnlab/fleet/spec.py",
)
ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[str], None]


def ready_dir() -> Path:
    return paths.cache_dir() / "ready"


def sources_digest(root: Path = ROOT, sources: Iterable[str] = SHAPING_SOURCES) -> str:
    """sha256 over the shaping sources' paths and bytes (``.py`` files only)."""
    h = hashlib.sha256()
    for source in sources:
        p = root / source
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def _running_sources_digest() -> str:
    # Read once per process: it describes the code that runs, which an edit
    # made meanwhile does not change (and each key lookup re-read every file).
    return sources_digest()


def _without_lines(value: Any) -> Any:
    """A spec as plain data, minus what does not shape the cluster: source line
    numbers and the file's path."""
    if isinstance(value, dict):
        return {k: _without_lines(v) for k, v in value.items() if k not in ("line", "path", "thresholds")}
    if isinstance(value, (list, tuple)):
        return [_without_lines(v) for v in value]
    return value


def spec_digest(spec: ClusterSpec) -> str:
    data = _without_lines(dataclasses.asdict(spec))
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReadyKey:
    """What a cached state was made from; ``digest`` names its directory."""

    parts: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.parts).encode()).hexdigest()[:20]

    def as_dict(self) -> dict[str, str]:
        return dict(self.parts)


def ready_key(
    *,
    image: BuiltImage,
    fleet: FleetSpec,
    cluster: ClusterSpec,
    domain_type: str,
    hypervisor_versions: str,
    sources: str | None = None,
) -> ReadyKey:
    """The key of the cluster-ready state for these inputs (pure but for the
    sources digest, which reads this checkout's files unless given)."""
    parts = (
        ("format", str(FORMAT)),
        ("image", f"{image.recipe}-{image.digest}"),
        ("image_disk", str(image.disk)),
        (
            "fleet",
            f"nodes={fleet.nodes} networks={fleet.networks} vcpus={fleet.vcpus} "
            f"memory_mib={fleet.memory_mib} subnet={fleet.subnet} firmware={fleet.firmware} "
            f"identity={fleet.identity}",
        ),
        ("cluster_spec", spec_digest(cluster)),
        ("domain_type", domain_type),
        ("hypervisor", hypervisor_versions),
        ("harness", sources if sources is not None else _running_sources_digest()),
    )
    return ReadyKey(parts)


@dataclass(frozen=True)
class SavedNode:
    name: str
    index: int
    uuid: str
    macs: tuple[str, ...]


@dataclass(frozen=True)
class ReadyState:
    """One cache entry: a converged cluster's saved nodes."""

    path: Path
    key: dict[str, str]
    nodes: tuple[SavedNode, ...]
    saved_at: float  # wall clock, seconds since the epoch
    saved_by: str  # the fleet that saved it (for messages)
    seconds_to_save: float

    def save_image(self, node: str) -> Path:
        return self.path / f"{node}.save"

    def disk(self, node: str) -> Path:
        return self.path / f"{node}.qcow2"

    @property
    def ssh_key(self) -> Path:
        return self.path / KEY_FILE

    @property
    def fence_key(self) -> Path:
        return self.path / FENCE_KEY_FILE

    def node(self, name: str) -> SavedNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ProvisionError(f"cached state {self.path} has no node {name}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": self.key,
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
            "saved_at": self.saved_at,
            "saved_by": self.saved_by,
            "seconds_to_save": self.seconds_to_save,
        }

    @classmethod
    def load(cls, path: Path) -> ReadyState | None:
        """The entry in ``path``, or None when it is absent, of another
        format, or missing a file (a half-written or half-removed entry)."""
        try:
            data = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        try:
            nodes = tuple(SavedNode(n["name"], int(n["index"]), n["uuid"], tuple(n["macs"])) for n in data["nodes"])
            state = cls(
                path,
                dict(data["key"]),
                nodes,
                float(data["saved_at"]),
                str(data["saved_by"]),
                float(data["seconds_to_save"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        needed = [state.ssh_key] + [f for n in nodes for f in (state.save_image(n.name), state.disk(n.name))]
        if not all(f.is_file() for f in needed):
            return None
        return state


def lookup(key: ReadyKey) -> ReadyState | None:
    state = ReadyState.load(ready_dir() / key.digest)
    if state is not None and state.key != key.as_dict():
        return None  # a digest collision, or a hand-edited entry: not ours to trust
    if state is not None:
        os.utime(state.path / MANIFEST)  # recently used: evicted last
    return state


def lookup_since(key: ReadyKey, since: float) -> ReadyState | None:
    """The entry for ``key`` if it was saved at or after ``since`` (wall clock):
    with ``--dcn-ready-cache refresh``, what another session of the same run
    (an xdist worker) saved is fresh; an older entry is what refresh replaces."""
    state = lookup(key)
    return state if state is not None and state.saved_at >= since else None


# How long a session waits for another to build the entry it needs (a cold
# build of the default cluster takes about two minutes under TCG; the build
# has deadlines of its own, and a builder that dies releases the lock at once).
BUILD_WAIT = 1800.0


@contextlib.contextmanager
def building(key: ReadyKey, progress: Progress, timeout: float = BUILD_WAIT) -> Iterator[None]:
    """Hold the right to build the entry for ``key``: a second session with the
    same inputs (the other pytest-xdist worker, another run) waits here, then
    restores what the first saved instead of building the same cluster beside
    it. An flock on ``.KEY.lock`` in the cache: the kernel drops it when its
    holder dies. The empty lock files stay (removing one could let two
    sessions hold the "same" lock); ``dcnlab ready clear`` removes them."""
    root = ready_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{key.digest}.lock"
    with path.open("a") as f:
        if not _try_lock(f):
            progress(f"another session is building the cluster-ready state {key.digest[:12]}: waiting to restore it")
            wait_until(
                lambda: _try_lock(f),
                timeout=timeout,
                interval=2.0,
                what=(
                    f"another session to finish building the cluster-ready state {key.digest[:12]} (lock {path}; "
                    f"`fuser {path}` names it; --dcn-ready-cache off builds without the cache)"
                ),
            )
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clear_locks() -> list[Path]:
    """Remove the lock files no session holds (``dcnlab ready clear``)."""
    removed = []
    for path in ready_dir().glob(".*.lock"):
        with path.open("a") as f:
            if _try_lock(f):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _try_lock(f: IO[str]) -> bool:
    """Take ``f``'s exclusive flock if no one holds it."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def entries() -> list[ReadyState]:
    found = [ReadyState.load(p) for p in sorted(ready_dir().glob("*")) if p.is_dir() and not p.name.startswith(".")]
    return [s for s in found if s is not None]


def remove(state_path: Path) -> None:
    shutil.rmtree(state_path, ignore_errors=True)


def discard(state: ReadyState, err: Exception, progress: Progress) -> None:
    """Remove an entry that failed to restore or to pass the health check,
    saying why: the caller builds the cluster instead."""
    remove(state.path)
    progress(f"the cached cluster-ready state {state.path.name} failed, removed it; building instead: {err}")


def evict(keep: int = KEEP) -> list[Path]:
    """Remove all but the ``keep`` most recently used entries, and leftovers
    of saves that did not finish."""
    root = ready_dir()
    if not root.is_dir():
        return []
    removed = []
    for tmp in root.glob(".*.tmp"):
        if time.time() - tmp.stat().st_mtime > 3600:  # not a save running now
            remove(tmp)
            removed.append(tmp)
    live = sorted(entries(), key=lambda s: (s.path / MANIFEST).stat().st_mtime, reverse=True)
    for state in live[keep:]:
        remove(state.path)
        removed.append(state.path)
    return removed


def save(fleet: Fleet, key: ReadyKey, fence_key: Path | None, progress: Progress) -> ReadyState:
    """Save ``fleet``'s converged cluster as the entry for ``key``, then bring
    the fleet back from it (the session goes on with the very state that was
    cached, so the first restore is tested at once).

    All domains are paused first, so the saved nodes agree on the cluster's
    state; each is then saved (which stops it) and its overlay copied while
    no QEMU writes to it. When anything fails, the nodes already saved come
    back from their save images and the entry is not written.
    """
    require(fleet.machines, SNAPSHOTS, "saving a converged cluster")
    t0 = time.monotonic()
    root = ready_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key.digest}.{fleet.record.run_id}.tmp"
    tmp.mkdir()
    nodes = list(fleet.nodes.values())
    stopped: list[str] = []  # saved, hence no longer running
    try:
        uuids = [fleet.machines.uuid(n.domain) for n in nodes]
        progress(f"fleet {fleet.name}: saving the converged cluster to the ready-state cache ({root})")
        fleet.suspend_all()  # its SSH sessions would not survive the save either
        saved = []
        for node, uuid in zip(nodes, uuids, strict=True):
            try:
                fleet.machines.save(node.domain, tmp / f"{node.name}.save")
            except HypervisorError as err:
                raise ProvisionError(f"cannot save {node.name}: {err}") from err
            stopped.append(node.name)
            copy_disk(fleet.run_dir / "disks" / f"{node.name}.qcow2", tmp / f"{node.name}.qcow2")
            macs = tuple(n.mac for n in node.plan.nics)
            saved.append(SavedNode(node.name, node.plan.index, uuid, macs))
        _copy_secret(fleet.run_key, tmp / KEY_FILE)
        if fence_key is not None:
            _copy_secret(fence_key, tmp / FENCE_KEY_FILE)
        state = ReadyState(tmp, key.as_dict(), tuple(saved), time.time(), fleet.name, round(time.monotonic() - t0, 2))
        (tmp / MANIFEST).write_text(json.dumps(state.to_dict(), indent=1))
        # Back from the files just written: the first restore of the entry is
        # this session's own, before anyone else can find it.
        resume_saved(fleet, state, same_fleet=True)
        stopped = []
    except BaseException:
        try:
            _bring_back(fleet, tmp, stopped)
        finally:
            remove(tmp)
        raise
    final = root / key.digest
    if final.exists():
        # Replaced (refresh, or a concurrent builder): moved aside first, so
        # the entry is never half there; a restore that opened its files keeps them.
        old = root / f".{key.digest}.{fleet.record.run_id}.old.tmp"
        os.rename(final, old)
        remove(old)
    os.rename(tmp, final)
    evict()
    return dataclasses.replace(state, path=final)


def _bring_back(fleet: Fleet, tmp: Path, stopped: list[str]) -> None:
    """After a failed save: restore the nodes already saved from their images
    in ``tmp``, and resume the ones still paused."""
    for name in stopped:
        domain = fleet.node(name).domain
        if fleet.machines.state(domain) in ("shut-off", "crashed"):
            fleet.machines.restore(domain, tmp / f"{name}.save", as_defined=False)
    fleet.ensure_running()


def resume_saved(fleet: Fleet, state: ReadyState, *, same_fleet: bool) -> float:
    """Restore every node of ``fleet`` from ``state`` paused, then resume them
    together and set their clocks. Returns the seconds from the first restore
    to the last resume. With ``same_fleet`` the domains are the ones that were
    saved; otherwise :meth:`Fleet.up` defined them for this fleet first."""
    t0 = time.monotonic()
    require(fleet.machines, SNAPSHOTS, "restoring a cached cluster")
    for node in fleet.nodes.values():
        try:
            fleet.machines.restore(node.domain, state.save_image(node.name), as_defined=not same_fleet)
        except HypervisorError as err:
            raise ProvisionError(
                f"cannot restore {node.name} from the cached state {state.path}: {err}\n"
                f"Remove the entry (`dcnlab ready clear`) and the next run builds the cluster again."
            ) from err
    for node in fleet.nodes.values():
        fleet.machines.power(node.domain, "resume")
    return time.monotonic() - t0


def rekey(fleet: Fleet, old_key: Path) -> None:
    """Make the restored guests accept this run's SSH key and no other: the
    old key (the saving run's) writes the new public key over authorized_keys."""
    public = fleet.run_key.with_name(fleet.run_key.name + ".pub").read_text().strip() + "\n"
    old = dataclasses.replace(fleet.access, key=old_key)
    nodes = [Node(n.plan, old) for n in fleet.nodes.values()]
    # The clock first (sshd and pacemaker read it), the key second, in one
    # call: each is an SSH round trip under TCG. set_clocks is not needed after.
    script = (
        "umask 077 && mkdir -p /root/.ssh && "
        "cat > /root/.ssh/authorized_keys.dcnlab-tmp && mv -f /root/.ssh/authorized_keys.dcnlab-tmp "
        "/root/.ssh/authorized_keys"
    )
    scale = fleet.accel.scale

    def give_key(node: Node) -> None:
        # A guest just resumed can drop the first session it is offered
        # (paramiko: "No existing session", seen under TCG with two fleets
        # restoring at once): try again until the deadline, as a boot's SSH
        # wait does, rather than call the cached state broken.
        def connected() -> bool:
            node.connect()
            return True

        wait_until(
            connected,
            timeout=60 * scale,
            what=f"{node.name} to accept an SSH session with the saved state's key",
            interval=2.0,
        )
        run_with_clock(node, script, public, 60 * scale)

    try:
        on_each(
            nodes,
            give_key,
            label=lambda node: node.name,
            what="giving the restored guests this run's SSH key",
            error=ProvisionError,
        )
    finally:
        for node in nodes:
            node.close()


@dataclasses.dataclass(frozen=True)
class Restore:
    """Nodes restored from ``state`` (a :class:`dcnlab.fleet.fleet.NodeSource`): each domain
    defined with its saved UUID on a copy of its saved disk, all restored paused and
    resumed together, then handed this run's SSH key. ``before_resume`` runs while they
    are still paused (start what they will talk to first)."""

    state: ReadyState
    before_resume: Callable[[Fleet], None] | None = None

    def describe(self) -> str:
        return f"the cached cluster-ready state saved by fleet {self.state.saved_by}"

    def bring_up(self, fleet: Fleet, plans: Sequence[NodePlan]) -> None:
        state = self.state
        t0 = time.monotonic()
        for plan in plans:
            saved = state.node(plan.name)
            macs = tuple(nic.mac for nic in plan.nics)
            if macs != saved.macs:  # the key rules this out; a hand-made entry might not
                raise ProvisionError(
                    f"cached state {state.path}: {plan.name} was saved with MACs {', '.join(saved.macs)}, "
                    f"this fleet plans {', '.join(macs)}"
                )
            disk = fleet.run_dir / "disks" / f"{plan.name}.qcow2"
            copy_disk(state.disk(plan.name), disk)
            fleet.define_node(plan, disk, uuid=saved.uuid)
        fleet.timings["define_start"] = time.monotonic() - t0
        if self.before_resume is not None:
            self.before_resume(fleet)
        fleet.timings["restore"] = resume_saved(fleet, state, same_fleet=False)
        fleet.progress(
            f"fleet {fleet.name}: {len(plans)} node(s) restored and resumed; handing them this run's SSH key"
        )
        rekey(fleet, state.ssh_key)
        fleet.wait_for_ssh(list(fleet.nodes.values()), t0, "waiting for SSH with this run's key")


def copy_disk(src: Path, dst: Path) -> None:
    # cp keeps the overlay sparse, and reflinks where the filesystem can.
    run_local(["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)], timeout=600)


def _copy_secret(src: Path, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
