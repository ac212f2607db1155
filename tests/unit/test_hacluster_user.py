"""The hacluster user made settable before its password is set: on
rpm-ostree images it lives in /usr/lib/passwd (nss-altfiles), where chpasswd
cannot reach it. The script runs here on scratch trees (ETC, LIB)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dcnlab.cluster.pcs import HACLUSTER_TO_ETC_SH, hacluster_password_step
from dcnlab.fleet.spec import FleetSpec

LINE = "hacluster:x:189:189:cluster user:/var/lib/pacemaker:/sbin/nologin"


def run(tmp_path: Path, etc_passwd: str, lib_passwd: str | None) -> subprocess.CompletedProcess[str]:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    (etc / "passwd").write_text(etc_passwd)
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    if lib_passwd is not None:
        (lib / "passwd").write_text(lib_passwd)
    env = {**os.environ, "ETC": str(etc), "LIB": str(lib)}
    return subprocess.run(["sh", "-c", HACLUSTER_TO_ETC_SH], env=env, capture_output=True, text=True, check=False)


def test_an_rpm_ostree_user_is_copied_to_etc_with_a_locked_shadow_entry(tmp_path: Path) -> None:
    result = run(tmp_path, "root:x:0:0::/root:/bin/bash\n", f"bin:x:1:1::/:/sbin/nologin\n{LINE}\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/passwd").read_text().splitlines()[-1] == LINE
    shadow = (tmp_path / "etc/shadow").read_text().splitlines()[-1]
    assert shadow.startswith("hacluster:!:")  # locked until chpasswd sets it
    # Run again (a node rebuilt, a second set-up): nothing is added twice.
    env = {**os.environ, "ETC": str(tmp_path / "etc"), "LIB": str(tmp_path / "lib")}
    subprocess.run(["sh", "-c", HACLUSTER_TO_ETC_SH], env=env, check=True)
    assert (tmp_path / "etc/passwd").read_text().count("hacluster:") == 1
    assert (tmp_path / "etc/shadow").read_text().count("hacluster:") == 1


def test_a_classic_image_is_left_as_it_is(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    result = run(tmp_path, f"root:x:0:0::/root:/bin/bash\n{LINE}\n", None)
    assert result.returncode == 0, result.stderr
    assert (etc / "passwd").read_text().count("hacluster:") == 1
    # Its shadow entry is what chpasswd changes; one without gets a locked one.
    before = "root:*:19000:0:99999:7:::\nhacluster:!:19000::::::\n"
    (etc / "shadow").write_text(before)
    env = {**os.environ, "ETC": str(etc), "LIB": str(tmp_path / "lib")}
    subprocess.run(["sh", "-c", HACLUSTER_TO_ETC_SH], env=env, check=True)
    assert (etc / "shadow").read_text() == before


def test_no_hacluster_anywhere_says_what_is_missing(tmp_path: Path) -> None:
    result = run(tmp_path, "root:x:0:0::/root:/bin/bash\n", "bin:x:1:1::/:/sbin/nologin\n")
    assert result.returncode == 3
    assert "no hacluster user in" in result.stderr
    assert "is pacemaker installed?" in result.stderr


def test_the_password_goes_on_stdin_never_in_argv() -> None:
    step = hacluster_password_step(FleetSpec(name="t1").plan().node(1, networks=2), "s3cret")
    assert "s3cret" not in " ".join(step.argv)
    assert step.stdin == "s3cret\n"
    assert step.argv[2].startswith(HACLUSTER_TO_ETC_SH)
    assert "chpasswd" in step.argv[2]
