"""Order integration tests so that those booting their own fleets run before
the session ``fleet`` exists: under TCG an idle fleet still costs host CPU,
and two fleets at once on a 2-core machine slow each other's boots."""

from __future__ import annotations

import pytest

# Tests written against real clusters that have not yet passed on CI's
# machine: pending/test_cluster.py fails at `pcs cluster setup` on loaded TCG
# guests (pcsd requests time out after pcs's fixed 60 s; issue 4 stays open).
# Run them by hand: `.venv/bin/pytest tests/integration/pending -p no:cacheprovider`.
collect_ignore = ["pending"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "fleet" in getattr(item, "fixturenames", ()))
