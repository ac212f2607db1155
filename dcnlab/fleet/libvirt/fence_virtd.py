"""fence_virtd, the hypervisor side of fence_virt on libvirt: its
configuration, its command line, and starting it next to the embedded
hypervisor (what :meth:`Fleet.fence_listeners` does, once per host)."""

from __future__ import annotations

import os
from pathlib import Path

from dcnlab.core.errors import ConfigError
from dcnlab.core.proc import run_local
from dcnlab.core.wait import wait_until
from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor
from dcnlab.fleet.provider import FenceEndpoint

KEY_BYTES = 4096  # the customary fence_xvm.key size (dd bs=4k count=1)


def fence_virtd_conf(*, address: str, port: int, key_file: str | Path, libvirt_uri: str) -> str:
    """fence_virt.conf for a TCP listener on ``address:port`` and the libvirt
    backend on ``libvirt_uri`` (e.g. ``qemu:///system?socket=RUN/hv/run/libvirt-sock``).

    No ``module_path``: the compiled-in plugin directory is right for the
    distribution's package (``fence_virtd -l`` lists what it finds). hash and
    auth stay at sha256 on both sides, the defaults of fence_virtd and fence_virt.
    """
    values = {"address": address, "port": str(port), "key_file": str(key_file), "uri": libvirt_uri}
    for name, value in values.items():
        # simpleconfig quotes values with '"' and has no escape for it.
        if not value or any(c in value for c in '"\n;{}'):
            raise ConfigError(f"fence_virtd {name} {value!r} cannot be written into fence_virt.conf")
    return (
        "fence_virtd {\n"
        '\tlistener = "tcp";\n'
        '\tbackend = "libvirt";\n'
        "}\n"
        "\n"
        "listeners {\n"
        "\ttcp {\n"
        f'\t\taddress = "{address}";\n'
        f'\t\tport = "{port}";\n'
        '\t\tfamily = "ipv4";\n'
        f'\t\tkey_file = "{key_file}";\n'
        "\t}\n"
        "}\n"
        "\n"
        "backends {\n"
        "\tlibvirt {\n"
        f'\t\turi = "{libvirt_uri}";\n'
        "\t}\n"
        "}\n"
    )


def fence_virtd_argv(conf: str | Path, pidfile: str | Path, *, debug: int = 0) -> list[str]:
    """Run fence_virtd as a foreground child (stop it by PID).

    ``-p`` matters: without its own pid file a second fence_virtd on the host
    finds the default one taken and exits silently, after which every fence
    fails with "No data available" (docs/facts.md). ``-w`` makes it retry while
    the fleet's libvirtd is not reachable yet instead of giving up.
    """
    argv = ["fence_virtd", "-F", "-w", "-f", str(conf), "-p", str(pidfile)]
    if debug:
        argv += ["-d", str(debug)]
    return argv


def start(
    hv: EmbeddedHypervisor,
    workdir: Path,
    gateway: str,
    port: int,
    timeout: float = 60.0,
    *,
    name: str = "fence_virtd",
) -> FenceEndpoint:
    """Start (or find running) fence_virtd listening on ``gateway:port``, its key
    and configuration in ``workdir``.

    It runs under the embedded hypervisor's supervisor: inside the fleet's
    namespaces, reaped, and stopped with the hypervisor. There ``qemu:///system``
    is the run's private libvirtd, so a guest holding the key can power off
    this fleet's domains and nothing else on the machine.
    """
    workdir.mkdir(exist_ok=True)
    key_file = workdir / "fence_xvm.key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
    # ``name`` tells apart the listeners of several hosts sharing ``workdir`` (and the key).
    conf = workdir / f"{name}.conf"
    conf.write_text(fence_virtd_conf(address=gateway, port=port, key_file=key_file, libvirt_uri="qemu:///system"))
    hv.start_service(name, fence_virtd_argv(conf, workdir / f"{name}.pid"))

    def listening() -> bool:
        probe = ["nc", "-z", "-w", "2", gateway, str(port)]
        return run_local(probe, netns=hv.netns, timeout=10, check=False).ok

    wait_until(
        listening,
        timeout=timeout,
        what=f"fence_virtd to listen on {gateway}:{port} in namespace {hv.netns}",
        interval=0.3,
        describe_failure=lambda: hv.service_log(name),
    )
    return FenceEndpoint(gateway, port, key_file.read_bytes())
