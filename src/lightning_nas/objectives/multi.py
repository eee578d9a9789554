"""Multi-objective, constrained objectives: a Pareto view of results plus a scalar for ranking."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from lightning_nas.arch import EvalResult
from lightning_nas.objectives.constraints import Constraint, parse_constraints
from lightning_nas.objectives.front import front_records
from lightning_nas.objectives.pareto import hypervolume as pareto_hypervolume
from lightning_nas.objectives.score import METRIC_SCALES, ScoreFn, metric_key, result_of

__all__ = ["FEASIBLE_FLOOR", "INFEASIBLE_SCORE", "MultiObjective", "ScalarObjective", "as_objective"]

INFEASIBLE_SCORE = -1e9
"""An infeasible candidate scores ``INFEASIBLE_SCORE - violation``."""

FEASIBLE_FLOOR = -1e8
"""Feasible scores are clamped at this floor, so they always rank above infeasible ones."""

RecordT = TypeVar("RecordT")


@dataclass(frozen=True)
class _Indexed:
    """A result with a position, as :func:`front_records` reads records."""

    index: int
    result: EvalResult


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_metrics(where: str, given: Mapping[str, str | None]) -> dict[str, str]:
    """``given`` without the names set to ``None`` (a config drops one a preset it extends names), checked."""
    chosen = {name: direction for name, direction in given.items() if direction is not None}
    for name, direction in chosen.items():
        try:
            metric_key(name)
        except ValueError as error:
            raise ValueError(f"{where}.{name}: {error}") from None
        if direction not in ("max", "min"):
            raise ValueError(f"{where}.{name} must be 'max' or 'min', got {direction!r}")
    return chosen


class MultiObjective:
    """Several metrics to optimise at once, under constraints.

    Strategies that understand Pareto dominance (NSGA-II) read :meth:`vector` and
    :meth:`violation`; everything else calls the object like :class:`Objective` and gets a scalar:
    the weighted sum ``sum(weight * value * METRIC_SCALES[name])`` (negated for ``"min"`` metrics)
    over ``metrics`` and ``score_metrics`` for a feasible candidate, ``INFEASIBLE_SCORE - violation``
    for an infeasible one (so it ranks below every feasible candidate and infeasible ones rank by
    violation), and ``-inf`` for a failed candidate or one missing an objective metric.

    Args:
        metrics: metric name (alias such as ``"latency"`` or ``stage/metric``) -> ``"max"``/``"min"``;
            ``None`` leaves a metric out (so a config can drop one a preset it extends names).
        weights: non-negative importance of each metric in the scalar score (the sign comes from
            the direction; params and MACs count in millions, latency in ms, memory in MB).
            Default: 1 for the first metric and 0 for the others.
        constraints: e.g. ``{"max_latency": "100ms", "min_accuracy": "75%"}``
            (see :func:`~lightning_nas.objectives.constraints.parse_constraints`).
        score_metrics: metrics that count in the scalar score only (with their ``weights``), left out
            of the Pareto front, its hypervolume and NSGA-II's vectors: e.g. ``{"macs": "max"}`` to
            break near-ties between accuracies by capacity without calling more MACs better on the
            front. Same form as ``metrics``; a name may not be in both.
        reference_point: metric name -> hypervolume reference value. A metric left out uses the
            bound of a constraint on it, else 0 for accuracy, else the worst value among the
            feasible records given, pushed out by 10% of their range.

    Example:
        >>> objective = MultiObjective({"accuracy": "max", "latency": "min"},
        ...                            constraints={"max_latency": "50ms"})
        >>> objective(EvalResult("ok", {"search/val_acc": 0.9, "hw/latency_ms": 20.0}))
        0.9
        >>> capacity = MultiObjective({"accuracy": "max", "latency": "min"}, {"accuracy": 1.0, "macs": 0.01},
        ...                           score_metrics={"macs": "max"})
        >>> capacity.names, capacity(EvalResult("ok", {"search/val_acc": 0.9, "hw/latency_ms": 2.0,
        ...                                            "model/macs": 3e6}))
        (['accuracy', 'latency'], 0.93)
    """

    def __init__(
        self,
        metrics: Mapping[str, str | None] | None = None,
        weights: Mapping[str, float] | None = None,
        constraints: Mapping[str, str | float] | None = None,
        reference_point: Mapping[str, float] | None = None,
        score_metrics: Mapping[str, str | None] | None = None,
    ) -> None:
        given = dict(metrics) if metrics is not None else {"accuracy": "max", "latency": "min"}
        chosen = _check_metrics("objective.metrics", given)
        if not chosen:
            raise ValueError("objective.metrics must name at least one metric")
        score_only = _check_metrics("objective.score_metrics", dict(score_metrics or {}))
        for name in score_only:
            if name in chosen:
                raise ValueError(f"objective.score_metrics.{name} is also in objective.metrics: a metric is either "
                                 "on the Pareto front or in the score only")
        self.names: list[str] = list(chosen)
        self.directions: list[str] = [chosen[name] for name in self.names]
        self.keys: list[str] = [metric_key(name) for name in self.names]
        self.score_metrics: dict[str, str] = score_only
        self.score_directions: dict[str, str] = {**chosen, **score_only}
        """Every metric the scalar score reads (the front's, then the score-only ones) -> its direction."""
        self.weights = self._check_weights(weights)
        self.constraints: list[Constraint] = parse_constraints(constraints)
        self.reference_point = self._check_reference(reference_point)

    def _check_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        if weights is None:
            return {name: float(i == 0) for i, name in enumerate(self.names)}
        checked = dict.fromkeys(self.score_directions, 0.0)
        for name, weight in weights.items():
            if name not in checked:
                raise ValueError(f"objective.weights.{name} is not one of objective.metrics or "
                                 f"objective.score_metrics {list(checked)}")
            if not _is_number(weight) or weight < 0:
                raise ValueError(f"objective.weights.{name} must be a finite number >= 0 (the direction "
                                 f"gives the sign), got {weight!r}")
            checked[name] = float(weight)
        if not any(checked.values()):
            raise ValueError("objective.weights must give at least one metric a positive weight")
        return checked

    def _check_reference(self, reference: Mapping[str, float] | None) -> dict[str, float]:
        checked: dict[str, float] = {}
        for name, value in (reference or {}).items():
            if name not in self.names:
                raise ValueError(f"objective.reference_point.{name} is not one of objective.metrics "
                                 f"{self.names}")
            if not _is_number(value):
                raise ValueError(f"objective.reference_point.{name} must be a finite number, got {value!r}")
            checked[name] = float(value)
        return checked

    def vector(self, result: EvalResult) -> NDArray[np.float64]:
        """The objective values of ``result`` in ``names`` order (raw units; NaN where missing).

        Args:
            result: an evaluation result.
        """
        return np.array([result.metrics.get(key, math.nan) for key in self.keys], dtype=np.float64)

    def violation(self, result: EvalResult) -> float:
        """Total normalised constraint violation; ``inf`` when failed, or when an objective is missing
        and no constraint is known to be broken.

        Args:
            result: an evaluation result.
        """
        if not result.ok:
            return math.inf
        parts = [c.violation(result.metrics) for c in self.constraints]
        known = sum(v for v in parts if v < math.inf)
        if known > 0:  # known to be broken: ranked by it whatever is missing (screened before training)
            return float(known)
        if math.inf in parts or not np.isfinite(self.vector(result)).all():
            return math.inf
        if not all(math.isfinite(self._value(result, name)) for name in self.score_metrics if self.weights[name]):
            return math.inf
        return 0.0

    @staticmethod
    def _value(result: EvalResult, name: str) -> float:
        value = result.metrics.get(metric_key(name), math.nan)
        return float(value) if _is_number(value) else math.nan

    def feasible(self, result: EvalResult) -> bool:
        """Whether ``result`` succeeded, has every objective and meets every constraint.

        Args:
            result: an evaluation result.
        """
        return self.violation(result) == 0.0

    def __call__(self, result: EvalResult) -> float:
        violation = self.violation(result)
        if violation > 0:
            return INFEASIBLE_SCORE - violation
        total = 0.0
        for name, direction in self.score_directions.items():
            if self.weights[name]:
                sign = 1.0 if direction == "max" else -1.0
                total += self.weights[name] * sign * self._value(result, name) * METRIC_SCALES.get(name, 1.0)
        return max(round(total, 12), FEASIBLE_FLOOR)

    def _feasible_points(self, records: Iterable[RecordT]) -> tuple[list[RecordT], NDArray[np.float64]]:
        kept = [r for r in records if self.feasible(result_of(r))]
        points = np.array([self.vector(result_of(r)) for r in kept], dtype=np.float64)
        return kept, points.reshape(len(kept), len(self.names))

    def front(self, records: Iterable[RecordT]) -> list[RecordT]:
        """The feasible, non-dominated records, in their input order.

        Args:
            records: history records (anything with ``.result``) or :class:`EvalResult` objects.
        """
        items = list(records)
        chosen = {r.index for r in front_records([_Indexed(i, result_of(r)) for i, r in enumerate(items)], self)}
        return [r for i, r in enumerate(items) if i in chosen]

    def reference(self, records: Iterable[Any] = ()) -> NDArray[np.float64]:
        """The hypervolume reference point (see the class docstring for the defaults).

        Args:
            records: the records whose worst values set any reference not otherwise given
                (NaN for such a metric when no record is feasible).
        """
        _, points = self._feasible_points(records)
        return np.array([self._reference_value(j, points) for j in range(len(self.names))])

    def _reference_value(self, j: int, points: NDArray[np.float64]) -> float:
        name, key, direction = self.names[j], self.keys[j], self.directions[j]
        if name in self.reference_point:
            return self.reference_point[name]
        bounding = "max" if direction == "min" else "min"
        bounds = [c.bound for c in self.constraints if c.key == key and c.kind == bounding]
        if bounds:
            return min(bounds) if direction == "min" else max(bounds)
        if key == metric_key("accuracy") and direction == "max":
            return 0.0
        if not len(points):
            return math.nan
        column = points[:, j]
        worst = float(column.max() if direction == "min" else column.min())
        margin = 0.1 * (float(np.ptp(column)) or abs(worst) or 1.0)
        return worst + margin if direction == "min" else worst - margin

    def hypervolume(self, records: Iterable[Any], reference: Mapping[str, float] | None = None) -> float:
        """Hypervolume of the feasible records with respect to :meth:`reference` (0 if none).

        Args:
            records: history records or :class:`EvalResult` objects.
            reference: optional per-metric overrides of the reference point.
        """
        kept = list(records)
        _, points = self._feasible_points(kept)
        if not len(points):
            return 0.0
        ref = self.reference(kept)
        for name, value in (reference or {}).items():
            if name not in self.names:
                raise ValueError(f"reference: {name!r} is not one of the objective metrics {self.names}")
            ref[self.names.index(name)] = float(value)
        return pareto_hypervolume(points, ref, self.directions)

    def __repr__(self) -> str:
        metrics = dict(zip(self.names, self.directions, strict=True))
        constraints = [str(c) for c in self.constraints]
        extra = f", score_metrics={self.score_metrics}" if self.score_metrics else ""
        return f"MultiObjective(metrics={metrics}{extra}, weights={self.weights}, constraints={constraints})"


class ScalarObjective:
    """Any score callable seen through the objective interface: one objective to maximise, no constraints.

    ``names``, ``directions``, :meth:`vector` and :meth:`violation` are those of :class:`MultiObjective`,
    so a strategy reads every objective the same way (:func:`as_objective`). A non-finite score counts
    as infinitely infeasible.

    Args:
        score: the callable (e.g. :func:`~lightning_nas.objectives.score.default_score` or an ``Objective``).
    """

    def __init__(self, score: ScoreFn) -> None:
        self.score = score
        self.names: list[str] = ["score"]
        self.directions: list[str] = ["max"]
        self.constraints: list[Constraint] = []

    def __call__(self, result: EvalResult) -> float:
        return float(self.score(result))

    def vector(self, result: EvalResult) -> NDArray[np.float64]:
        return np.array([float(self.score(result))], dtype=np.float64)

    def violation(self, result: EvalResult) -> float:
        return 0.0 if math.isfinite(float(self.score(result))) else math.inf


def as_objective(score: ScoreFn) -> MultiObjective | ScalarObjective:
    """``score`` through the objective interface (names, directions, vector, violation, constraints).

    Example:
        >>> as_objective(default_score).directions
        ['max']
    """
    return score if isinstance(score, MultiObjective | ScalarObjective) else ScalarObjective(score)
