import os
import subprocess
import time

import pytest

from dcnlab.core.errors import CommandError, WaitTimeout
from dcnlab.core.owner import ProcessId, RunRecord
from dcnlab.core.proc import run_local
from dcnlab.core.wait import Deadline, wait_until


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([None, 0, "ready"])
    assert wait_until(lambda: next(calls), timeout=5, what="x", interval=0.01) == "ready"


def test_wait_until_names_the_condition_and_last_error() -> None:
    def boom() -> bool:
        raise ConnectionRefusedError("refused")

    with pytest.raises(WaitTimeout, match=r"for dcn1 to answer.*ConnectionRefusedError: refused"):
        wait_until(boom, timeout=0.2, what="dcn1 to answer", interval=0.05)


def test_wait_until_shares_a_deadline() -> None:
    deadline = Deadline.after(0.1)
    start = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout=deadline, what="never", interval=0.01)
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout=deadline, what="never again", interval=0.01)
    assert time.monotonic() - start < 2


def test_run_local_returns_result_and_raises_with_it() -> None:
    ok = run_local(["sh", "-c", "echo hi"], timeout=10)
    assert ok.stdout == "hi\n"
    assert ok.exit_code == 0
    with pytest.raises(CommandError) as info:
        run_local(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    result = info.value.result
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")  # type: ignore[attr-defined]
    assert "exited 3" in str(info.value)


def test_run_local_timeout_and_missing_program() -> None:
    with pytest.raises(CommandError, match="did not finish within 0s"):
        run_local(["sleep", "5"], timeout=0.2)
    with pytest.raises(CommandError, match="not installed"):
        run_local(["dcnlab-no-such-program"], timeout=5)


def test_process_identity_survives_pid_reuse() -> None:
    me = ProcessId.me()
    assert me.alive()
    assert not ProcessId(me.pid, me.start + 1).alive()  # same PID, other process
    child = subprocess.Popen(["sleep", "0"])
    pid = ProcessId.of(child.pid)
    child.wait()
    assert pid is None or not pid.alive()


def test_abandoned_means_not_kept_and_owner_gone(tmp_path: object) -> None:
    me = ProcessId.me()
    dead = ProcessId(me.pid, me.start + 1)
    base = {"name": "t", "run_id": "t-1", "created": 0.0}
    assert RunRecord(**base, owner=dead, persistent=False).abandoned()  # type: ignore[arg-type]
    assert not RunRecord(**base, owner=me, persistent=False).abandoned()  # type: ignore[arg-type]
    assert not RunRecord(**base, owner=None, persistent=True).abandoned()  # type: ignore[arg-type]


def test_run_record_round_trips(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    rec = RunRecord(name="t", run_id="t-1", created=1.0, owner=ProcessId.me(), persistent=False, nodes=[1, 2])
    rec.save(Path(tmp_path))
    again = RunRecord.load(Path(tmp_path))
    assert again == rec


def test_wait_until_gives_up_at_once_on_a_fatal_error() -> None:
    def dead() -> bool:
        raise LookupError("the domain is shut off")

    start = time.monotonic()
    with pytest.raises(LookupError):
        wait_until(dead, timeout=30, what="never", interval=0.01, give_up_on=(LookupError,))
    assert time.monotonic() - start < 5
