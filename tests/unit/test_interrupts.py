"""dcnlab.core.interrupts.deferred: a first Ctrl-C waits for the block, a second
one interrupts it."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest

from dcnlab.core.interrupts import deferred


def _interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to this (the main) thread before kill returns


def _under_deferred(body: Callable[[], None], said: list[str] | None = None) -> None:
    with deferred("teardown", (said if said is not None else []).append):
        body()


def test_first_interrupt_is_held_until_the_block_ends() -> None:
    said: list[str] = []
    finished: list[bool] = []

    def body() -> None:
        _interrupt()
        finished.append(True)

    with pytest.raises(KeyboardInterrupt, match="SIGINT during teardown"):
        _under_deferred(body, said)
    assert finished == [True]
    assert said == ["teardown: SIGINT received, finishing first (send it again to abandon)"]


def test_second_interrupt_abandons_the_block() -> None:
    finished: list[bool] = []

    def body() -> None:
        _interrupt()
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append(True)

    with pytest.raises(KeyboardInterrupt, match="SIGTERM again: teardown abandoned; `dcnlab gc`"):
        _under_deferred(body)
    assert finished == []


def test_handlers_are_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with deferred("teardown", lambda _line: None):
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_error_in_the_block_is_not_replaced() -> None:
    def body() -> None:
        _interrupt()
        raise ValueError("step failed")

    with pytest.raises(ValueError, match="step failed"):
        _under_deferred(body)


def test_outside_the_main_thread_it_does_nothing() -> None:
    seen: list[BaseException | None] = []

    def run() -> None:
        try:
            with deferred("teardown", lambda _line: None):
                pass
            seen.append(None)
        except BaseException as err:  # noqa: BLE001 - recorded for the assert
            seen.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert seen == [None]
