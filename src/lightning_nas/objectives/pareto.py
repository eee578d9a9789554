"""Pareto utilities: non-dominated sorting, crowding, hypervolume, knee point, metric correlations.

Every helper works on an ``(n, m)`` array of ``n`` points and ``m`` objectives. Internally all
objectives are minimised; ``directions`` (one ``"max"`` or ``"min"`` per objective, default all
``"min"``) says which columns are to be maximised instead, so callers pass raw metric values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from lightning_nas.objectives.score import metric_key

__all__ = [
    "correlation_matrix",
    "crowding_distance",
    "hypervolume",
    "knee_point",
    "non_dominated_sort",
    "pareto_front",
    "ranks",
    "to_minimise",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def to_minimise(points: ArrayLike, directions: Sequence[str] | None = None) -> FloatArray:
    """``points`` as a float ``(n, m)`` array with every ``"max"`` column negated.

    Args:
        points: ``(n, m)`` objective values (a single point may be given as a 1-D sequence).
        directions: ``"max"`` or ``"min"`` per objective; ``None`` means all ``"min"``.
    """
    array = np.array(points, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(1, -1) if array.size else array.reshape(0, 0)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D (n, m) array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("points must not contain NaN")
    if directions is None:
        return array
    if len(directions) != array.shape[1]:
        raise ValueError(f"got {len(directions)} directions for {array.shape[1]} objectives")
    bad = [d for d in directions if d not in ("max", "min")]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad[0]!r}")
    return array * np.array([-1.0 if d == "max" else 1.0 for d in directions])


def _dominance(points: FloatArray, violations: FloatArray | None) -> NDArray[np.bool_]:
    """``dom[i, j]``: point ``i`` (constraint-)dominates point ``j`` (all minimised)."""
    le = (points[:, None, :] <= points[None, :, :]).all(axis=-1)
    lt = (points[:, None, :] < points[None, :, :]).any(axis=-1)
    dom: NDArray[np.bool_] = np.logical_and(le, lt)
    if violations is None:
        return dom
    feasible = violations <= 0.0
    both_feasible = feasible[:, None] & feasible[None, :]
    less_violation = (~feasible[:, None]) & (~feasible[None, :]) & (violations[:, None] < violations[None, :])
    feasible_first = feasible[:, None] & ~feasible[None, :]
    return (both_feasible & dom) | less_violation | feasible_first


def non_dominated_sort(
    points: ArrayLike, directions: Sequence[str] | None = None, violations: ArrayLike | None = None
) -> list[IntArray]:
    """Fast non-dominated sort (Deb et al., 2002): fronts of point indices, best front first.

    With ``violations`` it uses Deb's constraint-domination: a feasible point (violation 0)
    dominates every infeasible one; of two infeasible points the lower violation dominates;
    feasible points compare by Pareto dominance. Indices in each front are ascending.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``"max"`` or ``"min"`` per objective (default all ``"min"``).
        violations: optional ``(n,)`` non-negative constraint violations (``inf`` allowed).
    """
    array = to_minimise(points, directions)
    if array.shape[0] == 0:
        return []
    viol = None if violations is None else np.asarray(violations, dtype=np.float64).reshape(-1)
    if viol is not None and viol.shape[0] != array.shape[0]:
        raise ValueError(f"got {viol.shape[0]} violations for {array.shape[0]} points")
    dom = _dominance(array, viol)
    dominated_by = dom.sum(axis=0).astype(np.int64)
    assigned = np.zeros(array.shape[0], dtype=bool)
    fronts: list[IntArray] = []
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        fronts.append(current)
        assigned[current] = True
        dominated_by -= dom[current].sum(axis=0)
        current = np.flatnonzero((dominated_by == 0) & ~assigned)
    return fronts


def ranks(
    points: ArrayLike, directions: Sequence[str] | None = None, violations: ArrayLike | None = None
) -> IntArray:
    """The front number of every point (0 for the non-dominated ones).

    Args:
        points: ``(n, m)`` objective values.
        directions: ``"max"`` or ``"min"`` per objective (default all ``"min"``).
        violations: optional constraint violations (see :func:`non_dominated_sort`).
    """
    fronts = non_dominated_sort(points, directions, violations)
    result = np.zeros(sum(len(f) for f in fronts), dtype=np.intp)
    for rank, front in enumerate(fronts):
        result[front] = rank
    return result


def pareto_front(points: ArrayLike, directions: Sequence[str] | None = None) -> IntArray:
    """Indices (ascending) of the non-dominated points.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``"max"`` or ``"min"`` per objective (default all ``"min"``).
    """
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else np.zeros(0, dtype=np.intp)


def crowding_distance(front_points: ArrayLike) -> FloatArray:
    """NSGA-II crowding distance of each point of one front (boundary points get ``inf``).

    For every objective the points are sorted (stably); the two extremes get ``inf`` and each
    interior point adds the gap between its neighbours divided by the objective's range (an
    objective with zero range adds nothing). Fronts of one or two points are all ``inf``.
    Directions do not matter: the distance is symmetric.

    Args:
        front_points: ``(n, m)`` objective values of the points of one front.
    """
    array = to_minimise(front_points)
    n, m = array.shape
    distance = np.zeros(n, dtype=np.float64)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(array[:, j], kind="stable")
        values = array[order, j]
        distance[order[0]] = distance[order[-1]] = np.inf
        span = values[-1] - values[0]
        if span > 0 and math.isfinite(span):
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def _hv_2d(points: FloatArray, reference: FloatArray) -> float:
    """Exact 2-D hypervolume by a sweep over the first objective (points all below reference)."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    x, y = points[order, 0], points[order, 1]
    best = np.minimum.accumulate(y)
    previous = np.concatenate(([reference[1]], best[:-1]))
    return float(np.sum((reference[0] - x) * (previous - best)))


