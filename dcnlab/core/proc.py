"""The one way to run a local command: argument lists, always a timeout, and a
result object that is raised with the failure when the command fails."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcnlab.core.errors import CommandError


@dataclass(frozen=True)
class Result:
    """What a finished command did. Shared by local and on-node commands."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    where: str = "local"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        def tail(text: str) -> str:
            lines = text.strip().splitlines()
            return "\n".join(lines[-15:]) if lines else "(empty)"

        return (
            f"[{self.where}] `{self.command}` exited {self.exit_code} after {self.duration:.1f}s\n"
            f"--- stdout (tail) ---\n{tail(self.stdout)}\n--- stderr (tail) ---\n{tail(self.stderr)}"
        )


def netns_prefix(netns: str | None) -> list[str]:
    """Argv prefix that runs a command inside a network namespace (or not)."""
    return ["ip", "netns", "exec", netns] if netns else []


def run_local(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    check: bool = True,
    netns: str | None = None,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    """Run ``argv`` on this machine (optionally inside ``netns``).

    Raises :class:`CommandError` when ``check`` and the exit code is non-zero,
    and always when the command outlives ``timeout`` seconds or cannot start.
    """
    full = [*netns_prefix(netns), *(str(a) for a in argv)]
    text = shlex.join(full)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
            # A terminal's Ctrl-C reaches the harness alone, which decides what
            # to finish (a teardown completes its steps: dcnlab.core.interrupts);
            # were we interrupted meanwhile, subprocess.run kills the child.
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        errout = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        result = Result(text, -1, out, errout, time.monotonic() - start)
        raise CommandError(f"`{text}` did not finish within {timeout:.0f}s", result) from err
    except FileNotFoundError as err:
        result = Result(text, 127, "", str(err), time.monotonic() - start)
        raise CommandError(
            f"`{full[0]}` is not installed (needed for `{text}`); run the set-up command from README.md",
            result,
        ) from err
    result = Result(text, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if check and not result.ok:
        raise CommandError(result.describe(), result)
    return result
