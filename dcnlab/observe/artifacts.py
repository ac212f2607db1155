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

if TYPE_CHECKING:
    from dcnlab.fleet.fleet import Fleet

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
    missing: list[str] = []
    since = int(since_wall) - JOURNAL_SLACK
    units = " ".join(f"-u {shlex.quote(u)}" for u in JOURNAL_UNITS)
    for name, node in fleet.nodes.items():
        console = fleet.console_log(name)
        if console.exists():
            shutil.copyfile(console, dest / f"{name}.console.log")
        if name in booting:
            missing.append(f"{name}: journal not collected (still booting: its return was not waited for)")
            continue
        if fleet.domain_state(name) != "running":
            missing.append(f"{name}: journal not collected (domain is {fleet.domain_state(name)})")
            continue
        try:
            res = node.run(
                f"journalctl {units} -o short-iso-precise --no-pager --since=@{since}", timeout=timeout, check=False
            )
        except DcnlabError as err:
            missing.append(f"{name}: journal not collected ({str(err).splitlines()[0]})")
            continue
        (dest / f"{name}.journal.txt").write_text(res.stdout)
    return missing
