"""One "best" everywhere: the Pareto front of search records and the ranking that picks the chosen model.

The terminal table, the plots, W&B and ``summary.json`` all read these functions, so they agree on
which candidates form the front and which one is the best.

* :func:`front_objectives` names the front's objectives: a multi-objective's own metrics and
  directions; otherwise accuracy (max), parameters (min) and latency (min).
* :func:`front_records` is the feasible, non-dominated set over those objectives.
* :func:`rank_records` orders candidates by score; equal scores are ordered by Pareto dominance
  (over the front objectives and the costs), then by parameters, then latency, then evaluation order.

Records are anything with ``.index`` and ``.result`` (an evaluation result with ``ok`` and ``metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from lightning_nas.objectives.pareto import pareto_front
from lightning_nas.objectives.score import metric_key

__all__ = [
    "COST_METRICS",
    "DEFAULT_FRONT",
    "METRIC_LABELS",
    "describe_objectives",
    "front_objectives",
    "front_records",
    "rank_records",
    "score_label",
]


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def metrics(self) -> dict[str, float]: ...


class _Record(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def result(self) -> Any: ...


R = TypeVar("R", bound=_Record)
Score = Callable[[Any], float]

DEFAULT_FRONT: tuple[tuple[str, str], ...] = (
    ("search/val_acc", "max"), ("model/params", "min"), ("hw/latency_ms", "min"))
"""The front's objectives when the search has a single score: accuracy against size and latency."""

COST_METRICS: tuple[str, ...] = ("model/params", "hw/latency_ms")
"""Costs that break ties between equal scores, in this order (lower first)."""

METRIC_LABELS: dict[str, str] = {
    "search/val_acc": "accuracy", "model/params": "parameters", "model/macs": "MACs",
    "hw/latency_ms": "latency (ms)", "hw/memory_mb": "memory (MB)"}
"""Short axis and column names of the usual metrics."""


def front_objectives(objective: object = None) -> list[tuple[str, str]]:
    """``(metric key, "max"|"min")`` pairs of the front: a multi-objective's own, else :data:`DEFAULT_FRONT`."""
    keys, directions = getattr(objective, "keys", None), getattr(objective, "directions", None)
    if isinstance(keys, list) and isinstance(directions, list) and len(keys) == len(directions) and keys:
        return [(str(k), str(d)) for k, d in zip(keys, directions, strict=True)]
    return list(DEFAULT_FRONT)


def describe_objectives(objectives: Sequence[tuple[str, str]]) -> str:
    """E.g. ``"accuracy (max), latency (ms) (min), memory (MB) (min)"``."""
    return ", ".join(f"{METRIC_LABELS.get(key, key)} ({direction})" for key, direction in objectives)


def score_label(objective: object = None) -> str:
    """What the scalar score is, for a column title or an axis: the metric itself when it is one metric.

    Args:
        objective: an ``Objective`` or ``MultiObjective`` (their weights); ``None`` or the default
            score is validation accuracy; any other callable is an opaque ``"score"``.
    """
    weights = getattr(objective, "weights", None)
    if not isinstance(weights, dict):
        default = objective is None or getattr(objective, "__name__", "") == "default_score"
        return "accuracy" if default else "score"
    directions = getattr(objective, "score_directions", None)  # a MultiObjective's score-only metrics too
    if not isinstance(directions, dict):
        directions = dict(zip(getattr(objective, "names", []), getattr(objective, "directions", []), strict=False))
    signed = {n: (w if directions.get(n, "max") == "max" else -w) for n, w in weights.items() if w}
    if len(signed) == 1 and next(iter(signed.values())) == 1.0:
        name = next(iter(signed))
        return METRIC_LABELS.get(metric_key(name), name)
    return "score = " + " ".join(f"{w:+g}*{n}" for n, w in signed.items())


def _feasible(objective: object, result: Any) -> bool:
    check = getattr(objective, "feasible", None)
    return bool(check(result)) if callable(check) else bool(result.ok)


def _table(records: Sequence[_Record], keys: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    rows = [[float(r.result.metrics.get(k, math.nan)) for k in keys] for r in records]
    return np.array(rows, dtype=np.float64).reshape(len(records), len(keys))


def front_records(records: Iterable[R], objective: object = None,
                  objectives: Sequence[tuple[str, str]] | None = None) -> list[R]:
    """The feasible records no other feasible record dominates, best first in the first objective.

    Args:
        records: evaluated candidates (failed ones never count).
        objective: the search's objective: a ``MultiObjective`` gives the metrics, directions and
            feasibility; with anything else the front is over :data:`DEFAULT_FRONT`.
        objectives: explicit ``(metric key, direction)`` pairs instead of the objective's.
            Where the pairs are not a multi-objective's own, a metric some successful record
            lacks is left out (e.g. latency when hardware was not measured).
    """
    own = objectives is None and isinstance(getattr(objective, "keys", None), list)
    pairs = list(objectives) if objectives is not None else front_objectives(objective)
    kept = [r for r in records if r.result.ok and _feasible(objective, r.result)]
    if not own:
        pairs = [(k, d) for k, d in pairs if kept and np.isfinite(_table(kept, [k])).all()]
    if not kept or not pairs:
        return []
    table = _table(kept, [k for k, _ in pairs])
    usable = np.flatnonzero(np.isfinite(table).all(axis=1))
    if not usable.size:
        return []
    members = [kept[int(usable[i])] for i in pareto_front(table[usable], [d for _, d in pairs])]
    first, direction = pairs[0]
    sign = -1.0 if direction == "max" else 1.0
    return sorted(members, key=lambda r: (sign * r.result.metrics[first], r.index))


def _dominated_among(group: Sequence[_Record], objective: object) -> set[int]:
    """Indices (into ``group``) dominated within ``group`` over the front objectives and the costs."""
    pairs = front_objectives(objective) + [(key, "min") for key in COST_METRICS]
    unique = list(dict.fromkeys(pairs))
    table = _table(group, [k for k, _ in unique])
    columns = np.isfinite(table).all(axis=0)
    if not columns.any():
        return set()
    directions = [d for (_, d), use in zip(unique, columns, strict=True) if use]
    front = set(pareto_front(table[:, columns], directions).tolist())
    return set(range(len(group))) - front


def rank_records(records: Iterable[R], score: Score, objective: object = None) -> list[R]:
    """Records with a finite score, best first: by score, then (on equal scores) undominated before
    dominated, fewer parameters, lower latency, earlier evaluation.

    Args:
        records: evaluated candidates.
        score: the search's scalar score (higher is better).
        objective: what the front is over (default: ``score`` itself when it names metrics).
    """
    objective = score if objective is None else objective
    scored = [(score(r.result), r) for r in records]
    scored = [(s, r) for s, r in scored if math.isfinite(s)]
    groups: dict[float, list[_Record]] = {}
    for value, record in scored:
        groups.setdefault(value, []).append(record)
    dominated: set[int] = set()
    for group in groups.values():
        if len(group) > 1:
            dominated |= {id(group[i]) for i in _dominated_among(group, objective)}

    def key(item: tuple[float, R]) -> tuple[float, int, float, float, int]:
        value, record = item
        costs = [record.result.metrics.get(k, math.inf) for k in COST_METRICS]
        costs = [c if math.isfinite(c) else math.inf for c in costs]
        return (-value, int(id(record) in dominated), costs[0], costs[1], record.index)

    return [record for _, record in sorted(scored, key=key)]
