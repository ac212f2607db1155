"""Allure steps and attachments, typed, and harmless without an Allure run.

allure-pytest ships no type hints; everything dcnlab reports to Allure goes
through here. Without ``--alluredir`` allure's calls record nothing, so the
suites call these unconditionally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import allure
import pytest

from dcnlab.report.allure_report import write_results_metadata
from dcnlab.report.timing import Environment

# Untyped module: one Any here instead of casts at every call.
_allure: Any = allure

_TYPES = {"json": "JSON", "svg": "SVG", "txt": "TEXT", "xml": "XML", "yaml": "TEXT", "md": "TEXT", "log": "TEXT"}


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    with _allure.step(title):
        yield


def attach_file(path: Path, name: str | None = None) -> None:
    """Attach ``path`` under ``name`` (default: its file name); the type from its suffix."""
    if not path.is_file():
        return
    kind: Any = getattr(_allure.attachment_type, _TYPES.get(path.suffix.lstrip("."), "TEXT"))
    _allure.attach.file(str(path), name=name or path.name, attachment_type=kind)


def attach_tail(path: Path, name: str, lines: int = 400) -> None:
    """The last ``lines`` lines of a text file (a console log grows for the
    whole session; the end is what a reviewer needs)."""
    if not path.is_file():
        return
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    attach_text("\n".join(tail) + "\n", name)


def attach_text(text: str, name: str, kind: str = "txt") -> None:
    _allure.attach(text, name=name, attachment_type=getattr(_allure.attachment_type, _TYPES.get(kind, "TEXT")))


def parameter(name: str, value: str) -> None:
    """A dynamic parameter (image digest, spec), so Allure keeps runs of
    different images apart instead of merging them into one history."""
    _allure.dynamic.parameter(name, value)


def write_run_info(config: pytest.Config, environment: Environment | None) -> None:
    """At session end of a run with ``--alluredir``: write the categories that
    tell certification failures from harness errors, and the environment (image,
    spec, accelerator, hypervisor, versions) once a case has recorded it."""
    results = getattr(config.option, "allure_report_dir", None)
    if results:
        write_results_metadata(Path(results), environment)
