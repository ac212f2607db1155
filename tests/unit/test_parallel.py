import threading
import time

import pytest

from dcnlab.core.errors import ClusterError, DcnlabError
from dcnlab.core.parallel import on_each


def test_results_come_back_in_item_order_and_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def square(n: int) -> int:
        barrier.wait()  # only passes if all three run at the same time
        return n * n

    assert on_each([3, 1, 2], square, label=str, what="squaring") == [9, 1, 4]


def test_every_failure_is_named_and_the_rest_still_run() -> None:
    done: list[int] = []

    def work(n: int) -> int:
        if n % 2:
            raise DcnlabError(f"odd {n}")
        done.append(n)
        return n

    with pytest.raises(ClusterError) as info:
        on_each([1, 2, 3, 4], work, label=lambda n: f"node{n}", what="the step", error=ClusterError)
    text = str(info.value)
    assert text.startswith("the step failed on 2 of 4:")
    assert "node1: odd 1" in text
    assert "node3: odd 3" in text
    assert sorted(done) == [2, 4]


def test_bugs_are_not_turned_into_harness_errors() -> None:
    def broken(n: int) -> int:
        raise KeyError(n)

    with pytest.raises(KeyError):
        on_each([1], broken, label=str, what="x")


def test_nothing_to_do() -> None:
    assert on_each([], lambda n: n, label=str, what="x") == []


def test_interrupted_returns_without_waiting_for_the_others() -> None:
    # Ctrl-C while nodes boot must not sit out every node's SSH deadline.
    release = threading.Event()

    def step(item: int) -> int:
        if item == 0:
            raise KeyboardInterrupt
        release.wait(timeout=30)
        return item

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        on_each([0, 1], step, label=str, what="step")
    took = time.monotonic() - start
    release.set()
    assert took < 5, f"on_each waited {took:.1f}s for a thread after the interrupt"
