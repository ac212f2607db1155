"""The local multi-host lab: several embedded hypervisors on one machine, each
a "host" in a network namespace of its own with its own libvirtd, virtlogd
and fence_virtd, joined by an underlay, driven over libvirt's remote protocol.

Topology (``docs/multihost.md``)::

    dcnlab-F.ul   underlay namespace: bridge ul0 (MTU 1550), the harness at .254
      |-- veth -- dcnlab-F     host h1: the fleet's own embedded hypervisor (unix socket)
      |-- veth -- dcnlab-F.h2  host h2: libvirtd listening on TLS at the underlay's .2
      ...
    on every host, each fleet network's bridge gets a VXLAN port (one VNI per
    network, head-end replication to every other host's underlay address).

Host 1 is where the harness reaches guests (its namespace has the gateway on
every fleet network, as a single-host fleet's has); the other hosts are
reached only over the network, from inside the underlay namespace (the
harness never opens a connection to a lab address from the machine's own
namespace). Namespaces carry the fleet's name and a suffix with a dot, which
no fleet name has, so ``dcnlab gc`` knows them as the fleet's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from dcnlab.core.errors import CommandError, HypervisorError
from dcnlab.core.owner import ProcessId
from dcnlab.core.proc import run_local
from dcnlab.fleet.hosts import (
    HARNESS_UNDERLAY_HOST,
    UNDERLAY_MTU,
    VXLAN_PORT,
    HostPlan,
    underlay_network,
    vni,
)
from dcnlab.fleet.libvirt.hypervisor import (
    EmbeddedHypervisor,
    delete_netns,
    kill_netns_processes,
    open_connection,
)
from dcnlab.fleet.spec import NetworkPlan

UNDERLAY_BRIDGE = "ul0"
HOST_UNDERLAY_DEV = "underlay"
TLS_PORT = 16514  # libvirtd's TLS port (libvirtd.conf tls_port)
CERT_DAYS = 30


def underlay_netns(fleet: str) -> str:
    return f"dcnlab-{fleet}.ul"


def host_netns(fleet: str, host: HostPlan) -> str:
    """Host 1 is the fleet's own namespace (``dcnlab-F``); host k is ``dcnlab-F.hk``."""
    return f"dcnlab-{fleet}" if host.index == 1 else f"dcnlab-{fleet}.{host.name}"


def vxlan_dev(network: int) -> str:
    return f"vx{network}"


def underlay_port(host: str) -> str:
    """The underlay bridge's end of ``host``'s veth: down, the host is cut off."""
    return f"ul{host}"


def underlay_loss_rules(percent: float) -> list[list[str]]:
    """iptables rules (after ``-A``/``-D``) that drop ``percent`` of the VXLAN
    packets a host sends and receives on the underlay, at random (the
    ``statistic`` match; tc netem is not available on these machines,
    docs/multihost.md): loss between that host and every other."""
    if not 0 < percent <= 100:
        raise HypervisorError(f"packet loss of {percent}%: give more than 0 and at most 100")
    p = f"{percent / 100:.4f}"
    match = ["-p", "udp", "--dport", str(VXLAN_PORT), "-m", "statistic", "--mode", "random", "--probability", p]
    return [
        ["OUTPUT", "-o", HOST_UNDERLAY_DEV, *match, "-j", "DROP"],
        ["INPUT", "-i", HOST_UNDERLAY_DEV, *match, "-j", "DROP"],
    ]


def _hypervisor_of(host: dict[str, Any]) -> EmbeddedHypervisor:
    """Lab host ``host``'s hypervisor, as its run record entry names it."""
    sup = host.get("supervisor")
    return EmbeddedHypervisor(Path(host["root"]), host["netns"], ProcessId(sup["pid"], sup["start"]) if sup else None)


def tls_uri(address: ipaddress.IPv4Address, pki: Path) -> str:
    """libvirt's TLS transport to a lab host; ``pki`` holds cacert.pem,
    clientcert.pem and clientkey.pem (libvirt's ``pkipath``)."""
    return f"qemu+tls://{address}/system?pkipath={pki}"


def tls_listen_conf(address: ipaddress.IPv4Address, pki: Path, host: str) -> str:
    """libvirtd.conf lines: TLS only, on the host's underlay address, client
    certificates from the lab's CA required (libvirtd.conf: listen_tls,
    listen_addr, key_file, cert_file, ca_file, tls_no_verify_certificate)."""
    return (
        "listen_tls = 1\n"
        "listen_tcp = 0\n"
        f'listen_addr = "{address}"\n'
        f'tls_port = "{TLS_PORT}"\n'
        'auth_tls = "none"\n'
        "tls_no_verify_certificate = 0\n"
        f'key_file = "{pki / f"{host}-serverkey.pem"}"\n'
        f'cert_file = "{pki / f"{host}-servercert.pem"}"\n'
        f'ca_file = "{pki / "cacert.pem"}"\n'
    )


