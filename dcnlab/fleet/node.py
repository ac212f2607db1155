"""One fleet node as seen from the harness: its addresses, and the one way to
run a command on it (over SSH from inside the fleet's namespace)."""

from __future__ import annotations

import functools
import io
import logging
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcnlab.core.errors import CommandError
from dcnlab.core.proc import Result, netns_prefix
from dcnlab.fleet.spec import NodePlan

if TYPE_CHECKING:
    import fabric

# paramiko's transport thread logs every failed handshake (a node busy or cut
# off: "Error reading SSH protocol banner") with its traceback at ERROR, then
# raises the same error to the caller, which reports it (the sampler as
# node_unreachable). The copies filled a failed CI run's output and hid the
# test's own message.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


@functools.cache
def _connection_class() -> type[fabric.Connection]:
    """fabric's Connection, with a deadline on opening each command's session
    channel (``session_timeout``, set by :meth:`Node.run` to the command's
    timeout). paramiko waits for the channel forever (Transport.open_channel),
    and invoke's timeout starts only once it is open: a node cut off after its
    connection was opened (a NIC cut on a cluster without fencing, which
    leaves it running) hung the harness there for good. The SFTP channel
    (:meth:`Node.put`) gets the deadline too, for its opening and each read."""
    import fabric  # deferred: importing paramiko costs ~0.3 s
    import paramiko

    class Connection(fabric.Connection):  # type: ignore[misc]
        session_timeout: float | None = None
        _sftp: Any  # fabric's memo of the SFTP client

        def create_session(self) -> Any:
            self.open()  # as fabric's @opens does
            return self.transport.open_session(timeout=self.session_timeout)

        def sftp(self) -> Any:  # fabric's, memoised the same way, on a channel with the deadline
            if self._sftp is None:
                channel = self.create_session()
                channel.settimeout(self.session_timeout)
                channel.invoke_subsystem("sftp")
                self._sftp = paramiko.SFTPClient(channel)
            return self._sftp

    return Connection


@dataclass(frozen=True)
class Access:
    """How to reach guests: the namespace, the key and ssh_config, and the
    user logged in as: root (with the run's key), or a user baked into the
    image with its key (dcnlab.image.identity.login), whose commands run as root
    through ``sudo -n``."""

    netns: str | None
    key: Path
    ssh_config: Path
    user: str = "root"

    @property
    def as_root(self) -> bool:
        return self.user == "root"

    def root_command(self, command: str) -> str:
        """``command`` as the login user runs it as root (unchanged for root):
        ``sudo -n`` fails rather than asking for a password nobody can type."""
        return command if self.as_root else f"sudo -n -H -- sh -c {shlex.quote(command)}"

    def proxy_command(self) -> str:
        # %h/%p are expanded by paramiko's SSHConfig (fabric) and by OpenSSH.
        return shlex.join([*netns_prefix(self.netns), "nc", "%h", "%p"])


