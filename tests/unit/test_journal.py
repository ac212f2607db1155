from pathlib import Path

import pytest

from dcnlab.observe.journal import PATTERNS, parse_journal
from dcnlab.observe.timeline import ClockAnchor, EventKind, GuestClock

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
