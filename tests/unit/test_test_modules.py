"""pytest's default import mode puts each test file's folder on sys.path and imports the file by
its basename, unless the folder is a package. Two such files with one basename make collection
fail with "import file mismatch" for whoever collects both (./dev test collects tests and suites
together), so the basenames must be unique across those folders."""

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _in_package(path: Path) -> bool:
    return (path.parent / "__init__.py").exists()


def test_test_module_basenames_are_unique_outside_packages() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for top in ("tests", "suites"):
        for path in sorted((ROOT / top).rglob("test_*.py")):
            if not _in_package(path):
                by_name[path.name].append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, (
        f"test modules outside packages share a basename: {clashes}; rename one of each "
        "(pytest would refuse to collect the second: 'import file mismatch')"
    )
