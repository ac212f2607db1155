"""Node.run's SSH plumbing that needs no node: the deadline on opening a
command's session channel."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dcnlab.fleet.node import _connection_class


def test_opening_a_session_channel_has_the_commands_deadline() -> None:
    # paramiko's own default is to wait for the channel (an hour): a node cut
    # off after its connection opened hung the suite there.
    asked: list[Any] = []
    conn = _connection_class()(host="dcn1.invalid")  # never connects: open() is replaced below
    conn.open = lambda: None
    conn.transport = SimpleNamespace(open_session=lambda timeout: asked.append(timeout) or "channel")
    conn.session_timeout = 60.0
    assert conn.create_session() == "channel"
    assert asked == [60.0]


def test_the_sftp_channel_has_the_deadline_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    channel = SimpleNamespace(
        settimeout=lambda t: calls.append(("settimeout", t)),
        invoke_subsystem=lambda name: calls.append(("subsystem", name)),
    )
    conn = _connection_class()(host="dcn1.invalid")
    conn.open = lambda: None
    conn.transport = SimpleNamespace(open_session=lambda timeout: calls.append(("open", timeout)) or channel)
    conn.session_timeout = 60.0
    made: list[Any] = []
    # The SFTP handshake needs a real server: the client stands in.
    monkeypatch.setattr("paramiko.SFTPClient", lambda chan: made.append(chan) or "sftp")
    assert conn.sftp() == "sftp"
    assert conn.sftp() == "sftp"  # memoised: one channel
    assert calls == [("open", 60.0), ("settimeout", 60.0), ("subsystem", "sftp")]
    assert made == [channel]
