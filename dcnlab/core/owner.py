"""Who owns a run: a process identity that survives PID reuse, and the record
of one fleet that ``dcnlab gc`` reads to decide what was left behind."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessId:
    """A PID plus its kernel start time, so a recycled PID is not mistaken for it."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        start = _start_time(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def me(cls) -> ProcessId:
        me = cls.of(os.getpid())
        assert me is not None  # our own /proc entry always exists
        return me

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start and not _is_zombie(self.pid)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces or ')': the fixed fields follow the last ')'
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat(5)


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


@dataclass
class RunRecord:
    """Everything needed to find, reach and remove one fleet, kept as JSON in
    its run directory. Written before anything is created, updated as things are."""

    name: str
    run_id: str
    created: float
    owner: ProcessId | None  # the process that must be alive unless persistent
    persistent: bool  # handed to the user (CLI `fleet up`, --dcn-keep): gc leaves it
    uri: str = ""
    embedded: bool = True
    netns: str | None = None  # where guests are reachable from
    netns_created: bool = False  # only a namespace we created is ours to delete
    supervisor: ProcessId | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    domain_type: str = "qemu"
    nodes: list[int] = field(default_factory=list)  # node indexes, in order of creation
    # A fleet over several lab hosts (dcnlab.fleet.libvirt.lab): the lab's
    # underlay and hosts, and which host runs each node (name -> host).
    lab: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)

    FILE = "run.json"

    @classmethod
    def new(cls, name: str, **fields: Any) -> RunRecord:
        """A fresh, non-persistent run of fleet ``name`` owned by this process,
        with a new run id (``fields``: the rest, uri, spec, image...)."""
        return cls(
            name=name,
            run_id=f"{name}-{uuid.uuid4().hex[:8]}",
            created=time.time(),
            owner=ProcessId.me(),
            persistent=False,
            **fields,
        )

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / (self.FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, run_dir / self.FILE)

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        data = json.loads((run_dir / cls.FILE).read_text())
        for key in ("owner", "supervisor"):
            if data.get(key) is not None:
                data[key] = ProcessId(**data[key])
        return cls(**data)

    def abandoned(self) -> bool:
        """Left behind by a run that died: not handed to the user, owner gone."""
        return not self.persistent and (self.owner is None or not self.owner.alive())
