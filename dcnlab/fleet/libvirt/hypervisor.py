"""Where fleets run: the embedded hypervisor (default) or an existing one.

The embedded hypervisor is a private libvirtd + virtlogd pair started inside a
network namespace created for the run (see :mod:`dcnlab.fleet.libvirt.hvsupervisor`). The
host reaches libvirtd over its unix socket, which lives in the run directory:
``qemu:///system?socket=RUN/hv/run/libvirt-sock``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import libvirt

from dcnlab.core import paths
from dcnlab.core.errors import CommandError, HypervisorError, WaitTimeout
from dcnlab.core.owner import ProcessId
from dcnlab.core.proc import run_local
from dcnlab.core.wait import wait_until
from dcnlab.fleet.libvirt import hvsupervisor

# libvirt prints every error to stderr by default; we raise them instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

# How long a refused connection to the embedded libvirtd waits for the daemon
# to be seen dead before it is reported as a live daemon that did not answer:
# dying takes a killed process milliseconds.
EXIT_GRACE = 2.0
REQUIRED_TOOLS = ("libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "ip", "unshare", "nc", "mount")

LIBVIRTD_CONF = """\
# dcnlab: private libvirtd, reached only by root over its own unix socket
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""
VIRTLOGD_CONF = 'log_outputs = "3:stderr"\n'
# QEMU runs as root with no security driver or cgroups: there is no systemd
# and no AppArmor here, and /dev/kvm is 0600 (docs/facts.md).
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "logd"
"""


class Hypervisor(Protocol):
    """What a fleet needs from the place it runs."""

    uri: str
    netns: str | None  # namespace from which guests are reached (None: this one)

    def connect(self) -> libvirt.virConnect: ...


@functools.cache
def hypervisor_versions() -> str:
    """libvirt's and QEMU's versions: a save image restores only into the
    QEMU (and machine type) that wrote it."""
    qemu = run_local(["qemu-system-x86_64", "--version"], timeout=30).stdout.splitlines()[0].strip()
    return f"libvirt {libvirt.getVersion()}; {qemu}"


def check_tools() -> None:
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise HypervisorError(
            f"{', '.join(missing)} not installed: run `./dev setup` (README.md) to install libvirt, QEMU and tools"
        )


CLONE_NEWNET = 0x40000000  # <sched.h>
# A remote host's connection is declared dead after INTERVAL * (COUNT + 1)
# seconds without an answer (virConnectSetKeepAlive), instead of hanging.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it: a network namespace is per thread)
    into ``netns``. Sockets it opens stay there after the thread ends."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise HypervisorError(f"cannot enter network namespace {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """libvirt's default event loop, run by a daemon thread: keepalive on a
    remote connection needs one, and it must exist before the connection opens."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run_events() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run_events, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def open_connection(
    uri: str, timeout: float = 30.0, *, netns: str | None = None, keepalive: bool = False
) -> libvirt.virConnect:
    """libvirt.open with a deadline: a remote URI can otherwise hang for minutes.

    ``netns``: open it from inside that namespace (a lab host's libvirtd
    listens on an underlay only reachable there). ``keepalive``: a remote
    connection whose host stops answering fails within seconds
    (:data:`KEEPALIVE_INTERVAL`) instead of blocking the call forever."""
    box: dict[str, object] = {}
    if keepalive:
        ensure_event_loop()

    def target() -> None:
        try:
            if netns is not None:
                enter_netns(netns)
            conn = libvirt.open(uri)
            if keepalive:
                conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
            box["conn"] = conn
        except (libvirt.libvirtError, HypervisorError) as err:
            box["err"] = err

    t = threading.Thread(target=target, name=f"libvirt-open {uri}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise HypervisorError(f"libvirt at {uri} did not answer within {timeout:.0f}s: check the URI and the host")
    if "err" in box:
        # From a namespace (a lab host): the user gave no URI, the harness did.
        check = (
            f"Check that the libvirtd it reaches through namespace {netns} runs "
            f"(`ip netns exec {netns} virsh -c '{uri}' list`)"
            if netns is not None
            else f"Check the URI and that libvirtd runs (`virsh -c '{uri}' list`), "
            "or omit the URI to use the embedded hypervisor"
        )
        raise HypervisorError(f"cannot reach libvirt at {uri}: {box['err']}. {check}")
    conn = box["conn"]
    assert isinstance(conn, libvirt.virConnect)
    return conn


class HypervisorExited(HypervisorError):
    """The embedded hypervisor ended while starting: waiting longer cannot help."""


class ExternalHypervisor:
    """A libvirt the user already runs. ``netns`` names the namespace its
    bridges live in (the harness adds nothing to it but reaches guests there)."""

    embedded = False

    def __init__(self, uri: str, netns: str | None) -> None:
        self.uri = uri
        self.netns = netns

    def connect(self) -> libvirt.virConnect:
        return open_connection(self.uri)


class EmbeddedHypervisor:
    """A private libvirtd inside a namespace this run creates and removes."""

    embedded = True

    def __init__(self, root: Path, netns: str, supervisor: ProcessId | None = None) -> None:
        self.root = root
        self.name = netns
        self.netns: str | None = netns
        self.supervisor = supervisor
        self._proc: subprocess.Popen[bytes] | None = None
        self.uri = f"qemu:///system?socket={socket_of(root)}"

    def connect(self) -> libvirt.virConnect:
        try:
            return open_connection(self.uri)
        except HypervisorError as err:
            # A killed daemon closes its sockets (connection reset) a moment
            # before it is seen dead (a zombie, or gone): CI once asked in
            # between and reported a URI to check instead of a dead daemon.
            try:
                wait_until(
                    lambda: not self.libvirtd_alive(),
                    timeout=EXIT_GRACE,
                    what="the embedded libvirtd to be seen dead",
                    interval=0.1,
                )
            except WaitTimeout:
                raise err from None
            # Not a URI to check: our own daemon is gone, and its VMs with it.
            raise HypervisorExited(
                f"the embedded libvirtd (namespace {self.name}) is gone: killed, or it crashed; "
                f"the fleet's VMs went with it. Its logs:\n{self.log_tail()}"
            ) from err

    def libvirtd_alive(self) -> bool:
        try:
            pid = int((self.root / "run" / "libvirtd.pid").read_text().strip())
        except (OSError, ValueError):
            return False
        proc = ProcessId.of(pid)
        return proc is not None and proc.alive()

    # -- life cycle ---------------------------------------------------------

    @classmethod
    def start(
        cls,
        root: Path,
        netns: str,
        run_id: str,
        on_started: Callable[[EmbeddedHypervisor], None],
        timeout: float = 90.0,
        *,
        listen_conf: str = "",
        prepare: Callable[[str], None] | None = None,
    ) -> EmbeddedHypervisor:
        """Create ``netns`` and start the daemons in it. ``on_started`` is called
        as soon as something exists that teardown must remove.

        ``listen_conf``: libvirtd.conf lines for a network listener (a lab
        host's TLS socket, :mod:`dcnlab.fleet.libvirt.lab`); libvirtd then runs
        with ``--listen``. ``prepare(netns)`` runs once the namespace exists and
        before the daemons start (the address the listener binds to)."""
        check_tools()
        check_socket_path(root)
        libvirtd_conf = LIBVIRTD_CONF + listen_conf
        for sub, text in (("libvirtd.conf", libvirtd_conf), ("virtlogd.conf", VIRTLOGD_CONF), ("qemu.conf", QEMU_CONF)):
            (root / "etc").mkdir(parents=True, exist_ok=True)
            (root / "etc" / sub).write_text(text)
        for sub, target in hvsupervisor.PRIVATE_DIRS.items():
            _copy_dir_skeleton(Path(target), root / sub)
        # libvirt 9.0 writes each bridge's MAC map here but only creates the
        # directory when it starts a dnsmasq, which our networks never need.
        (root / "lib" / "dnsmasq").mkdir(exist_ok=True)
        # Everything the supervisor needs is written first, so it enters the
        # namespace right after the namespace is made: `dcnlab gc` run for
        # another state directory removes a dcnlab-* namespace it has no run
        # for when no process is inside, and this keeps that moment to the
        # few milliseconds of starting `ip netns exec`.
        try:
            run_local(["ip", "netns", "add", netns], timeout=30)
        except CommandError as err:
            raise HypervisorError(
                f"cannot create network namespace {netns}: {err.result.stderr.strip()} "  # type: ignore[attr-defined]
                "(a fleet of this name may still exist: `dcnlab fleet down` or `dcnlab gc`)"
            ) from err
        hv = cls(root, netns)
        on_started(hv)
        if prepare is not None:
            prepare(netns)
        log = open(root / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [
            "ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "--",
            sys.executable, hvsupervisor.__file__, "--root", str(root), "--run-id", run_id,
        ]  # fmt: skip
        if listen_conf:
            argv.append("--listen")
        # Own session: a Ctrl-C in the terminal reaches the harness, which
        # destroys domains first and then stops the hypervisor in order.
        hv._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        hv.supervisor = ProcessId.of(hv._proc.pid)
        on_started(hv)

        def ready() -> bool:
            if hv._proc is not None and hv._proc.poll() is not None:
                raise HypervisorExited(f"the embedded libvirtd exited during start-up:\n{hv.log_tail()}")
            if not socket_of(root).exists():
                return False
            hv.connect().close()
            return True

        try:
            wait_until(
                ready,
                timeout=timeout,
                what=f"the embedded libvirtd in namespace {netns} to answer",
                interval=0.2,
                give_up_on=(HypervisorExited,),
            )
        except HypervisorError:
            raise
        except Exception as err:
            raise HypervisorError(f"{err}\n{hv.log_tail()}") from err
        return hv

    def start_service(self, name: str, argv: list[str]) -> None:
        """Have the supervisor start (and later stop and reap) a daemon inside
        the hypervisor's namespaces, e.g. fence_virtd. Idempotent."""
        sup = self.supervisor
        if sup is None or not sup.alive():
            raise HypervisorError(f"cannot start {name}: the embedded hypervisor is not running")
        services = self.root / hvsupervisor.SERVICES_DIR
        services.mkdir(exist_ok=True)
        tmp = services / f".{name}.tmp"
        tmp.write_text(json.dumps({"argv": argv}))
        os.replace(tmp, services / f"{name}.json")
        os.kill(sup.pid, signal.SIGUSR1)

    def service_log(self, name: str, lines: int = 15) -> str:
        path = self.root / "log" / f"{name}.out"
        if not path.exists():
            return f"(no log at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_tail(self, lines: int = 12) -> str:
        out = []
        for name in ("supervisor.log", "log/libvirtd.out", "log/virtlogd.out"):
            p = self.root / name
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {p} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def alive(self) -> bool:
        return self.supervisor is not None and self.supervisor.alive()

    def stop(self, timeout: float = 45.0) -> None:
        """Stop the daemons (the supervisor kills leftover QEMU) and delete the namespace."""
        sup = self.supervisor
        if sup is not None and sup.alive():
            os.kill(sup.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while sup.alive() and time.monotonic() < deadline:
                if self._proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(timeout=0.2)
                else:
                    time.sleep(0.2)
            if sup.alive():
                os.kill(sup.pid, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        delete_netns(self.name)


def kill_run_processes(run_dir: Path, run_id: str | None) -> list[int]:
    """SIGKILL every process of one run: those whose command line names
    ``run_dir`` (QEMU with our disks, the supervisor, ProxyCommands) and those
    whose environment carries ``DCNLAB_RUN=run_id`` (libvirtd, virtlogd; not
    looked for without a run id). Used after a crash, when the supervisor
    that would have stopped them is gone."""
    in_cmdline = (str(run_dir).rstrip("/") + "/").encode()  # ".../t1/" must not match ".../t10/"
    in_environ = f"DCNLAB_RUN={run_id}".encode() if run_id else None
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if in_cmdline in cmdline or (in_environ is not None and in_environ in environ.split(b"\0")):
            killed.append(int(entry))
    return _sigkill(killed)


def _sigkill(pids: list[int]) -> list[int]:
    """SIGKILL each of ``pids``; returns those that were still there."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def _copy_dir_skeleton(src: Path, dst: Path) -> None:
    """Recreate the directories (not the files) of the packaged libvirt tree:
    libvirtd expects some (e.g. /var/lib/libvirt/dnsmasq) to exist, while the
    files (the default network's autostart link...) must not leak in."""
    dst.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return
    for dirpath, dirnames, _files in os.walk(src):
        for d in dirnames:
            (dst / Path(dirpath).relative_to(src) / d).mkdir(exist_ok=True)


def kill_netns_processes(netns: str) -> list[int]:
    """SIGKILL every process inside ``netns``. Only for a namespace the run
    created itself: whatever runs in it is the run's, including children the
    run's owner was killed in the middle of (an ``nc`` probe of a guest's SSH
    port carries neither the run directory nor its run id)."""
    return _sigkill([pid for pid in netns_pids(netns) if pid != os.getpid()])


# sockaddr_un.sun_path holds 108 bytes on Linux, the terminating NUL included.
SOCKET_PATH_MAX = 107


def socket_of(root: Path) -> Path:
    """The embedded libvirtd's Unix socket as the host sees it (its run
    directory is ``/run/libvirt`` inside the hypervisor's mount namespace)."""
    return root / "run" / "libvirt-sock"


def check_socket_path(root: Path) -> None:
    """The host reaches the embedded libvirtd by a Unix socket under ``root``,
    whose path has a hard length limit: say so before anything starts, rather
    than wait out the start-up deadline for a socket no client can open."""
    sock = socket_of(root)
    size = len(os.fsencode(sock))
    if size > SOCKET_PATH_MAX:
        raise HypervisorError(
            f"the embedded libvirtd's socket would be {sock}: {size} bytes, and a Unix socket's path may have "
            f"at most {SOCKET_PATH_MAX}. Set DCNLAB_STATE to a shorter directory (each fleet's hypervisor lives "
            f"under it; now {paths.state_dir()}) or give the fleet a shorter name"
        )


def netns_pids(netns: str) -> list[int]:
    """The processes inside ``netns`` (none when it does not exist)."""
    if not Path(f"/run/netns/{netns}").exists():
        return []
    out = run_local(["ip", "netns", "pids", netns], timeout=30, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def delete_netns(netns: str) -> None:
    if Path(f"/run/netns/{netns}").exists():
        run_local(["ip", "netns", "del", netns], timeout=30)
