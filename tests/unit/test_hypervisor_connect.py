"""What a refused connection to the embedded libvirtd is reported as: a dead
daemon (HypervisorExited) once its process is seen gone, even when it is
seen gone a moment after the refusal; a live daemon's refusal as it is.
Real processes stand in for libvirtd; nothing listens on the socket."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from dcnlab.core.errors import HypervisorError
from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor, HypervisorExited, check_socket_path


def _hv(tmp_path: Path, pid: int) -> EmbeddedHypervisor:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "libvirtd.pid").write_text(f"{pid}\n")
    return EmbeddedHypervisor(tmp_path, "dcnlab-t")


def test_a_daemon_that_dies_just_after_refusing_is_reported_dead(tmp_path: Path) -> None:
    # Still alive when the connection is refused, dead 0.3 s later: the
    # window CI hit between SIGKILL closing the sockets and the exit.
    with subprocess.Popen(["sleep", "0.3"]) as daemon:
        hv = _hv(tmp_path, daemon.pid)
        t0 = time.monotonic()
        with pytest.raises(HypervisorExited, match=r"the embedded libvirtd \(namespace dcnlab-t\) is gone"):
            hv.connect()
        assert time.monotonic() - t0 < 2.0


def test_a_live_daemon_that_refuses_is_not_reported_dead(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as daemon:
        try:
            hv = _hv(tmp_path, daemon.pid)
            with pytest.raises(HypervisorError, match=r"cannot reach libvirt at .*libvirt-sock") as err:
                hv.connect()
            assert not isinstance(err.value, HypervisorExited)
        finally:
            daemon.kill()


def test_a_socket_path_too_long_for_unix_is_refused_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCNLAB_STATE", str(tmp_path))
    check_socket_path(Path("/s") / "fleets" / "f" / "hv")  # short: fine
    root = Path("/" + "d" * 100) / "fleets" / "f" / "hv"
    with pytest.raises(HypervisorError) as err:
        check_socket_path(root)
    message = str(err.value)
    assert f"{root}/run/libvirt-sock: {len(str(root)) + 17} bytes" in message
    assert "at most 107" in message
    assert (
        f"Set DCNLAB_STATE to a shorter directory (each fleet's hypervisor lives under it; now {tmp_path})" in message
    )