class Node:
    def __init__(self, plan: NodePlan, access: Access) -> None:
        self.plan = plan
        self.access = access
        self._connections: dict[int, fabric.Connection] = {}

    def __repr__(self) -> str:
        return f"Node({self.name}, {', '.join(self.addresses)})"

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def domain(self) -> str:
        return self.plan.domain

    @property
    def addresses(self) -> list[str]:
        return [str(n.address) for n in self.plan.nics]

    def address(self, network: int = 0) -> str:
        return self.plan.address(network)

    def connection(self, network: int = 0) -> fabric.Connection:
        """A fabric Connection to this node's address on ``network``."""
        if network not in self._connections:
            import fabric  # deferred: importing paramiko costs ~0.3 s

            self._connections[network] = _connection_class()(
                host=self.address(network),
                user=self.access.user,
                # Never forward our stdin: under pytest it is a closed pseudo-file.
                config=fabric.Config(overrides={"run": {"in_stream": False}}),
                gateway=self.access.proxy_command(),
                connect_timeout=15,
                connect_kwargs={
                    "key_filename": str(self.access.key),
                    "look_for_keys": False,
                    "allow_agent": False,
                    "banner_timeout": 30,
                    "auth_timeout": 30,
                },
            )
        return self._connections[network]

    def connect(self, network: int = 0) -> None:
        """Open the SSH session now rather than at the first :meth:`run`: for
        a command whose text must be made at the last moment (the host's
        time), since opening a session to a TCG guest took ~10 s."""
        __tracebackhide__ = True
        where = f"{self.name}@{self.address(network)}"
        start = time.monotonic()
        try:
            self.connection(network).open()
        except Exception as err:  # paramiko/socket errors, as in run()
            result = Result("(ssh connect)", 255, "", f"{type(err).__name__}: {err}", time.monotonic() - start, where)
            self.close(network)
            raise CommandError(f"[{where}] cannot connect: {type(err).__name__}: {err}", result) from err

    @cached_property
    def host(self) -> Any:
        """A testinfra host for this node (paramiko backend, same ssh_config)."""
        import testinfra

        return testinfra.get_host(
            f"paramiko://{self.name}", ssh_config=str(self.access.ssh_config), sudo=not self.access.as_root
        )

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
        network: int = 0,
        stdin: str | None = None,
    ) -> Result:
        """Run ``command`` (a shell string, or an argv that is quoted for you)
        as root on this node. Raises :class:`CommandError` with the result on a
        non-zero exit (when ``check``), a timeout, or an unreachable node.
        ``stdin`` (a secret, say) is fed to the command and never logged."""
        # pytest prints the arguments of the frame that raised: this one would
        # show ``stdin`` (the hacluster password) in the report, junit XML and Allure.
        __tracebackhide__ = True
        cmd = command if isinstance(command, str) else shlex.join(command)
        where = f"{self.name}@{self.address(network)}"
        conn = self.connection(network)
        sent = self.access.root_command(cmd)
        start = time.monotonic()
        from invoke.exceptions import CommandTimedOut

        try:
            stream = io.StringIO(stdin) if stdin is not None else False
            conn.session_timeout = timeout  # the channel's opening too: see _connection_class
            res = conn.run(sent, hide=True, warn=True, timeout=timeout, in_stream=stream)
        except CommandTimedOut as err:
            result = Result(cmd, -1, err.result.stdout, err.result.stderr, time.monotonic() - start, where)
            self.close(network)
            raise CommandError(f"[{where}] `{cmd}` did not finish within {timeout:.0f}s", result) from err
        except Exception as err:  # paramiko/socket errors: the node is not reachable (yet)
            result = Result(cmd, 255, "", f"{type(err).__name__}: {err}", time.monotonic() - start, where)
            self.close(network)
            raise CommandError(f"[{where}] cannot run `{cmd}`: {type(err).__name__}: {err}", result) from err
        result = Result(cmd, res.exited, res.stdout, res.stderr, time.monotonic() - start, where)
        if res.exited == -1 and result.duration >= timeout:
            # invoke's timer closed the channel (no exit status: -1) but its
            # thread was still alive when invoke asked whether it had fired.
            self.close(network)
            raise CommandError(f"[{where}] `{cmd}` did not finish within {timeout:.0f}s", result)
        if check and not result.ok:
            raise CommandError(result.describe(), result)
        return result

    def put(self, data: bytes, path: str, mode: int = 0o600, network: int = 0) -> None:
        """Write ``data`` to ``path`` on the node over SFTP (secrets never
        appear on a command line), creating the parent directory."""
        __tracebackhide__ = True  # as in run(): ``data`` is a secret (an authkey)
        parent = path.rsplit("/", 1)[0] or "/"
        self.run(["mkdir", "-p", parent], network=network)
        # A login user cannot write root's files over SFTP: the data goes to a
        # directory only it can read, then root installs it in place.
        stage = None if self.access.as_root else f".dcnlab-put-{secrets.token_hex(6)}"
        try:
            sftp = self.connection(network).sftp()
            if stage is None:
                self.connection(network).put(io.BytesIO(data), remote=path)
                sftp.chmod(path, mode)
            else:
                sftp.mkdir(stage, 0o700)
                self.connection(network).put(io.BytesIO(data), remote=f"{stage}/data")
        except Exception as err:  # paramiko/socket errors, as in run()
            self.close(network)
            result = Result(f"put {path}", 255, "", f"{type(err).__name__}: {err}", 0.0, self.name)
            raise CommandError(f"[{self.name}] cannot write {path}: {type(err).__name__}: {err}", result) from err
        if stage is not None:
            # sudo -H: $HOME is root's, so the staged file is named from the login user's home.
            home = self.connection(network).sftp().normalize(".")
            staged = f"{home}/{stage}"
            self.run(
                f"install -m {mode:04o} {shlex.quote(staged + '/data')} {shlex.quote(path)}; "
                f"s=$?; rm -rf {shlex.quote(staged)}; exit $s",
                network=network,
            )

    def close(self, network: int | None = None) -> None:
        for net in [network] if network is not None else list(self._connections):
            conn = self._connections.pop(net, None)
            if conn is not None:
                conn.close()
