"""What a fault test leaves behind for the post-mortem: every node's serial
console log (written by virtlogd on the host, so a fenced or crashed guest's
last words are there too) and the cluster journal of every node that is up."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from dcnlab.core.errors import DcnlabError
from dcnlab.core.parallel import on_each

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet
    from dcnlab.fleet.node import Node

JOURNAL_UNITS = ("corosync", "pacemaker", "pcsd")
# Guest clocks are seconds off the host's (see dcnlab.observe.timeline.GuestClock):
# start the journal a little earlier than asked.
JOURNAL_SLACK = 60


def collect_logs(
    fleet: Fleet, dest: Path, since_wall: float, timeout: float = 60.0, booting: Collection[str] = ()
) -> list[str]:
    """Copy console logs and fetch journals (units :data:`JOURNAL_UNITS`,
    since host wall-clock ``since_wall``) into ``dest``; not the journals of
    the ``booting`` nodes (powered on and not waited for: SSH would wait for
    their boot). Returns what could not be collected; never raises for an
    unreachable node."""
    dest.mkdir(parents=True, exist_ok=True)
    since = int(since_wall) - JOURNAL_SLACK
    units = " ".join(f"-u {shlex.quote(u)}" for u in JOURNAL_UNITS)
    why_not: dict[str, str] = {}
    for name in fleet.nodes:
        console = fleet.console_log(name)
        if console.exists():
            shutil.copyfile(console, dest / f"{name}.console.log")
        if name in booting:
            why_not[name] = "still booting: its return was not waited for"
        elif fleet.domain_state(name) != "running":
            why_not[name] = f"domain is {fleet.domain_state(name)}"
    readable = [node for name, node in fleet.nodes.items() if name not in why_not]

    def journal(node: Node) -> str | None:
        try:
            res = node.run(
                f"journalctl {units} -o short-iso-precise --no-pager --since=@{since}", timeout=timeout, check=False
            )
        except DcnlabError as err:
            why_not[node.name] = str(err).splitlines()[0]
            return None
        return res.stdout

    # One SSH call per node, all at once: each guest has its own emulated vCPU.
    texts = on_each(readable, journal, label=lambda node: node.name, what="collecting the journals")
    for node, text in zip(readable, texts, strict=True):
        if text is not None:
            (dest / f"{node.name}.journal.txt").write_text(text)
    return [f"{name}: journal not collected ({why_not[name]})" for name in fleet.nodes if name in why_not]
