"""Finish cleaning up before acting on Ctrl-C.

A teardown cut short by an impatient Ctrl-C leaves domains, a namespace and
daemons behind; the user wanted the run stopped, not its debris kept. So a
block run under :func:`deferred` holds the first SIGINT or SIGTERM until it is
done and then raises ``KeyboardInterrupt``; a second signal interrupts at once
(and the message says ``dcnlab gc`` removes the rest), so a hung step never
traps the user.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred(what: str, progress: Callable[[str], None]) -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM held (see the module docstring).
    Outside the main thread, where Python delivers no signals, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt(
                f"{signal.Signals(signum).name} again: {what} abandoned; `dcnlab gc` removes what is left"
            )
        received.append(signum)
        # A print from a signal handler can land inside another print.
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            progress(f"{what}: {signal.Signals(signum).name} received, finishing first (send it again to abandon)")

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"{signal.Signals(received[0]).name} during {what}")
