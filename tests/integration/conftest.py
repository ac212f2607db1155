"""Order integration tests so that those booting their own fleets run before
the session ``fleet`` exists: under TCG an idle fleet still costs host CPU,
and two fleets at once on a 2-core machine slow each other's boots."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "fleet" in getattr(item, "fixturenames", ()))
