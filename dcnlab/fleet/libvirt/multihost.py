"""The provider seam over several libvirt hosts: each machine lives on the
host the fleet placed it on, each network on every host (stretched by the
lab, :mod:`dcnlab.fleet.libvirt.lab`), and each call goes to the host that
owns the machine. A partition between NICs on different hosts is cut by MAC
on each host's bridge, since a frame between two hosts crosses a VXLAN port
rather than the other machine's tap."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import libvirt

from dcnlab.core.errors import CommandError, HypervisorError, ProvisionError
from dcnlab.fleet.hosts import HostPlan, host_network
from dcnlab.fleet.libvirt.provider import LibvirtProvider
from dcnlab.fleet.provider import CAPABILITIES, MachineSpec, Nic, Owner, PowerAction
from dcnlab.fleet.spec import NetworkPlan


def mac_partition_rules(local: Mapping[str, str], side_a: Sequence[str], side_b: Sequence[str]) -> list[list[str]]:
    """ebtables rule specs (after ``-A``/``-D FORWARD``) for one host's bridges:
    frames between each MAC of ``side_a`` and each of ``side_b`` dropped, both
    ways, at the taps of those NICs that are on this host (``local``: MAC to
    tap). Each side's local taps get the rules, so a pair on one host and a
    pair across hosts are both cut; frames to anyone else pass."""
    rules = []
    for mine, theirs in ((side_a, side_b), (side_b, side_a)):
        for mac in mine:
            tap = local.get(mac.lower())
            if tap is None:
                continue
            for other in theirs:
                rules.append(["-i", tap, "-d", other.lower(), "-j", "DROP"])
                rules.append(["-o", tap, "-s", other.lower(), "-j", "DROP"])
    return rules


class MultiHostProvider:
    """Networks on every host, machines on their own: one :class:`LibvirtProvider`
    per host (each with its own connection). ``placement`` maps domains to
    hosts (what the fleet recorded); a machine defined later is placed by its
    :attr:`MachineSpec.host`."""

    capabilities = frozenset(CAPABILITIES)

    def __init__(
        self,
        hosts: Mapping[str, tuple[HostPlan, Callable[[], libvirt.virConnect], str]],
        placement: Mapping[str, str],
        stretch: Callable[[NetworkPlan], None],
    ) -> None:
        """``hosts``: name -> (plan, connect, the namespace of its bridges)."""
        self.plans = {name: plan for name, (plan, _c, _n) in hosts.items()}
        self.providers = {name: LibvirtProvider(connect, netns) for name, (_p, connect, netns) in hosts.items()}
        self.placement = dict(placement)
        self._stretch = stretch
        self._blocks: dict[tuple[tuple[Nic, ...], tuple[Nic, ...]], list[tuple[str, list[str]]]] = {}

    def host_of(self, domain: str) -> str:
        try:
            return self.placement[domain]
        except KeyError:
            raise HypervisorError(
                f"domain {domain} is placed on none of the fleet's hosts ({', '.join(self.providers)})"
            ) from None

    def _on(self, domain: str) -> LibvirtProvider:
        return self.providers[self.host_of(domain)]

    # -- inventory ------------------------------------------------------------

    def reach(self) -> None:
        for name, provider in self.providers.items():
            try:
                provider.reach()
            except HypervisorError as err:
                raise HypervisorError(f"host {name}: {err}") from err

    def create_network(self, net: NetworkPlan, owner: Owner) -> None:
        for name, provider in self.providers.items():
            provider.create_network(host_network(net, self.plans[name]), owner)
        self._stretch(net)

    def define(self, machine: MachineSpec) -> None:
        host = machine.host
        if host not in self.providers:
            raise ProvisionError(
                f"node {machine.plan.name} is placed on host {host!r}, not one of {', '.join(self.providers)}"
            )
        self.placement[machine.plan.domain] = host
        self.providers[host].define(machine)

    def owner(self, domain: str) -> Owner | None:
        return self._on(domain).owner(domain) if domain in self.placement else None

    def undefine(self, domain: str, owner: Owner) -> None:
        if domain in self.placement:
            self._on(domain).undefine(domain, owner)

    def remove_owned(self, owner: Owner) -> list[str]:
        """From every host; a host that fails does not keep the others' from going."""
        removed, errors = [], []
        for name, provider in self.providers.items():
            try:
                removed += [f"{what} on {name}" for what in provider.remove_owned(owner)]
            except HypervisorError as err:
                errors.append(f"host {name}: {err}")
        if errors:
            raise HypervisorError("; ".join(errors))
        return removed

    # -- machines ---------------------------------------------------------------

    def power(self, domain: str, action: PowerAction) -> None:
        self._on(domain).power(domain, action)

    def state(self, domain: str) -> str:
        if domain not in self.placement:
            return "absent"
        return self._on(domain).state(domain)

    def set_link(self, domain: str, mac: str, up: bool) -> None:
        self._on(domain).set_link(domain, mac, up)

    def link_up(self, domain: str, mac: str) -> bool:
        return self._on(domain).link_up(domain, mac)

    def _local_taps(self, host: str, nics: Sequence[Nic]) -> dict[str, str]:
        mine = [nic for nic in nics if self.placement.get(nic[0]) == host]
        return {mac.lower(): tap for (_d, mac), tap in zip(mine, self.providers[host].taps(mine), strict=True)}

    def _rules(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> list[tuple[str, list[str]]]:
        """Each host's ebtables rules cutting ``side_a`` from ``side_b``."""
        macs_a, macs_b = [m for _d, m in side_a], [m for _d, m in side_b]
        return [
            (host, rule)
            for host in self.providers
            for rule in mac_partition_rules(self._local_taps(host, [*side_a, *side_b]), macs_a, macs_b)
        ]

    def block(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        added: list[tuple[str, list[str]]] = []
        try:
            for host, rule in self._rules(side_a, side_b):
                self.providers[host].ebtables("-A", rule)
                added.append((host, rule))
        except (CommandError, HypervisorError) as err:
            for host, rule in reversed(added):  # all or nothing
                with contextlib.suppress(CommandError):
                    self.providers[host].ebtables("-D", rule)
            raise HypervisorError(f"cannot block frames between {list(side_a)} and {list(side_b)}: {err}") from err
        self._blocks[(tuple(side_a), tuple(side_b))] = added

    def unblock(self, side_a: Sequence[Nic], side_b: Sequence[Nic]) -> None:
        key = (tuple(side_a), tuple(side_b))
        # What this handle blocked; else (another handle blocked it) the same rules again.
        rules = self._blocks.get(key) or self._rules(side_a, side_b)
        errors = []
        for host, rule in list(rules):
            try:
                self.providers[host].ebtables("-D", rule)
                rules.remove((host, rule))
            except CommandError as err:
                errors.append(f"{host}: {str(err).splitlines()[0]}")
        if errors:
            self._blocks[key] = rules
            raise HypervisorError("ebtables -D: " + "; ".join(errors))
        self._blocks.pop(key, None)

    # -- snapshots ------------------------------------------------------------

    def save(self, domain: str, dest: Path) -> None:
        self._on(domain).save(domain, dest)

    def restore(self, domain: str, src: Path, *, as_defined: bool) -> None:
        self._on(domain).restore(domain, src, as_defined=as_defined)

    def uuid(self, domain: str) -> str:
        return self._on(domain).uuid(domain)

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()
