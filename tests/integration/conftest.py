"""Order integration tests: first those booting fleets of their own (before
the session ``fleet`` exists: under TCG an idle fleet still costs host CPU,
and two fleets at once on a 2-core machine slow each other's boots), then
those needing only the session fleet, then those using its cluster (faults
there can leave a node fenced, which fleet-level tests must not meet).
Under ``./dev test``'s two lanes (tests/lanes.py) the tests with fleets of
their own run on the other worker, beside the session fleet's tests; this
order still holds within each lane."""

from __future__ import annotations

import pytest


def _order(item: pytest.Item) -> tuple[bool, bool]:
    names = getattr(item, "fixturenames", ())
    return ("fleet" in names, "cluster" in names)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)
