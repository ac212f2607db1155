"""The entry points a user runs, in child processes, each in a sandbox of its
own, and the checks that it failed with one clear error and left nothing.

A sandbox is a private ``DCNLAB_STATE`` and ``DCNLAB_CACHE`` plus a ``PATH``
that starts with guard programs: a ``mmdebstrap`` and a ``libvirtd`` that only
fail. A bad input that were wrongly accepted then ends in a quick error too,
instead of an image build or a hypervisor booting VMs on a shared machine.
Every process a run starts inherits the sandbox's ``DCNLAB_STATE``, which is
how a leftover daemon of that run is recognised, and nothing else's is.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dcnlab.fleet.gc import remnants
from dcnlab.fleet.libvirt.hypervisor import delete_netns, kill_run_processes

BIN = Path(sys.executable).parent  # the virtualenv the tests run in: .venv/bin
DCNLAB = str(BIN / "dcnlab")
PYTEST = str(BIN / "pytest")
CHILD_TIMEOUT = 120.0
# No libvirt answers here: a run whose bad input is wrongly accepted fails at
# connect instead of defining anything.
NOWHERE = "qemu:///system?socket=/nonexistent/dcnlab-robustness/libvirt-sock"
GUARD_MESSAGE = "dcnlab robustness guard: this test must not get this far"
BOOT_TEST = "def test_boot(fleet):\n    pass\n"

_TRACEBACK = re.compile(
    r"^Traceback \(most recent call last\)"  # Python's
    r"|^\s*File \".*\", line \d+"  # its frames
    r"|\.py:\d+: in \w+"  # pytest's short frames
    r"|^>\s",  # pytest's failing source line
    re.MULTILINE,
)


@dataclass(frozen=True)
class Sandbox:
    root: Path
    name: str  # the fleet name every run in the sandbox is given

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def guard_bin(self) -> Path:
        return self.root / "guard-bin"

    @classmethod
    def create(cls, root: Path, name: str) -> Sandbox:
        box = cls(root, name)
        box.guard_bin.mkdir(parents=True)
        for tool in ("mmdebstrap", "libvirtd"):
            guard = box.guard_bin / tool
            guard.write_text(f"#!/bin/sh\necho '{GUARD_MESSAGE} ({tool})' >&2\nexit 97\n")
            guard.chmod(0o755)
        return box

    def env(self, path: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "DCNLAB_STATE": str(self.state),
            "DCNLAB_CACHE": str(self.cache),
            "PATH": path if path is not None else f"{self.guard_bin}:{os.environ.get('PATH', '')}",
        }

    def cli(self, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
        """``dcnlab ARGS`` as a user runs it."""
        return subprocess.run(
            [DCNLAB, *args],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            env=self.env(path),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )

    def pytest(
        self, *args: str, test: str = BOOT_TEST, path: str | None = None, timeout: float = CHILD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``pytest test_boot.py ARGS`` in a directory of its own (no ini file:
        the dcnlab plugin comes from its entry point, as in a suite repository);
        ``timeout``: longer than any boot deadline the ARGS allow, and the teardown."""
        argv, suite = self._pytest_run(args, test)
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(path),
            cwd=suite,
            stdin=subprocess.DEVNULL,
        )

    def _pytest_run(self, args: tuple[str, ...], test: str, *extra: str) -> tuple[list[str], Path]:
        suite = self.root / "suite"
        suite.mkdir(exist_ok=True)
        (suite / "test_boot.py").write_text(test)
        argv = [PYTEST, "-p", "no:cacheprovider", "-q", *extra, "test_boot.py", "--dcn-name", self.name, *args]
        return argv, suite

    def spawn_pytest(self, *args: str, test: str = BOOT_TEST, path: str | None = None) -> Child:
        """Like :meth:`pytest`, but running: its output is read as it comes
        and it can be signalled as a terminal would (its process group)."""
        argv, suite = self._pytest_run(args, test, "-s")  # -s: the test's own prints come as they happen
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(path),
            cwd=suite,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as a job in a terminal
            # A foreground job's Ctrl-C: this process may run in the background
            # of a script, where SIGINT is ignored and the child would inherit that.
            preexec_fn=_default_sigint,
        )
        return Child(proc)

    def vm_path(self) -> str:
        """A PATH for runs that boot VMs: the real tools, but no image build."""
        guard = self.root / "guard-build-bin"
        if not guard.is_dir():
            guard.mkdir()
            (guard / "mmdebstrap").symlink_to(self.guard_bin / "mmdebstrap")
        return f"{guard}:{os.environ.get('PATH', '')}"

    def processes(self) -> list[int]:
        """Live processes started by a run of this sandbox (they carry its DCNLAB_STATE)."""
        marker = f"DCNLAB_STATE={self.state}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone, or a zombie
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def leaks(self) -> list[str]:
        """What runs of this sandbox left: run directories, the fleet's
        namespace, processes (libvirtd, virtlogd, hvsupervisor, QEMU...)."""
        found = remnants(self.name)  # run directory, namespace, processes naming it
        runs = self.state / "fleets"
        if runs.is_dir():
            found += [f"run directory {p}" for p in sorted(runs.iterdir()) if p.name != self.name]
        for pid in self.processes():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"process {pid}: {cmdline[:120]}")
        return found

    def clean_up(self) -> None:
        """After a failed test: remove what its runs left, and only that (never
        ``dcnlab gc``, which judges every dcnlab-* namespace on the machine)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # QEMU carries no DCNLAB_STATE (libvirtd starts it with a clean
        # environment) but names its disks in the run directory.
        kill_run_processes(self.state / "fleets" / self.name, None)
        delete_netns(f"dcnlab-{self.name}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A pytest run in progress."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, name="child-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, needle: str, timeout: float) -> str:
        """The first line (from here on) holding ``needle``."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the run ended (exit {self.proc.wait()}) before {needle!r}:\n{self.text}")
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} within {timeout:.0f}s:\n{self.text}")

    def signal(self, sig: int) -> None:
        """``sig`` to the run's process group, as a terminal sends Ctrl-C. The
        group is stopped while the signal goes out, so it lands where the run
        was when the caller saw its last line, not a moment later."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        os.killpg(self.proc.pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)

    def finish(self, timeout: float) -> int:
        """Wait for the run to end; its exit status (negative: the signal)."""
        __tracebackhide__ = True
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not end within {timeout:.0f}s:\n{self.text}") from None
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def assert_no_traceback(text: str) -> None:
    __tracebackhide__ = True
    match = _TRACEBACK.search(text)
    assert match is None, f"a traceback where a clear error was due ({match.group(0)!r}):\n{text}"


def cli_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error: exit 2 and one ``dcnlab...: error:`` message (which
    may go on over a few lines, e.g. a log tail), no traceback."""
    __tracebackhide__ = True
    assert result.returncode == 2, f"exit {result.returncode}, not 2:\n{result.stdout}\n{result.stderr}"
    assert_no_traceback(result.stderr)
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^dcnlab( [\w-]+)*: error: ", line)]
    assert len(starts) == 1, f"expected one error message:\n{result.stderr}"
    assert GUARD_MESSAGE not in result.stderr, result.stderr
    return "\n".join(lines[starts[0] :])


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """pytest's usage error: exit 4, before any fixture ran; the message line."""
    __tracebackhide__ = True
    out = result.stdout + result.stderr
    assert result.returncode == 4, f"exit {result.returncode}, not 4 (usage error):\n{out}"
    assert_no_traceback(out)
    lines = [line for line in result.stderr.splitlines() if "error: " in line or line.startswith("ERROR: ")]
    messages = [line for line in lines if not line.startswith("ERROR: usage:")]
    assert len(messages) == 1, f"expected one error message:\n{result.stderr}"
    return messages[0]


def setup_error(result: subprocess.CompletedProcess[str]) -> str:
    """A harness error in a fixture: exit 1, the test errored at setup, and
    the report is the error's message alone (no traceback into the library)."""
    __tracebackhide__ = True
    out = result.stdout + result.stderr
    assert result.returncode == 1, f"exit {result.returncode}, not 1:\n{out}"
    assert "ERROR at setup of test_boot" in result.stdout, out
    assert_no_traceback(out)
    assert GUARD_MESSAGE not in out, out
    section = result.stdout.split("ERROR at setup of test_boot", 1)[1]
    errors = [line for line in section.splitlines() if re.match(r"dcnlab\.[\w.]+: ", line)]
    assert errors, f"no harness error in the report:\n{out}"
    start = section.index(errors[0])
    return section[start:].split("\n=====", 1)[0]


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` holding ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")
