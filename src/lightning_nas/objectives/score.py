"""Scalar objectives: what a single-objective strategy maximises."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from lightning_nas.arch import EvalResult

__all__ = ["METRIC_ALIASES", "METRIC_SCALES", "Objective", "ScoreFn", "best_so_far", "default_score", "metric_key",
           "result_of"]

ScoreFn = Callable[[EvalResult], float]
"""The scalar a search maximises: any callable from a result to a float (an :class:`Objective`, a
:class:`~lightning_nas.objectives.MultiObjective`, :func:`default_score`)."""


def default_score(result: EvalResult) -> float:
    """Validation accuracy; ``-inf`` for a failed or NaN candidate (never selected)."""
    value = result.metrics.get("search/val_acc", math.nan)
    return value if result.ok and math.isfinite(value) else -math.inf


def result_of(record: object) -> EvalResult:
    """The :class:`EvalResult` of a history record (or the result itself)."""
    result = getattr(record, "result", record)
    if not isinstance(result, EvalResult):
        raise TypeError(f"expected a history record or an EvalResult, got {type(record).__name__}")
    return result


def best_so_far(records: Iterable[object], score: ScoreFn = default_score) -> np.ndarray[Any, Any]:
    """Running maximum of ``score`` over records (or results) in evaluation order (``-inf`` before any success)."""
    values = np.array([score(result_of(r)) for r in records], dtype=float)
    return np.maximum.accumulate(values) if values.size else values

METRIC_ALIASES: dict[str, str] = {
    "accuracy": "search/val_acc",
    "params": "model/params",
    "macs": "model/macs",
    "latency": "hw/latency_ms",
    "memory": "hw/memory_mb",
    "robustness": "robust/adv_ratio",
    "corruption_robustness": "robust/corrupt_ratio",
}
"""Short objective names and the result metric each one reads."""

METRIC_SCALES: dict[str, float] = {
    "params": 1e-6, "macs": 1e-6, "latency": 1.0, "memory": 1.0, "accuracy": 1.0, "robustness": 1.0,
    "corruption_robustness": 1.0,
}
"""Units used in weighted sums: params and MACs in millions, latency in ms, memory in MB."""


def metric_key(name: str) -> str:
    """The result metric for an objective name (an alias or a full ``stage/metric`` name)."""
    if name in METRIC_ALIASES:
        return METRIC_ALIASES[name]
    if "/" in name:
        return name
    raise ValueError(
        f"objective: unknown metric {name!r}; use one of {sorted(METRIC_ALIASES)} or a 'stage/metric' name"
    )


class Objective:
    """A weighted sum of metrics to maximise (negative weights penalise).

    Failed candidates and candidates missing a weighted metric score ``-inf``.

    Args:
        weights: metric name -> weight, e.g. ``{"accuracy": 1.0, "latency": -0.5}``; params and
            MACs count in millions, latency in ms, memory in MB.

    Example:
        >>> score = Objective({"accuracy": 1.0, "params": -0.1})
        >>> score(EvalResult("ok", {"search/val_acc": 0.9, "model/params": 2e6}))
        0.7
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        chosen = dict(weights) if weights else {"accuracy": 1.0}
        self.weights: dict[str, float] = {}
        for name, weight in chosen.items():
            metric_key(name)
            if not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ValueError(f"objective.weights.{name} must be a finite number, got {weight!r}")
            self.weights[name] = float(weight)

    def __call__(self, result: EvalResult) -> float:
        if not result.ok:
            return -math.inf
        total = 0.0
        for name, weight in self.weights.items():
            value = result.metrics.get(metric_key(name), math.nan)
            if not math.isfinite(value):
                return -math.inf
            total += weight * value * METRIC_SCALES.get(name, 1.0)
        return round(total, 12)
