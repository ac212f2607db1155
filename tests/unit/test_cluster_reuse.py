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
    ("order", "current", "reused"),
    [
        ((a, b), a, True),  # the next cluster test takes it as it is
        ((a, plain, b), a, True),  # tests without a cluster in between do not count
        ((a, plain), a, False),  # the last cluster test: the fleet goes down next
        ((a,), a, False),
        ((a, wrecker), a, False),  # the destructive one gets a fresh cluster
        ((wrecker, a), wrecker, False),  # and so does the test after it
        ((a, wrecker, b), a, False),  # only the very next cluster test counts
        ((plain,), a, True),  # not collected: assume reuse, the safe side
    ],
)
def test_next_test_reuses_the_cluster(order: tuple[Item, ...], current: Item, reused: bool) -> None:
    assert next_test_reuses_the_cluster(items(*order), cast(pytest.Item, current)) is reused


# Real items list every fixture they reach: a cluster user lists the fleet too.
on_cluster = Item("on_cluster", ["fault", "fault_cluster", "cluster", "fleet"])
on_fleet = Item("on_fleet", ["dcn_node", "fleet"])
pure = Item("pure", [])


@pytest.mark.parametrize(
    ("order", "left_down"),
    [
        ((a, on_cluster), True),  # the cluster fixture renews the nodes first
        ((a, pure, on_cluster), True),  # tests without the fleet do not count
        ((a, pure), True),  # nothing uses the fleet again
        ((a, on_fleet, on_cluster), False),  # a fleet test would meet the node down
        ((on_fleet,), False),  # not collected: the fleet is used as it is
    ],
)
def test_nodes_stay_down_only_when_the_next_fleet_user_renews(order: tuple[Item, ...], left_down: bool) -> None:
    assert next_fleet_user_renews(items(*order), cast(pytest.Item, a)) is left_down
