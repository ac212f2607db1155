"""When a fault test waits for the healthy cluster after its heal: only when
the next test on the cluster takes it as it is (dcnlab/pytest_plugin/plugin.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from dcnlab.pytest_plugin.plugin import (
    is_destructive,
    next_fleet_user_renews,
    next_test_reuses_the_cluster,
    uses_cluster,
)


@dataclass
class Item:
    """What the rule reads of a pytest item: its fixtures and markers."""

    name: str
    fixturenames: list[str] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.markers else None


def items(*specs: Item) -> list[pytest.Item]:
    return cast(list[pytest.Item], list(specs))


FAULT = ["fault", "fault_cluster"]
a = Item("a", FAULT)
b = Item("b", ["cluster"])
plain = Item("plain", ["fleet"])
wrecker = Item("wrecker", FAULT, {"destructive"})


def test_uses_cluster_directly_or_through_the_fault_fixtures() -> None:
    assert uses_cluster(cast(pytest.Item, a))
    assert uses_cluster(cast(pytest.Item, b))
    assert not uses_cluster(cast(pytest.Item, plain))
    assert is_destructive(cast(pytest.Item, wrecker))
    assert not is_destructive(cast(pytest.Item, a))


@pytest.mark.parametrize(
    ("current", "following", "complete", "reused"),
    [
        (a, (b,), True, True),  # the next cluster test takes it as it is
        (a, (plain, b), True, True),  # tests without a cluster in between do not count
        (a, (plain,), True, False),  # the last cluster test: the fleet goes down next
        (a, (), True, False),
        (a, (wrecker,), True, False),  # the destructive one gets a fresh cluster
        (wrecker, (a,), True, False),  # and so does the test after it
        (a, (wrecker, b), True, False),  # only the very next cluster test counts
        # An xdist worker knows only its next test, or that there is none.
        (a, (b,), False, True),
        (a, (wrecker,), False, False),
        (a, (plain,), False, True),  # what follows it is unknown: assume reuse, the safe side
        (a, (), False, True),  # not collected, say: the safe side too
    ],
)
def test_next_test_reuses_the_cluster(current: Item, following: tuple[Item, ...], complete: bool, reused: bool) -> None:
    assert next_test_reuses_the_cluster(cast(pytest.Item, current), items(*following), complete) is reused


# Real items list every fixture they reach: a cluster user lists the fleet too.
on_cluster = Item("on_cluster", ["fault", "fault_cluster", "cluster", "fleet"])
on_fleet = Item("on_fleet", ["dcn_node", "fleet"])
pure = Item("pure", [])


@pytest.mark.parametrize(
    ("following", "complete", "left_down"),
    [
        ((on_cluster,), True, True),  # the cluster fixture renews the nodes first
        ((pure, on_cluster), True, True),  # tests without the fleet do not count
        ((pure,), True, True),  # nothing uses the fleet again
        ((on_fleet, on_cluster), True, False),  # a fleet test would meet the node down
        ((on_cluster,), False, True),  # an xdist worker's next test renews them
        ((pure,), False, False),  # and after it, unknown: the fleet may be used as it is
        ((), False, False),
    ],
)
def test_nodes_stay_down_only_when_the_next_fleet_user_renews(
    following: tuple[Item, ...], complete: bool, left_down: bool
) -> None:
    assert next_fleet_user_renews(items(*following), complete) is left_down
