"""The per-run SSH private key and the hacluster password never reach what
the harness writes for people to read: the timing report, the Allure results'
metadata, the post-mortem logs of a fault test, ``fleet status``, the
ssh_config, progress lines, and a failed command's pytest report.

The report writers run on a real :class:`Fleet` object whose hypervisor and
node connections are stand-ins: no libvirt, no guest, no network.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import libvirt
import pytest

from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.core.keys import generate_key
from dcnlab.core.owner import RunRecord
from dcnlab.fleet.accel import Accel
from dcnlab.fleet.fleet import Fleet, image_to_dict
from dcnlab.fleet.spec import FleetSpec
from dcnlab.image.builder import BuiltImage
from dcnlab.observe.artifacts import collect_logs
from dcnlab.report.allure_report import write_results_metadata
from dcnlab.report.environment import environment_of
from dcnlab.report.timing import CaseRecord, RunReport
from tests.robustness.sandbox import PYTEST

NODES = 2


class NoDomains:
    """A libvirt connection that knows no domain (every node reads as absent)."""

    def isAlive(self) -> bool:
        return True

    def lookupByName(self, name: str) -> object:
        message = f"Domain not found: no domain with matching name '{name}'"
        err = libvirt.libvirtError(message)
        # What libvirt attaches to a real one (virGetLastError's tuple): the code says "no such domain".
        err.err = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU, message, libvirt.VIR_ERR_ERROR)
        raise err


class StandInHypervisor:
    uri = "qemu:///system?socket=/nonexistent/dcnlab-robustness/libvirt-sock"
    # Were a real SSH attempted anyway, it would fail entering this namespace.
    netns: str | None = "dcnlab-robustness-no-such-namespace"

    def connect(self) -> NoDomains:
        return NoDomains()


class CannedShell:
    """Stands in for a node's fabric Connection: answers from a table."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def run(self, cmd: str, **_kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(exited=0, stdout=self.answers.get(cmd, ""), stderr="")

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Secrets:
    private_key: str  # the PEM text
    password: str

    def needles(self) -> dict[str, str]:
        """Every form a secret could take in a file: the key's PEM and each of
        its base64 lines, the password as is and base64 (as on the kernel line)."""
        body = [line for line in self.private_key.splitlines() if line and not line.startswith("-----")]
        found = {"private key (PEM)": self.private_key.strip()}
        found.update({f"private key line {i}": line for i, line in enumerate(body) if len(line) >= 16})
        found["hacluster password"] = self.password
        found["hacluster password (base64)"] = base64.b64encode(self.password.encode()).decode()
        return found


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Fleet, Secrets, list[str]]:
    """A fleet of two nodes as Fleet.up leaves it (run record, per-run key,
    hacluster password, console logs), behind stand-ins; and the progress lines."""
    monkeypatch.setenv("DCNLAB_STATE", str(tmp_path / "state"))
    spec = FleetSpec(name="secrets", nodes=NODES, networks=2)
    run_dir = tmp_path / "state" / "fleets" / spec.name
    run_dir.mkdir(parents=True)
    image = BuiltImage("dcn-debian", "0123456789abcdef", tmp_path / "disk.qcow2", None, None, "root=/dev/vda", 0.0)
    record = RunRecord.new(
        spec.name,
        uri=StandInHypervisor.uri,
        embedded=False,
        spec=asdict(spec),
        image=image_to_dict(image),
        nodes=list(range(1, NODES + 1)),
    )
    record.save(run_dir)
    progress: list[str] = []
    fleet = Fleet(record, run_dir, StandInHypervisor(), image, Accel("tcg", "stand-in"), progress.append)
    # What Fleet._create writes, the same way.
    generate_key(fleet.access.key, f"dcnlab-{record.run_id}")
    password = "Pw-" + base64.urlsafe_b64encode(os.urandom(18)).decode()
    (run_dir / "hacluster.pw").write_text(password)
    (run_dir / "hacluster.pw").chmod(0o600)
    (run_dir / "logs").mkdir()
    for name, node in fleet.nodes.items():
        # A console log as dcnlab-identity leaves it (it announces, never echoes, the secrets).
        fleet.console_log(name).write_text(
            f"[  OK  ] Reached target network.target\ndcnlab-identity: installed root's authorized key\n"
            f"dcnlab-identity: set the hacluster password\n{name} login:\n"
        )
        shell = CannedShell({"cat /etc/os-release": "ID=debian\nVERSION_ID=12\n"})
        node._connections.update({net: shell for net in range(spec.networks)})
    fleet._write_ssh_config()
    secrets = Secrets(fleet.access.key.read_text(), password)
    return fleet, secrets, progress