def write_pki(pki: Path, hosts: Sequence[HostPlan], run_id: str) -> None:
    """A private CA for this lab, a server certificate per host (its underlay
    address as IP SAN) and the harness's client certificate, with openssl."""
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)

    def ssl(*argv: str) -> None:
        run_local(["openssl", *argv], timeout=60, cwd=pki)

    ssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "cacert.pem",
        "-days", str(CERT_DAYS), "-subj", f"/CN=dcnlab lab CA {run_id}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    leaves = [(f"{h.name}-server", f"/CN={h.name}", f"subjectAltName=IP:{h.underlay}\nextendedKeyUsage=serverAuth\n")
              for h in hosts]  # fmt: skip
    leaves.append(("client", "/CN=dcnlab-harness", "extendedKeyUsage=clientAuth\n"))
    for stem, subject, ext in leaves:
        (pki / f"{stem}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" + ext
        )
        ssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{stem}key.pem", "-out", f"{stem}.csr", "-subj", subject
        )
        ssl(
            "x509", "-req", "-in", f"{stem}.csr", "-CA", "cacert.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{stem}cert.pem", "-days", str(CERT_DAYS), "-extfile", f"{stem}.ext",
        )  # fmt: skip
    # The client side of libvirt's pkipath wants these exact names in one directory.
    client = pki / "client"
    client.mkdir(mode=0o700, exist_ok=True)
    for name in ("cacert.pem", "clientcert.pem", "clientkey.pem"):
        shutil.copyfile(pki / name, client / name)


def vxlan_argvs(
    net: NetworkPlan, fleet: str, local: ipaddress.IPv4Address, peers: Sequence[ipaddress.IPv4Address]
) -> list[list[str]]:
    """``ip``/``bridge`` commands that add a VXLAN port to ``net``'s bridge on
    one host: VNI per network, head-end replication to each peer (an all-zero
    MAC fdb entry per peer floods broadcast and unknown unicast to each;
    ``bridge fdb append`` as in iproute2's bridge(8))."""
    dev = vxlan_dev(net.index)
    argvs = [
        ["ip", "link", "add", dev, "type", "vxlan", "id", str(vni(fleet, net.index)), "local", str(local),
         "dstport", str(VXLAN_PORT), "dev", HOST_UNDERLAY_DEV, "nolearning"],
    ]  # fmt: skip
    # nolearning plus static flooding entries: remote MACs are still learnt by
    # the bridge from frames, and the VXLAN device sends every frame to every
    # peer. Learning on the VXLAN device would pin a MAC to one peer, wrong
    # for a moment after a node restarts elsewhere.
    argvs += [["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", dev, "dst", str(p)] for p in peers]
    argvs += [["ip", "link", "set", dev, "master", net.bridge], ["ip", "link", "set", dev, "up"]]
    return argvs


@dataclass
class LabHost:
    """One lab host: its plan, its hypervisor, and how the harness reaches its libvirtd."""

    plan: HostPlan
    hv: EmbeddedHypervisor
    netns: str
    uri: str
    underlay_ns: str

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def remote(self) -> bool:
        return self.plan.index != 1

    def connect(self) -> libvirt.virConnect:
        if not self.remote:
            return self.hv.connect()
        # Opened from the underlay namespace; keepalive: a lost host raises.
        return open_connection(self.uri, netns=self.underlay_ns, keepalive=True)

    def to_record(self) -> dict[str, Any]:
        sup = self.hv.supervisor
        return {
            "name": self.plan.name,
            "index": self.plan.index,
            "underlay": str(self.plan.underlay),
            "netns": self.netns,
            "root": str(self.hv.root),
            "uri": self.uri,
            "supervisor": None if sup is None else {"pid": sup.pid, "start": sup.start},
        }


