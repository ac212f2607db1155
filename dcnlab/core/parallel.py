"""Run one step on many nodes at once.

Under TCG each guest has its own emulated vCPU, so a step that costs every
node the same CPU (starting corosync, copying keys) takes one node's time
when run on all of them together, instead of N times that in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from dcnlab.core.errors import DcnlabError

T = TypeVar("T")
R = TypeVar("R")


def on_each(
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    label: Callable[[T], str],
    what: str,
    error: type[DcnlabError] = DcnlabError,
) -> list[R]:
    """``fn(item)`` for every item concurrently; the results in item order.

    Every item runs to completion (or failure) before this returns, so no
    thread outlives the call. If any failed with a :class:`DcnlabError`, one
    ``error`` is raised naming ``what`` and every item that failed, with its
    message; other exceptions (bugs) propagate unchanged.

    Interrupted (Ctrl-C: ``KeyboardInterrupt`` in the calling thread), it
    returns at once instead of waiting out the others' deadlines: the caller's
    cleanup must then stop what they act on (a fleet's teardown makes its
    nodes' SSH waits give up), and they end on their own.
    """
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="on-each")
    results: list[R] = []
    failures: list[str] = []
    try:
        futures = [pool.submit(fn, item) for item in items]
        for item, fut in zip(items, futures, strict=True):
            try:
                results.append(fut.result())
            except DcnlabError as err:
                failures.append(f"{label(item)}: {err}")
    except BaseException as err:
        pool.shutdown(wait=not isinstance(err, KeyboardInterrupt), cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if failures:
        raise error(f"{what} failed on {len(failures)} of {len(items)}:\n" + "\n".join(failures))
    return results
