"""tests/meta runs certification suites against bad inputs (the failover
suite against bad specs: 40 minutes under TCG; the image suite against an image
without resource-agents) and expects them to fail for the right reason.
Collected only when named on the command line (``pytest tests/meta``), not by
``pytest tests`` (the README's test command and CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent.resolve()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return None
    return True
