"""Root conftest: the dcnlab fixtures come from the installed ``dcnlab`` pytest
plugin (see pyproject's pytest11 entry point), so suites in other repositories
get exactly what these suites get. No fixtures are defined here on purpose.

The one thing here is how this repository's own test run splits over two
pytest-xdist workers (``./dev test`` runs ``-n 2 --dist loadgroup``): see
:func:`tests.lanes.lane`. With any other ``--dist`` nothing is grouped, so a
user's ``pytest suites -n 2`` still gives each worker a fleet of its own.
"""

from __future__ import annotations

import pytest

from tests.lanes import lane


# First: xdist's own hook in the worker turns each item's xdist_group mark into
# its node id's @group suffix, which is what the scheduler reads.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The controller has --dist loadgroup; a worker has dist "no" and xdist's loadgroup flag.
    if getattr(config.option, "dist", "no") != "loadgroup" and not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        name = lane(item.path, config.rootpath, getattr(item, "fixturenames", ()))
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """In a worker under --dist loadgroup: xdist must have put each grouped
    item's group into its node id, or the scheduler splits the lanes and each
    worker boots a session fleet of its own. It does not on pytest 9.2
    (pytest-dev/pytest-xdist#1386): say so rather than run that way."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if grouped and not any("@" in item.nodeid for item in grouped):
        raise pytest.UsageError(
            f"pytest-xdist's --dist loadgroup did not group the tests on pytest {pytest.__version__} "
            "(pytest-dev/pytest-xdist#1386): run ./dev setup (it installs pytest<9.2), or ./dev test -n 0"
        )
