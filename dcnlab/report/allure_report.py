"""The Allure HTML report of a run: categories, environment, and the build.

A run's ``--alluredir`` holds allure-pytest's results; the session adds
``categories.json`` and ``environment.properties`` (see
:func:`write_results_metadata`). :func:`build_report` turns the directory into a
static HTML report with the Allure 3 CLI that ``./dev setup`` installs from npm
into ``.tools/``, pinned to :data:`ALLURE_VERSION`. Nothing here opens a browser
or contacts the network.

Allure 3's default ("awesome") report takes its categories from the Allure
config, not from ``categories.json`` (only its Allure-2-style "classic" report
reads that file), so the report is built with a generated ``allurerc.json``
carrying the same :data:`CATEGORIES`. ``environment.properties`` is read by both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcnlab.core.errors import ConfigError, DcnlabError
from dcnlab.report.timing import Environment

# Pinned: a new Allure release may change the report's pages and break the
# browser test; ./dev's ALLURE_VERSION installs exactly this one.
ALLURE_VERSION = "3.18.0"
TOOLS_DIR = Path(__file__).resolve().parents[2] / ".tools"
DEFAULT_OUT = Path("dcnlab-report/html")
REPORT_NAME = "dcnlab certification"

# allure-pytest writes a failure's message as ``traceback.format_exception_only``
# does: "AssertionError: FAIL: ..." for a verdict (dcnlab/certify/verdict.py), and
# "dcnlab.core.errors.CommandError: ..." for an error of the harness (builtins lose
# the module prefix, so only harness exceptions start with "dcnlab.").
# The patterns are anchored and end in [\s\S]*, so they mean the same under
# Allure 3 (JavaScript RegExp.test, a search) and Allure 2 (Java matches(), a
# full match). Order matters: a result goes to the first category it matches.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Certification failures",
        "description": "the image and cluster spec did not meet a certification expectation (a FAIL verdict), "
        "or could not form the cluster the spec describes (a CertificationFailure while setting it up)",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"^(AssertionError|dcnlab\.core\.errors\.CertificationFailure): FAIL: [\s\S]*",
    },
    {
        "name": "Harness and infrastructure errors",
        "description": "dcnlab could not run the check (a DcnlabError: command, wait, fleet, cluster, fault...); "
        "says nothing about the product",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"^dcnlab\.[\w.]+: [\s\S]*",
    },
    {
        "name": "Other failed checks",
        "description": "an assertion that is not a certification verdict",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Unexpected errors",
        "description": "an exception the harness did not raise on purpose: a bug in a test or in dcnlab",
        "matchedStatuses": ["broken"],
    },
]


class ReportError(DcnlabError):
    """The Allure report could not be built."""


# --------------------------------------------------------------- results dir


def environment_properties(env: Environment) -> str:
    """``environment.properties`` for ``env``: what was certified, on what."""
    rows = {
        "image": f"{env.image_recipe} {env.image_digest}",
        "image.path": env.image_path,
        "spec": env.spec,
        "accelerator": env.accelerator,
        "hypervisor": env.hypervisor,
        **{f"version.{package}": version for package, version in sorted(env.versions.items())},
        **{f"host.{node}": host for node, host in env.placement.items()},
    }
    return "".join(f"{_escape(key, key=True)}={_escape(value)}\n" for key, value in rows.items())


def _escape(text: str, key: bool = False) -> str:
    """Java properties escaping; beyond ASCII as \\uXXXX, so Allure 2 (ISO 8859-1) reads it too."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif ch in "=:#!" or (ch == " " and (key or i == 0)):
            out.append("\\" + ch)
        elif not 0x20 <= ord(ch) < 0x7F:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(ch))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def write_results_metadata(results: Path, environment: Environment | None) -> None:
    """Write ``categories.json`` and (when known) ``environment.properties`` into
    an allure results directory. Atomic per file: under pytest-xdist every
    worker writes the same content at its session end."""
    results.mkdir(parents=True, exist_ok=True)
    _write_atomic(results / "categories.json", json.dumps(CATEGORIES, indent=1) + "\n")
    if environment is not None:
        _write_atomic(results / "environment.properties", environment_properties(environment))


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------- the build