def _hv_slicing(points: FloatArray, reference: FloatArray, base_dims: int) -> float:
    """Exact hypervolume by slicing along the last objective (HSO), recursing down to ``base_dims``."""
    m = points.shape[1]
    if m == 1:
        return float(reference[0] - points[:, 0].min())
    if m == 2 and base_dims == 2:
        return _hv_2d(points, reference)
    order = np.argsort(points[:, -1], kind="stable")
    sorted_points = points[order]
    bounds = np.concatenate((sorted_points[1:, -1], [reference[-1]]))
    volume = 0.0
    for i in range(len(sorted_points)):
        depth = bounds[i] - sorted_points[i, -1]
        if depth <= 0:
            continue
        slab = sorted_points[: i + 1, :-1]
        slab = slab[pareto_front(slab)]
        volume += depth * _hv_slicing(slab, reference[:-1], base_dims)
    return volume


def hypervolume(
    points: ArrayLike,
    reference: ArrayLike,
    directions: Sequence[str] | None = None,
    method: str = "auto",
) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly beat the reference in every objective add nothing.
    ``method="sweep"`` (2-D only) sorts once; ``"slicing"`` is the exact n-D HSO algorithm
    (slices along the last objective down to 1-D; fine for ~100 points in 3-4 objectives);
    ``"auto"`` picks the sweep in 2-D and slicing otherwise.

    Args:
        points: ``(n, m)`` objective values.
        reference: ``(m,)`` reference point, in the same units and directions as ``points``.
        directions: ``"max"`` or ``"min"`` per objective (default all ``"min"``).
        method: ``"auto"``, ``"sweep"`` or ``"slicing"``.
    """
    array = to_minimise(points, directions)
    ref = to_minimise(np.asarray(reference, dtype=np.float64).reshape(1, -1), directions)[0]
    if array.shape[0] == 0:
        return 0.0
    if ref.shape[0] != array.shape[1]:
        raise ValueError(f"reference has {ref.shape[0]} values for {array.shape[1]} objectives")
    if method not in ("auto", "sweep", "slicing"):
        raise ValueError(f"method must be 'auto', 'sweep' or 'slicing', got {method!r}")
    if method == "sweep" and array.shape[1] != 2:
        raise ValueError(f"method='sweep' needs 2 objectives, got {array.shape[1]}")
    inside = array[(array < ref).all(axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    inside = inside[pareto_front(inside)]
    if array.shape[1] == 2 and method != "slicing":
        return _hv_2d(inside, ref)
    return _hv_slicing(inside, ref, base_dims=1 if method == "slicing" else 2)


def knee_point(points: ArrayLike, directions: Sequence[str] | None = None) -> int:
    """Index of the knee of the Pareto front of ``points``.

    Definition: the non-dominated points are normalised to ``[0, 1]`` per objective (by the
    front's own minimum and maximum, all minimised); the hyperplane through the extreme points
    (each one best in one objective) is found, and the knee is the front point farthest from
    it on the ideal side (in 2-D: farthest below the line joining the two ends of the front).
    When the extremes do not define a hyperplane with positive normal, the plane
    ``sum(f) = 1`` is used. Ties go to the lowest index.

    Args:
        points: ``(n, m)`` objective values (at least one point).
        directions: ``"max"`` or ``"min"`` per objective (default all ``"min"``).
    """
    array = to_minimise(points, directions)
    if array.shape[0] == 0:
        raise ValueError("knee_point needs at least one point")
    front = pareto_front(array)
    values = array[front]
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    normalised = (values - low) / span
    others = normalised.sum(axis=1)
    extremes = normalised[[int(np.lexsort((others, normalised[:, j]))[0]) for j in range(values.shape[1])]]
    normal = np.ones(array.shape[1])
    try:
        solved = np.linalg.solve(extremes, np.ones(array.shape[1]))
        if np.all(np.isfinite(solved)) and np.all(solved > 0):
            normal = solved
    except np.linalg.LinAlgError:
        pass
    distance = (1.0 - normalised @ normal) / np.linalg.norm(normal)
    return int(front[int(np.argmax(distance))])


def _metric_table(records: Sequence[Any], names: Sequence[str] | None) -> tuple[list[str], FloatArray]:
    """Rows of successful records with every named metric finite (aliases allowed in ``names``)."""
    results = [getattr(r, "result", r) for r in records]
    results = [r for r in results if r.ok]
    if names is None:
        common = set.intersection(*(set(r.metrics) for r in results)) if results else set()
        names = sorted(common)
    keys = [metric_key(name) for name in names]
    rows = [[r.metrics.get(k, math.nan) for k in keys] for r in results]
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(keys))
    return list(names), table[np.isfinite(table).all(axis=1)]


def _is_records(data: object) -> bool:
    """Whether ``data`` is a sequence of records / results rather than a numeric table."""
    if isinstance(data, np.ndarray) or not isinstance(data, Sequence):
        return False
    return len(data) == 0 or hasattr(data[0], "metrics") or hasattr(data[0], "result")


def correlation_matrix(
    data: Sequence[Any] | ArrayLike, names: Sequence[str] | None = None
) -> tuple[list[str], FloatArray]:
    """Spearman rank correlation between metrics over all evaluated candidates.

    Args:
        data: history records / :class:`EvalResult` objects (failed ones and rows with a missing
            metric are skipped), or an ``(n, k)`` array with one column per metric.
        names: metric names (aliases such as ``"latency"`` or ``stage/metric`` names) for records;
            column names for an array. Default: every metric all successful records share
            (sorted), or ``col0..`` for an array.

    Returns:
        The names and the ``(k, k)`` matrix; a constant metric correlates NaN with the others.
    """
    if _is_records(data):
        labels, table = _metric_table(list(data), names)  # type: ignore[arg-type]
    else:
        table = to_minimise(data)
        labels = list(names) if names is not None else [f"col{j}" for j in range(table.shape[1])]
        if len(labels) != table.shape[1]:
            raise ValueError(f"got {len(labels)} names for {table.shape[1]} columns")
    k = len(labels)
    if table.shape[0] < 2:
        return labels, np.full((k, k), np.nan)
    if k < 2:
        return labels, np.ones((k, k))
    # Spearman = Pearson of average ranks (scipy's spearmanr gives one NaN for all once any metric is constant)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        matrix = np.atleast_2d(np.corrcoef(stats.rankdata(table, axis=0), rowvar=False))
    np.fill_diagonal(matrix, 1.0)
    return labels, np.clip(matrix, -1.0, 1.0)
