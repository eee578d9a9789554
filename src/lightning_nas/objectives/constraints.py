"""Hardware and quality constraints written in human units (``max_latency: 100ms``, ``max_params: 5M``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lightning_nas.objectives.score import metric_key

__all__ = ["CONSTRAINT_KEYS", "Constraint", "parse_constraints", "parse_quantity", "total_violation"]

Kind = Literal["max", "min"]

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ%]*)\s*$")

_COUNT_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}
_TIME_UNITS = {"": 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ns": 1e-6}
_MEMORY_UNITS = {"": 1.0, "b": 2.0**-20, "kb": 2.0**-10, "kib": 2.0**-10, "mb": 1.0, "mib": 1.0,
                 "gb": 2.0**10, "gib": 2.0**10}
_FRACTION_UNITS = {"": 1.0, "%": 0.01}

CONSTRAINT_KEYS: dict[str, tuple[str, Kind, dict[str, float]]] = {
    "max_params": ("params", "max", _COUNT_UNITS),
    "max_macs": ("macs", "max", _COUNT_UNITS),
    "max_latency": ("latency", "max", _TIME_UNITS),
    "max_memory": ("memory", "max", _MEMORY_UNITS),
    "min_accuracy": ("accuracy", "min", _FRACTION_UNITS),
}
"""Constraint key -> (metric alias, kind, unit multipliers). Bounds are stored in the metric's own
units: parameter and MAC counts, milliseconds, MiB (``hw/memory_mb``; KB/MB/GB are binary), and
accuracy as a fraction. A bare number is already in those units."""


@dataclass(frozen=True)
class Constraint:
    """One bound on one result metric.

    Args:
        metric: an objective alias (``"latency"``) or a ``stage/metric`` name.
        bound: the limit, in the metric's units.
        kind: ``"max"`` (value must be at most ``bound``) or ``"min"`` (at least ``bound``).

    Example:
        >>> c = Constraint("latency", 100.0, "max")
        >>> c.violation({"hw/latency_ms": 150.0})
        0.5
    """

    metric: str
    bound: float
    kind: Kind

    def __post_init__(self) -> None:
        metric_key(self.metric)
        if self.kind not in ("max", "min"):
            raise ValueError(f"constraint kind must be 'max' or 'min', got {self.kind!r}")
        if not math.isfinite(self.bound):
            raise ValueError(f"constraint bound must be finite, got {self.bound!r}")

    @property
    def key(self) -> str:
        """The result metric name the constraint reads (e.g. ``hw/latency_ms``)."""
        return metric_key(self.metric)

    def _value(self, metrics: Mapping[str, float]) -> float:
        value = metrics.get(self.key, math.nan)
        return float(value) if value is not None else math.nan

    def is_satisfied(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics`` meet the bound; a missing or NaN metric does not.

        Args:
            metrics: result metrics by ``stage/metric`` name.
        """
        return self.violation(metrics) == 0.0

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` miss the bound, relative to it (0 when satisfied, ``inf`` if missing).

        ``max``: ``(value - bound) / bound``; ``min``: ``(bound - value) / bound`` (a zero bound
        divides by 1 instead).

        Args:
            metrics: result metrics by ``stage/metric`` name.
        """
        value = self._value(metrics)
        if math.isnan(value):
            return math.inf
        excess = value - self.bound if self.kind == "max" else self.bound - value
        return max(0.0, excess) / (abs(self.bound) or 1.0)

    def __str__(self) -> str:
        return f"{self.metric} {'<=' if self.kind == 'max' else '>='} {self.bound:g}"


def parse_quantity(value: object, units: Mapping[str, float], where: str) -> float:
    """A number with an optional unit suffix (case-insensitive) scaled by ``units``.

    Args:
        value: a number or a string such as ``"5M"``, ``"0.1s"``, ``"75%"``.
        units: suffix (lower case, ``""`` for none) -> multiplier.
        where: the config key named in errors.
    """
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a number with an optional unit, got {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _NUMBER.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(f"{where}: cannot parse {value!r} (expected a number with an optional unit)")
    if unit not in units:
        known = ", ".join(u for u in units if u) or "none"
        raise ValueError(f"{where}: unknown unit {unit!r} in {value!r}; use one of: {known}")
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return number * units[unit]


def _check_bound(key: str, kind: Kind, bound: float, raw: object) -> None:
    where = f"objective.constraints.{key}"
    if bound < 0:
        raise ValueError(f"{where} must not be negative, got {raw!r}")
    if kind == "max" and bound == 0:
        raise ValueError(f"{where} of {raw!r} is impossible to satisfy (must be above 0)")
    if key == "min_accuracy" and bound > 1:
        raise ValueError(f"{where} must be a fraction in [0, 1] (or a percentage such as '75%'), got {raw!r}")


def parse_constraints(mapping: Mapping[str, object] | None) -> list[Constraint]:
    """Constraints from a config mapping such as ``{"max_latency": "100ms", "min_accuracy": "75%"}``.

    Keys: ``max_params`` / ``max_macs`` (K/M/G suffixes), ``max_latency`` (ns/us/ms/s, bare = ms),
    ``max_memory`` (B/KB/MB/GB, binary; bare = MB), ``min_accuracy`` (fraction or ``%``).
    A ``None`` value skips the key.

    Args:
        mapping: constraint key -> bound.

    Raises:
        ValueError: naming ``objective.constraints.<key>`` for an unknown key, an unparsable
            unit, or an impossible bound (negative, zero maximum, accuracy above 1).
    """
    constraints: list[Constraint] = []
    for key, raw in (mapping or {}).items():
        if key not in CONSTRAINT_KEYS:
            raise ValueError(f"objective.constraints.{key} is not a known constraint; use one of "
                             f"{sorted(CONSTRAINT_KEYS)}")
        if raw is None:
            continue
        alias, kind, units = CONSTRAINT_KEYS[key]
        bound = parse_quantity(raw, units, f"objective.constraints.{key}")
        _check_bound(key, kind, bound, raw)
        constraints.append(Constraint(alias, bound, kind))
    return constraints


def total_violation(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> float:
    """Sum of the normalised violations of ``constraints`` (0 when all hold).

    Args:
        constraints: the constraints.
        metrics: result metrics by ``stage/metric`` name.
    """
    return float(sum(c.violation(metrics) for c in constraints))