def test_secret_files_are_private(fleet: tuple[Fleet, Secrets, list[str]]) -> None:
    f, _secrets, _progress = fleet
    assert f.access.key.stat().st_mode & 0o777 == 0o600
    assert (f.run_dir / "hacluster.pw").stat().st_mode & 0o777 == 0o600


def test_report_files_hold_no_secret(fleet: tuple[Fleet, Secrets, list[str]], tmp_path: Path) -> None:
    f, secrets, progress = fleet
    written = tmp_path / "written"

    # The timing report (dcnlab-report/) with the run's environment.
    env = environment_of(f, load_spec(DEFAULT_SPEC))
    report = RunReport(environment=env)
    report.add(
        CaseRecord(
            test="suites/failover/test_failover.py::test_failover[power-off-web]",
            suite="failover",
            fault="power-off",
            workload="web",
            target="dcn1",
            repeat=0,
            passed=True,
            expected="relocated, dcn1 fenced",
            seconds={"detection": 6.1, "fencing": 8.0, "recovery": 12.2, "downtime": 14.9},
            thresholds={"detection": 30.0, "fencing": 60.0, "recovery": 90.0, "downtime": 120.0},
            findings=[],
            timeline=[],
        )
    )
    report.write(written / "dcnlab-report")
    # Allure results metadata, and the post-mortem logs a fault test keeps.
    write_results_metadata(written / "allure-results", env)
    missing = collect_logs(f, written / "logs", time.time())
    assert sorted(p.name for p in (written / "logs").iterdir()) == ["dcn1.console.log", "dcn2.console.log"]
    assert len(missing) == NODES  # no journal from an absent domain, said so
    # What the CLI prints and the user may paste: `fleet status --json`, the ssh_config.
    texts = {
        "fleet status --json": json.dumps(f.status()),
        "ssh_config": f.access.ssh_config.read_text(),
        "progress lines": "\n".join(progress),
        "teardown notes": "\n".join(missing),
    }
    texts.update({str(p.relative_to(written)): p.read_text() for p in sorted(written.rglob("*")) if p.is_file()})
    assert "environment.properties" in "".join(texts), "the Allure environment was not written"

    leaks = [
        f"{what} in {where}" for where, text in texts.items() for what, s in secrets.needles().items() if s in text
    ]
    assert leaks == []
    assert str(f.access.key) in texts["ssh_config"]  # the key's path is there, its content is not


def test_a_failed_command_fed_a_secret_does_not_show_it(tmp_path: Path) -> None:
    """``pcs host auth`` gets the password on stdin. When it fails under
    pytest, the report (terminal, junit XML, Allure's trace) must not print the
    arguments of ``Node.run``, which hold it."""
    secret = "Pw-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    (tmp_path / "pw").write_text(secret)
    (tmp_path / "test_auth.py").write_text(
        "from pathlib import Path\n"
        "from types import SimpleNamespace\n\n"
        "from dcnlab.cluster.pcs import host_auth_step\n"
        "from dcnlab.fleet.node import Access, Node\n"
        "from dcnlab.fleet.spec import FleetSpec\n\n\n"
        "class Refusing:\n"
        "    def run(self, cmd, **kwargs):\n"
        "        return SimpleNamespace(exited=1, stdout='', stderr='Error: Unable to authenticate dcn1')\n\n"
        "    def close(self):\n"
        "        pass\n\n\n"
        "def test_auth():\n"
        "    plan = FleetSpec(name='secrets', nodes=1, networks=1).plan().node(1, 1)\n"
        "    node = Node(plan, Access(None, Path('/nonexistent/key'), Path('/nonexistent/ssh_config')))\n"
        "    node._connections[0] = Refusing()\n"
        "    step = host_auth_step([plan], Path(__file__).with_name('pw').read_text())\n"
        "    node.run(list(step.argv), timeout=5, stdin=step.stdin)\n"
    )
    for style in (["--tb=auto"], ["--tb=long", "--showlocals"]):
        junit = tmp_path / "junit.xml"
        result = subprocess.run(
            [PYTEST, "-p", "no:cacheprovider", "-q", "test_auth.py", f"--junitxml={junit}", *style],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Unable to authenticate dcn1" in result.stdout, result.stdout  # the failure itself is reported
        assert secret not in result.stdout + result.stderr, f"the password is in the pytest report ({style})"
        assert secret not in junit.read_text(), f"the password is in the junit XML ({style})"


def test_hacluster_password_is_not_on_the_kernel_command_line(fleet: tuple[Fleet, Secrets, list[str]]) -> None:
    f, secrets, _progress = fleet
    cmdline = f.kernel_cmdline(f.nodes["dcn1"].plan)
    assert secrets.needles()["hacluster password (base64)"] not in cmdline
