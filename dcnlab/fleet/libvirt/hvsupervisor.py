"""The embedded hypervisor's parent process: ``python -m dcnlab.fleet.libvirt.hvsupervisor``.

It is started by :mod:`dcnlab.fleet.libvirt.hypervisor` inside the fleet's network namespace
and a private mount namespace, and does three things the machine's PID 1 won't:

1. Gives libvirtd and virtlogd private state (/run/libvirt, /var/lib/libvirt,
   /etc/libvirt, ...) by bind-mounting the run's directories over them, so it
   never clashes with a system libvirtd or with another run.
2. Reaps every orphan (``PR_SET_CHILD_SUBREAPER``): QEMU is daemonised by
   libvirtd and would otherwise stay a zombie, which stalls libvirt (docs/facts.md).
3. Stops everything it started when told to (SIGTERM) or when libvirtd dies,
   killing leftover QEMU processes so nothing outlives the run.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36

# host path under the run's hv/ directory -> the path libvirt expects
PRIVATE_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
    "etc": "/etc/libvirt",
}


class Stop(Exception):
    pass


class Reload(Exception):
    """SIGUSR1: start the services described in ``ROOT/services/*.json``."""


SERVICES_DIR = "services"


def log(msg: str) -> None:
    print(f"hvsupervisor[{os.getpid()}] {msg}", file=sys.stderr, flush=True)


def bind_private_dirs(root: Path) -> None:
    for sub, target in PRIVATE_DIRS.items():
        src = root / sub
        src.mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(src), target], check=True, timeout=30)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may hold spaces or parentheses: fields after the last ')' are fixed
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def start_services(root: Path, services: dict[str, subprocess.Popen[bytes]], env: dict[str, str]) -> None:
    """Start each service file not started yet. Services (fence_virtd...) run
    here so they see the private /run/libvirt, get reaped, and stop with us."""
    for spec in sorted((root / SERVICES_DIR).glob("*.json")):
        name = spec.stem
        if name in services and services[name].poll() is None:
            continue
        argv = json.loads(spec.read_text())["argv"]
        out = open(root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - lives as long as the service
        services[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        (root / SERVICES_DIR / f"{name}.pid").write_text(str(services[name].pid))
        log(f"started service {name} pid {services[name].pid}")


def shutdown(daemons: dict[str, subprocess.Popen[bytes]]) -> None:
    me = os.getpid()
    for name in [n for n in daemons if n not in ("libvirtd", "virtlogd")] + ["libvirtd", "virtlogd"]:
        proc = daemons.get(name)
        if proc is not None and proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        reap_all()
        if all(p.poll() is not None for p in daemons.values()):
            break
        time.sleep(0.1)
    # What is left are orphans we adopted: QEMU processes whose domains were
    # not destroyed (a killed run). They belong to this run only.
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        left = children_of(me)
        if not left:
            break
        log(f"stopping {len(left)} leftover process(es) with {sig.name}: {left}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while children_of(me) and time.monotonic() < deadline:
            reap_all()
            time.sleep(0.1)
    reap_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, required=True, help="the run's hv/ directory")
    ap.add_argument("--run-id", required=True, help="owner label, for ps and dcnlab gc")
    ap.add_argument("--listen", action="store_true", help="libvirtd listens as its libvirtd.conf says (TLS)")
    args = ap.parse_args(argv)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("cannot become a child subreaper")
        return 2

    def on_signal(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    reload_pending = False
    waiting = False

    def on_reload(_signum: int, _frame: object) -> None:
        nonlocal reload_pending
        reload_pending = True
        if waiting:  # only interrupt the blocking wait, never a start-up step
            raise Reload()

    signal.signal(signal.SIGUSR1, on_reload)

    root: Path = args.root
    bind_private_dirs(root)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    env = {**os.environ, "DCNLAB_RUN": args.run_id}
    logs = root / "log"
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    status = 0
    try:
        for name in ("virtlogd", "libvirtd"):
            out = open(logs / f"{name}.out", "ab")  # noqa: SIM115 - lives as long as the daemon
            # No -d: daemons stay our children, so we see them die and reap them.
            # Their default pid files (/run/NAME.pid) are shared with the host
            # and with every other run: keep them in the private /run/libvirt.
            argv = [name, "--pid-file", f"{PRIVATE_DIRS['run']}/{name}.pid"]
            if name == "libvirtd" and args.listen:
                argv.append("--listen")
            daemons[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            log(f"started {name} pid {daemons[name].pid}")
        services: dict[str, subprocess.Popen[bytes]] = {}
        # The supervisor's whole life is this loop: it ends on a signal or when
        # a daemon dies, so it has no deadline of its own.
        while True:
            if reload_pending:
                reload_pending = False
                start_services(root, services, env)
                daemons.update({f"service:{k}": v for k, v in services.items()})
            try:
                waiting = True
                pid, code = os.waitpid(-1, 0)
            except Reload:
                continue
            finally:
                waiting = False
            for name, proc in daemons.items():
                if proc.pid == pid:
                    proc.returncode = os.waitstatus_to_exitcode(code)
                    if name.startswith("service:"):
                        log(f"{name} exited with {proc.returncode}")
                        continue
                    log(f"{name} exited with {proc.returncode}; stopping the hypervisor")
                    raise Stop(f"{name} died")
    except Stop as why:
        log(f"stopping: {why}")
        status = 0 if "SIG" in str(why) else 3
    except ChildProcessError:
        status = 3
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        shutdown(daemons)
        log("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
