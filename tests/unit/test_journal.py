import functools
import threading
from pathlib import Path

import pytest
from fakes import fleet_on_fake

from dcnlab.core.errors import CommandError
from dcnlab.core.proc import Result
from dcnlab.fleet.fleet import Fleet
from dcnlab.observe.artifacts import collect_logs
from dcnlab.observe.journal import PATTERNS, parse_journal, record_journals
from dcnlab.observe.timeline import ClockAnchor, EventKind, GuestClock, Recorder

K = EventKind
# Host wall 1764064980.0 was host monotonic 1000.0; dcn2's clock is 2 s ahead.
ANCHOR = ClockAnchor(1764064980.0, 1000.0)
CLOCK = GuestClock("dcn2", 2.0, 0.1)

# journalctl -o short-unix lines (see data/README.md).
JOURNAL = (Path(__file__).parent / "data" / "journal_short_unix_power_off.txt").read_text()


def test_journal_events_on_the_monotonic_axis() -> None:
    events = parse_journal(JOURNAL, "dcn2", ANCHOR, CLOCK)
    kinds = [(e.kind, e.node, e.resource) for e in events]
    assert kinds == [
        (K.MEMBERSHIP_CHANGED, "dcn2", None),
        (K.NODE_LOST, "dcn1", None),  # the controller's line, not attrd's
        (K.FENCE_STARTED, "dcn1", None),
        (K.FENCE_CONFIRMED, "dcn1", None),  # the fencer's
        (K.FENCE_CONFIRMED, "dcn1", None),  # and the controller's
        (K.RESOURCE_STARTED, "dcn2", "vip"),
        (K.RESOURCE_STOPPED, "dcn2", "app"),
        (K.NODE_JOINED, "dcn1", None),
    ]
    lost = events[1]
    # Guest 1764064990.3 is host 1764064988.3, i.e. monotonic 1008.3, +-0.1.
    assert lost.earliest == pytest.approx(1008.2)
    assert lost.t == pytest.approx(1008.4)
    assert lost.source == "journal:dcn2"
    assert lost.detail == "Node dcn1 state is now lost"  # the "| key=value" tail is dropped


def test_since_and_unknown_clock() -> None:
    events = parse_journal(JOURNAL, "dcn2", ANCHOR, None, since=1012.0)
    assert [e.kind for e in events][:2] == [K.FENCE_CONFIRMED, K.FENCE_CONFIRMED]
    assert all("offset unknown" in e.detail for e in events)
    assert all(e.t == e.earliest for e in events)


def test_every_pattern_says_why() -> None:
    assert all(p.why for p in PATTERNS)


def _guests_answer_together(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *, asked_of: int, down: str, text: str
) -> list[str]:
    """The nodes answer ``text``, but each answer waits until ``asked_of``
    nodes were asked (a barrier): read one after the other, the first read
    would time out. ``down`` raises as an unreachable node does."""
    asked: list[str] = []
    barrier = threading.Barrier(asked_of, timeout=10)

    def run(name: str, command: str, **_kw: object) -> Result:
        asked.append(name)
        barrier.wait()
        if name == down:
            raise CommandError(f"{name}: the node does not answer", Result(command, 255, "", "", 0.0))
        return Result(command, 0, text, "", 0.0, where=name)

    for node in fleet.nodes.values():
        monkeypatch.setattr(node, "run", functools.partial(run, node.name))
    return asked


def test_record_journals_reads_every_node_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, provider = fleet_on_fake(tmp_path, nodes=4)
    provider.states[fleet.node("dcn4").domain] = "shut-off"
    asked = _guests_answer_together(fleet, monkeypatch, asked_of=3, down="dcn3", text=JOURNAL)
    recorder = Recorder(ANCHOR)
    missing = record_journals(fleet, recorder, since=0.0, save_dir=tmp_path / "journal")
    assert sorted(asked) == ["dcn1", "dcn2", "dcn3"]  # not dcn4: its domain is off
    assert missing == ["dcn3", "dcn4"]
    assert {e.source for e in recorder.events()} == {"journal:dcn1", "journal:dcn2"}
    saved = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert saved == ["dcn1.journal-unix.txt", "dcn2.journal-unix.txt"]


def test_collect_logs_reads_every_node_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, provider = fleet_on_fake(tmp_path, nodes=4)
    provider.states[fleet.node("dcn4").domain] = "shut-off"
    asked = _guests_answer_together(fleet, monkeypatch, asked_of=2, down="dcn2", text="a journal\n")
    missing = collect_logs(fleet, tmp_path / "logs", since_wall=ANCHOR.wall, booting=("dcn3",))
    assert sorted(asked) == ["dcn1", "dcn2"]
    assert missing == [
        "dcn2: journal not collected (dcn2: the node does not answer)",
        "dcn3: journal not collected (still booting: its return was not waited for)",
        "dcn4: journal not collected (domain is shut-off)",
    ]
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["dcn1.journal.txt"]
