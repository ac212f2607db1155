"""Root conftest: the dcnlab fixtures come from the installed ``dcnlab`` pytest
plugin (see pyproject's pytest11 entry point), so suites in other repositories
get exactly what these suites get. Nothing is defined here on purpose."""
