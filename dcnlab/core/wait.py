"""The one way to wait: a condition polled until a monotonic deadline.

The timeout error names what was waited for and the last thing the condition
said, so a failure reads "waited 120s for dcn2 to answer SSH on 10.77.0.12:
last error: Connection refused" rather than "timeout".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dcnlab.core.errors import WaitTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """A point in monotonic time. Share one between several waits of a phase."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float | Deadline,
    what: str,
    interval: float = 0.5,
    describe_failure: Callable[[], str] | None = None,
    give_up_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    ``condition`` may raise: the exception counts as "not yet" and its text is
    reported if the deadline passes, except for the ``give_up_on`` types, which
    mean waiting longer cannot help and are raised at once. ``describe_failure`` adds context (a
    console log tail, say) to the timeout error.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline.after(timeout)
    start = time.monotonic()
    last = "condition was false"
    while True:
        try:
            value = condition()
        except give_up_on:
            raise
        except Exception as err:  # noqa: BLE001 - any other error means "not yet"; kept for the report
            last = f"{type(err).__name__}: {err}"
        else:
            if value:
                return value
            last = f"condition returned {value!r}"
        if deadline.expired():
            waited = time.monotonic() - start
            extra = f"\n{describe_failure()}" if describe_failure else ""
            raise WaitTimeout(f"waited {waited:.0f}s for {what}; last result: {last}{extra}")
        time.sleep(min(interval, max(deadline.remaining(), 0.01)))