class Lab:
    """The lab's underlay and its hosts; host 1 is the fleet's own hypervisor."""

    def __init__(self, fleet: str, underlay: str, hosts: list[LabHost], pki: Path) -> None:
        self.fleet = fleet
        self.underlay = underlay
        self.underlay_ns = underlay_netns(fleet)
        self.hosts = hosts
        self.pki = pki

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise HypervisorError(f"the lab has no host {name!r}; its hosts are {', '.join(h.name for h in self.hosts)}")

    def to_record(self) -> dict[str, Any]:
        return {
            "underlay": self.underlay,
            "underlay_ns": self.underlay_ns,
            "pki": str(self.pki),
            "hosts": [h.to_record() for h in self.hosts],
        }

    @classmethod
    def from_record(cls, fleet: str, record: dict[str, Any], primary: EmbeddedHypervisor) -> Lab:
        """The lab a run record describes (another process started it)."""
        lab = cls(fleet, record["underlay"], [], Path(record["pki"]))
        for h in record["hosts"]:
            plan = HostPlan(h["name"], int(h["index"]), ipaddress.IPv4Address(h["underlay"]))
            hv = primary if plan.index == 1 else _hypervisor_of(h)
            lab.hosts.append(LabHost(plan, hv, h["netns"], h["uri"], lab.underlay_ns))
        return lab

    @classmethod
    def start(
        cls,
        fleet: str,
        run_dir: Path,
        run_id: str,
        plans: Sequence[HostPlan],
        underlay: str,
        primary: EmbeddedHypervisor,
        on_change: Callable[[Lab], None],
        progress: Callable[[str], None],
    ) -> Lab:
        """The underlay, host 1 (``primary``, running already) joined to it, and
        hosts 2..N started; ``on_change`` records what exists after each step,
        for the teardown of a start that fails half way."""
        net = underlay_network(underlay)
        pki = run_dir / "lab" / "pki"
        lab = cls(fleet, underlay, [], pki)
        ul = lab.underlay_ns
        run_local(["ip", "netns", "add", ul], timeout=30)
        on_change(lab)
        harness = net.network_address + HARNESS_UNDERLAY_HOST
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", UNDERLAY_BRIDGE, "mtu", str(UNDERLAY_MTU), "type", "bridge", "stp_state", "0"],
            ["ip", "addr", "add", f"{harness}/{net.prefixlen}", "dev", UNDERLAY_BRIDGE],
            ["ip", "link", "set", UNDERLAY_BRIDGE, "up"],
        ):
            run_local(argv, netns=ul, timeout=30)
        write_pki(pki, [p for p in plans if p.index != 1], run_id)
        for plan in plans:

            def join(netns: str, plan: HostPlan = plan) -> None:
                lab._join_underlay(netns, plan, net.prefixlen)

            if plan.index == 1:
                join(primary.name)
                lab.hosts.append(LabHost(plan, primary, primary.name, primary.uri, ul))
                on_change(lab)
                continue
            ns = host_netns(fleet, plan)
            progress(
                f"fleet {fleet}: starting lab host {plan.name} (namespace {ns}, libvirtd on TLS at {plan.underlay})"
            )

            def started(hv: EmbeddedHypervisor, plan: HostPlan = plan, ns: str = ns) -> None:
                host = LabHost(plan, hv, ns, tls_uri(plan.underlay, pki / "client"), ul)
                lab.hosts = [h for h in lab.hosts if h.name != plan.name] + [host]
                on_change(lab)

            EmbeddedHypervisor.start(
                run_dir / f"hv-{plan.name}",
                ns,
                run_id,
                started,
                listen_conf=tls_listen_conf(plan.underlay, pki, plan.name),
                prepare=join,
            )
            # Reached over TLS from the underlay, as the fleet will reach it.
            lab.host(plan.name).connect().close()
        return lab

    def _join_underlay(self, netns: str, plan: HostPlan, prefixlen: int) -> None:
        """A veth from ``netns`` (a host) into the underlay bridge, MTU 1550."""
        outside = underlay_port(plan.name)
        run_local(
            ["ip", "link", "add", outside, "mtu", str(UNDERLAY_MTU), "type", "veth", "peer", "name",
             HOST_UNDERLAY_DEV, "mtu", str(UNDERLAY_MTU), "netns", netns],
            netns=self.underlay_ns, timeout=30,
        )  # fmt: skip
        run_local(["ip", "link", "set", outside, "master", UNDERLAY_BRIDGE, "up"], netns=self.underlay_ns, timeout=30)
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{plan.underlay}/{prefixlen}", "dev", HOST_UNDERLAY_DEV],
            ["ip", "link", "set", HOST_UNDERLAY_DEV, "up"],
        ):
            run_local(argv, netns=netns, timeout=30)

    def stretch(self, net: NetworkPlan, only: str | None = None) -> None:
        """Give ``net``'s bridge on every host (or host ``only``) a VXLAN port to every other host."""
        for host in self.hosts:
            if only is not None and host.name != only:
                continue
            peers = [h.plan.underlay for h in self.hosts if h is not host]
            for argv in vxlan_argvs(net, self.fleet, host.plan.underlay, peers):
                try:
                    run_local(argv, netns=host.netns, timeout=30)
                except CommandError as err:
                    raise HypervisorError(f"cannot stretch network {net.name} to host {host.name}: {err}") from err

    # -- faults of several hosts --------------------------------------------

    def set_underlay(self, host: str, up: bool) -> None:
        """Cut ``host`` off the underlay (or join it again): its VMs keep running
        and their host's bridges keep them together, but no frame crosses to
        or from any other host, and the harness cannot reach its libvirtd."""
        h = self.remote_host(host)
        run_local(
            ["ip", "link", "set", underlay_port(h.name), "up" if up else "down"], netns=self.underlay_ns, timeout=30
        )

    def set_underlay_loss(self, host: str, percent: float, on: bool) -> None:
        """Add (``on``) or remove the rules of :func:`underlay_loss_rules` in ``host``'s namespace."""
        h = self.host(host)
        for rule in underlay_loss_rules(percent):
            run_local(["iptables", "-A" if on else "-D", *rule], netns=h.netns, timeout=30)

    def remote_host(self, host: str) -> LabHost:
        h = self.host(host)
        if not h.remote:
            raise HypervisorError(
                f"host {host} is where the harness reaches the guests and runs the fleet's own hypervisor: "
                f"lose or cut off another host ({', '.join(x.name for x in self.hosts if x.remote)})"
            )
        return h

    def kill_host(self, host: str) -> None:
        """``host`` dies whole, as a machine losing power: its underlay link
        goes down (nothing of it answers any more) and every process in its
        namespace is killed, its libvirtd, its VMs and its fence_virtd with it."""
        h = self.remote_host(host)
        self.set_underlay(host, False)
        kill_netns_processes(h.netns)

    def revive_host(
        self, host: str, networks: Sequence[NetworkPlan], run_id: str, on_change: Callable[[Lab], None]
    ) -> None:
        """Boot ``host`` again after :meth:`kill_host`: a fresh namespace joined
        to the underlay, its libvirtd (the fleet's domains still defined there,
        every one off), the fleet's networks started and stretched again."""
        h = self.remote_host(host)
        net = underlay_network(self.underlay)
        kill_netns_processes(h.netns)
        delete_netns(h.netns)
        # The kernel frees a deleted namespace, and the veth end inside it,
        # in the background: the underlay's end may still be there for a
        # moment, and a new veth of the same name would be refused.
        run_local(["ip", "link", "del", underlay_port(h.name)], netns=self.underlay_ns, timeout=30, check=False)
        # Runtime state of the daemons that died (their socket, pid files,
        # domain status) would be taken for a live libvirtd; the definitions
        # (etc/, lib/) stay.
        shutil.rmtree(h.hv.root / "run", ignore_errors=True)

        def started(hv: EmbeddedHypervisor) -> None:
            h.hv = hv
            on_change(self)

        EmbeddedHypervisor.start(
            h.hv.root,
            h.netns,
            run_id,
            started,
            listen_conf=tls_listen_conf(h.plan.underlay, self.pki, h.name),
            prepare=lambda netns: self._join_underlay(netns, h.plan, net.prefixlen),
        )
        conn = h.connect()
        try:
            for plan in networks:
                obj = conn.networkLookupByName(plan.name)
                if not obj.isActive():
                    obj.create()
        except libvirt.libvirtError as err:
            raise HypervisorError(f"host {host}: cannot start the fleet's networks again: {err}") from err
        finally:
            conn.close()
        for plan in networks:
            self.stretch(plan, only=host)


def stop_lab(record: dict[str, Any]) -> list[str]:
    """Stop what a lab record names: hosts 2..N (their hypervisors, anything
    left in their namespaces, the namespaces) and the underlay namespace. Every
    step runs; failures are returned. Used by a teardown and by ``dcnlab gc``
    after the process that started the lab died."""
    errors: list[str] = []
    for h in record.get("hosts", []):
        if int(h["index"]) == 1:
            continue
        hv = _hypervisor_of(h)
        for what, fn in (
            (f"stopping lab host {h['name']}", hv.stop),
            (f"stopping processes left in {h['netns']}", lambda ns=h["netns"]: kill_netns_processes(ns)),
            (f"deleting namespace {h['netns']}", lambda ns=h["netns"]: delete_netns(ns)),
        ):
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - collected for the caller
                errors.append(f"{what}: {err}")
    ul = record.get("underlay_ns")
    if ul:
        with contextlib.suppress(Exception):
            kill_netns_processes(ul)
        try:
            delete_netns(ul)
        except Exception as err:  # noqa: BLE001 - collected for the caller
            errors.append(f"deleting namespace {ul}: {err}")
    return errors
