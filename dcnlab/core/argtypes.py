"""Option value types for argparse (the CLI) and pytest's addoption (the plugin):
one set, so a bad value reads the same in both, as ``argument --X: <why>``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dcnlab.core.errors import ConfigError

T = TypeVar("T")


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small: use {low} or more")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value

    return parse


def seconds(high: float) -> Callable[[str], float]:
    """A number of seconds from 1 to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: use 1 to {high:g} seconds")
        return value

    return parse


def existing_file(what: str) -> Callable[[str], Path]:
    """The path of a file that exists; ``what`` names it in the error."""

    def parse(text: str) -> Path:
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text}: no such {what}")
        return path

    return parse


def checked(check: Callable[[str], T]) -> Callable[[str], T]:
    """A value type from a library check that raises :class:`ConfigError`."""

    def parse(text: str) -> T:
        try:
            return check(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = check.__name__
    return parse
