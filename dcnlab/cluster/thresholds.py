"""The certification thresholds: which faults and timings a limit can name
(``certification.thresholds`` in a spec, ``--dcn-threshold`` on the command
line), the limits themselves, and how a fault's limits are looked up. Spec
data, below the verdicts that apply them (:mod:`dcnlab.certify.verdict`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace

from dcnlab.core.errors import ConfigError

# The faults the suites know by name, for thresholds and markers. A name is
# what a spec's certification.thresholds and --dcn-threshold use.
FAULT_KINDS = (
    "power-off",
    "hard-reset",
    "freeze",
    "nic-cut",
    "isolate",
    "kill-workload",
    "kill-controld",
    "kill-corosync",
)
TIMING_NAMES = ("detection", "fencing", "recovery", "downtime")
# Growing or shrinking the cluster is no fault: its one limit, client downtime,
# does not come from ``default`` (sized for failovers) and is zero unless a
# spec or --dcn-threshold says otherwise (:func:`membership_change_limit`).
GROW_SHRINK = "grow-shrink"
THRESHOLD_KEYS = ("default", *FAULT_KINDS, GROW_SHRINK)  # certification.thresholds, --dcn-threshold


def timings_of(key: str) -> tuple[str, ...]:
    """The timings a threshold-table key may limit: grow-shrink only downtime."""
    return ("downtime",) if key == GROW_SHRINK else TIMING_NAMES


@dataclass(frozen=True)
class Thresholds:
    """Upper limits in seconds; None leaves a timing unchecked."""

    detection: float | None = None
    fencing: float | None = None
    recovery: float | None = None
    downtime: float | None = None

    def over(self, other: Thresholds) -> Thresholds:
        """These limits, with ``other``'s where ``other`` sets one."""
        return replace(self, **{f.name: v for f in fields(other) if (v := getattr(other, f.name)) is not None})

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_overrides(items: Iterable[str]) -> dict[str, Thresholds]:
    """``FAULT.TIMING=SECONDS`` strings (``--dcn-threshold``) as thresholds
    per fault name (``default`` for every fault)."""
    out: dict[str, Thresholds] = {}
    for item in items:
        key, sep, value = item.partition("=")
        fault, dot, timing = key.strip().rpartition(".")
        if not sep or not dot:
            raise ConfigError(f"threshold {item!r}: write FAULT.TIMING=SECONDS, e.g. power-off.downtime=60")
        if fault not in THRESHOLD_KEYS:
            known = ", ".join(THRESHOLD_KEYS[1:])
            raise ConfigError(f"threshold {item!r}: unknown fault {fault!r}; use default or one of: {known}")
        timings = timings_of(fault)
        if timing not in timings:
            raise ConfigError(f"threshold {item!r}: unknown timing {timing!r}; use one of: {', '.join(timings)}")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        # Zero downtime is a limit (no failed request at all); zero detection
        # or recovery is a typo.
        if not (seconds >= 0 if timing == "downtime" else seconds > 0):
            what = "a number of seconds, 0 or more" if timing == "downtime" else "a positive number of seconds"
            raise ConfigError(f"threshold {item!r}: {value!r} is not {what}")
        out[fault] = out.get(fault, Thresholds()).over(Thresholds(**{timing: seconds}))
    return out


def thresholds_for(fault: str, table: Mapping[str, Thresholds]) -> Thresholds:
    """``table['default']`` overlaid with ``table[fault]``."""
    return table.get("default", Thresholds()).over(table.get(fault, Thresholds()))


def membership_change_limit(table: Mapping[str, Thresholds]) -> float:
    """The client downtime allowed while a node joins or leaves: the table's
    ``grow-shrink`` entry, else zero (not ``default``'s, which is a failover's)."""
    limit = table.get(GROW_SHRINK, Thresholds()).downtime
    return limit if limit is not None else 0.0