def allure_config(name: str = REPORT_NAME) -> dict[str, Any]:
    """The ``allurerc.json`` the report is built with."""
    return {
        "name": name,
        "plugins": {
            "awesome": {
                "options": {
                    "reportName": name,
                    # the Suites view: package, module, class
                    "groupBy": ["parentSuite", "suite", "subSuite"],
                    "stepTreeExpansion": "expand_failed_only",
                }
            }
        },
        "categories": CATEGORIES,
    }


def allure_command(tools: Path = TOOLS_DIR) -> list[str]:
    """The pinned Allure CLI, or a :class:`ReportError` saying how to get it."""
    package = tools / "node_modules" / "allure" / "package.json"
    if not package.is_file():
        raise ReportError(f"Allure 3 is not installed (no {package}): run ./dev setup")
    try:
        found = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError) as err:
        raise ReportError(f"cannot read the Allure version from {package} ({err}): run ./dev setup") from err
    if found != ALLURE_VERSION:
        raise ReportError(f"Allure {found} is installed in {tools}, dcnlab needs {ALLURE_VERSION}: run ./dev setup")
    node = shutil.which("node")
    if node is None:
        raise ReportError("node (Node.js 20 or later) is not on PATH; Allure 3 runs on it: install it, run ./dev setup")
    return [node, str(tools / "node_modules" / "allure" / "cli.js")]


def check_results(results: Path) -> None:
    if not results.is_dir():
        raise ConfigError(f"results dir {results} does not exist: run pytest with --alluredir {results}")
    if next(results.glob("*-result.json"), None) is None:
        raise ConfigError(f"results dir {results} has no *-result.json: run pytest with --alluredir {results}")


def _check_out(out: Path) -> None:
    """``out`` is replaced as a whole: refuse anything but an empty dir or an old report."""
    if out.is_file():
        raise ConfigError(f"--out {out} is a file: give a directory for the report")
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise ConfigError(f"--out {out} exists and holds something else than an Allure report: choose another --out")


def _is_report(path: Path) -> bool:
    return (path / "index.html").is_file() and (path / "summary.json").is_file()


def _tests_in(report: Path) -> int | None:
    """How many tests the report holds, by its summary.json (None: unknown)."""
    try:
        total = json.loads((report / "summary.json").read_text())["stats"]["total"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return total if isinstance(total, int) else None


def build_report(
    results: Path,
    out: Path = DEFAULT_OUT,
    *,
    name: str = REPORT_NAME,
    timeout: float = 300,
    tools: Path = TOOLS_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build the HTML report of ``results`` into ``out`` (replacing an earlier
    report there) and return ``out``'s ``index.html``. The report loads its data
    with fetch(), so view it through a web server, not as a file:// page."""
    results, out = results.resolve(), out.resolve()
    check_results(results)
    _check_out(out)
    command = allure_command(tools)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        config = Path(work) / "allurerc.json"
        config.write_text(json.dumps(allure_config(name), indent=1))
        staged = Path(work) / "html"
        argv = [*command, "generate", "--config", str(config), "--cwd", work, "--output", str(staged), str(results)]
        if progress:
            progress(f"building the Allure {ALLURE_VERSION} report of {results}")
        try:
            # cwd: Allure writes nothing into the user's directory.
            done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise ReportError(f"allure generate did not finish within {timeout:.0f}s on {results}") from err
        if done.returncode != 0 or not _is_report(staged):
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ReportError(f"allure generate failed (exit {done.returncode}) on {results}:\n{tail}")
        if _tests_in(staged) == 0:
            # Allure skips result files it cannot parse and still exits 0.
            raise ReportError(f"Allure read no test result in {results}: are its *-result.json files complete?")
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    return out / "index.html"


def how_to_view(out: Path) -> str:
    return (
        f"the report is in {out}; it loads its data with fetch(), so serve it, e.g.\n"
        f"  python3 -m http.server --bind 127.0.0.1 --directory {out} 8000\n"
        "and open http://127.0.0.1:8000/"
    )
