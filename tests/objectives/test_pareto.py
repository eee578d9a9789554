import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from lightning_nas.arch import EvalResult
from lightning_nas.objectives.pareto import (
    correlation_matrix,
    crowding_distance,
    hypervolume,
    knee_point,
    non_dominated_sort,
    pareto_front,
    ranks,
)

# Minimise both: (1,5), (2,2), (4,1) are non-dominated; (2,3) is only beaten by (2,2);
# (3,4) by (2,3) too; (5,5) by everything else.
POINTS = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [5, 5], [2, 2]], dtype=float)


def _fronts(points, **kwargs) -> list[list[int]]:
    return [front.tolist() for front in non_dominated_sort(points, **kwargs)]


def test_non_dominated_sort_hand_computed() -> None:
    assert _fronts(POINTS) == [[0, 3, 5], [1], [2], [4]]
    assert ranks(POINTS).tolist() == [0, 1, 2, 0, 3, 0]
    assert pareto_front(POINTS).tolist() == [0, 3, 5]
    # the same problem stated as "maximise the negated values"
    assert _fronts(-POINTS, directions=["max", "max"]) == [[0, 3, 5], [1], [2], [4]]


def test_non_dominated_sort_duplicates_and_mixed_directions() -> None:
    assert _fronts([[1, 1], [1, 1], [2, 2]]) == [[0, 1], [2]]
    # accuracy (max) vs latency (min): 0.95@60, 0.9@20, 0.8@10 trade off; 0.7@30 is dominated
    results = [[0.9, 20], [0.8, 10], [0.95, 60], [0.7, 30]]
    assert pareto_front(results, ["max", "min"]).tolist() == [0, 1, 2]
    assert non_dominated_sort(np.zeros((0, 2))) == []


def test_constraint_domination() -> None:
    points = [[1, 1], [2, 2], [0, 0], [0, 0], [3, 3], [5, 0]]
    violations = [0, 0, 0.5, 0.2, 0.2, 0]
    # feasible first (by Pareto), then infeasible by violation; equal violations share a front
    assert _fronts(points, violations=violations) == [[0, 5], [1], [3, 4], [2]]
    assert _fronts([[0, 0], [1, 1]], violations=[math.inf, 0.0]) == [[1], [0]]


def test_sort_input_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        non_dominated_sort([[1.0, math.nan]])
    with pytest.raises(ValueError, match="directions"):
        non_dominated_sort([[1.0, 2.0]], directions=["max", "up"])
    with pytest.raises(ValueError, match="2 objectives"):
        non_dominated_sort([[1.0, 2.0]], directions=["max"])


def test_crowding_distance_hand_computed() -> None:
    # objective 0 spans 4: interior gaps 3/4 and 3/4; objective 1 spans 5: gaps 4/5 and 3/5
    front = [[0, 5], [1, 3], [3, 1], [4, 0]]
    assert crowding_distance(front).tolist() == pytest.approx([math.inf, 0.75 + 0.8, 0.75 + 0.6, math.inf])
    # a constant objective adds nothing to the interior point
    assert crowding_distance([[0, 1], [1, 1], [2, 1]]).tolist() == [math.inf, 1.0, math.inf]
    assert crowding_distance([[0, 1], [1, 0]]).tolist() == [math.inf, math.inf]


def test_hypervolume_2d_hand_computed() -> None:
    # sweep: (1,5) adds 5*1, (2,2) adds 4*3, (4,1) adds 2*1; the dominated points add nothing
    assert hypervolume(POINTS, [6, 6]) == pytest.approx(19.0)
    assert hypervolume([[1, 1]], [3, 4]) == pytest.approx(6.0)
    # points on or beyond the reference add nothing
    assert hypervolume([[3, 1], [1, 4], [1, 1]], [3, 4]) == pytest.approx(6.0)
    assert hypervolume([[5, 5]], [3, 4]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    # accuracy max (reference 0), latency min (reference 50): 0.9*30 + 0.8*10
    assert hypervolume([[0.9, 20], [0.8, 10], [0.7, 30]], [0.0, 50.0], ["max", "min"]) == pytest.approx(35.0)


def test_hypervolume_unit_cube() -> None:
    assert hypervolume([[0, 0, 0]], [1, 1, 1]) == pytest.approx(1.0)
    # three half-boxes: 1 - 0.5**3 by inclusion-exclusion
    assert hypervolume([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], [1, 1, 1]) == pytest.approx(0.875)
    assert hypervolume([[0.5, 0.5, 0.5], [0.75, 0.75, 0.75]], [1, 1, 1]) == pytest.approx(0.125)
    assert hypervolume([[0.5, 0.5, 0.5, 0.5]], [1, 1, 1, 1]) == pytest.approx(0.0625)
    halves = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    assert hypervolume(halves, [1, 1, 1], method="slicing") == pytest.approx(0.875)


@pytest.mark.parametrize("dims", [3, 4])
def test_hypervolume_nd_matches_monte_carlo(dims: int) -> None:
    rng = np.random.default_rng(dims)
    points = rng.random((25, dims))
    points /= np.linalg.norm(points, axis=1, keepdims=True)  # a concave front in [0, 1]^d
    reference = np.full(dims, 1.1)
    samples = rng.random((100_000, dims)) * 1.1
    covered = np.zeros(len(samples), dtype=bool)
    for point in points:
        covered |= (samples >= point).all(axis=1)
    estimate = covered.mean() * 1.1**dims
    assert hypervolume(points, reference) == pytest.approx(estimate, abs=0.01)


def test_hypervolume_2d_sweep_equals_slicing() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.random((int(rng.integers(1, 30)), 2))
        sweep = hypervolume(points, [1.0, 1.2], method="sweep")
        assert sweep == pytest.approx(hypervolume(points, [1.0, 1.2], method="slicing"))
    with pytest.raises(ValueError, match="sweep"):
        hypervolume(rng.random((3, 3)), [1, 1, 1], method="sweep")
    with pytest.raises(ValueError, match="method"):
        hypervolume(rng.random((3, 2)), [1, 1], method="mc")


def test_knee_point() -> None:
    # normalised extremes (0,1) and (1,0): distances below x + y = 1 are 0.5 and 0.3
    front = [[0, 1], [0.2, 0.3], [0.5, 0.2], [1, 0], [0.9, 0.9]]
    assert knee_point(front) == 1
    # the same front as accuracy (max) vs latency in ms (min): scaling does not matter
    results = [[1.0, 100.0], [0.8, 30.0], [0.5, 20.0], [0.0, 0.0]]
    assert knee_point(results, ["max", "min"]) == 1
    assert knee_point([[3.0, 4.0]]) == 0
    # 3-D: the plane through the extremes A, B, C is sum(f) = 1.8; (0.3, 0.3, 0.3) lies 0.9 inside
    # it, (0.6, 0.5, 0.1) only 0.6
    front_3d = [[0, 1, 0.8], [0.8, 0, 1], [1, 0.8, 0], [0.6, 0.5, 0.1], [0.3, 0.3, 0.3]]
    assert knee_point(front_3d) == 4
    # degenerate extremes (tied minima): the fallback plane sum(f) = 1
    cube = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, 0.2, 0.2], [0.5, 0.3, 0.1]]
    assert knee_point(cube) == 3
    with pytest.raises(ValueError, match="at least one"):
        knee_point(np.zeros((0, 2)))


def test_correlation_matrix_array() -> None:
    data = np.array([[1, 10, 5], [2, 20, 4], [3, 30, 3], [4, 35, 1], [5, 50, 2]], dtype=float)
    names, matrix = correlation_matrix(data, ["a", "b", "c"])
    assert names == ["a", "b", "c"]
    expected = spearmanr(data).statistic
    np.testing.assert_allclose(matrix, expected)
    assert matrix[0, 1] == pytest.approx(1.0)
    with_ties = np.array([[1, 1], [2, 1], [3, 2], [4, 3]], dtype=float)
    assert correlation_matrix(with_ties)[1][0, 1] == pytest.approx(spearmanr(with_ties).statistic)


def test_correlation_matrix_records() -> None:
    results = [
        EvalResult("ok", {"search/val_acc": a, "hw/latency_ms": lat, "model/params": p})
        for a, lat, p in [(0.5, 1.0, 3.0), (0.6, 2.0, 1.0), (0.7, 3.0, 2.0), (0.9, 5.0, 4.0)]
    ]
    results.append(EvalResult.failed("boom", {"search/val_acc": 0.0}))
    results.append(EvalResult("ok", {"search/val_acc": 0.1}))  # missing latency: skipped
    names, matrix = correlation_matrix(results, ["accuracy", "latency", "model/params"])
    assert names == ["accuracy", "latency", "model/params"]
    assert matrix[0, 1] == pytest.approx(1.0)
    assert matrix[0, 2] == pytest.approx(spearmanr([1, 2, 3, 4], [3, 1, 2, 4]).statistic)
    default_names, _ = correlation_matrix(results[:4])
    assert default_names == ["hw/latency_ms", "model/params", "search/val_acc"]
    assert np.isnan(correlation_matrix(results[:1], ["accuracy", "latency"])[1]).all()


def test_correlation_matrix_keeps_the_other_pairs_when_a_metric_is_constant() -> None:
    names, matrix = correlation_matrix(np.array([[1.0, 2.0, 3.0], [1.0, 5.0, 6.0], [1.0, 7.0, 2.0]]))
    assert names == ["col0", "col1", "col2"]
    assert np.isnan(matrix[0, 1]) and np.isnan(matrix[0, 2]) and matrix[0, 0] == 1.0
    assert matrix[1, 2] == pytest.approx(-0.5) and matrix[2, 1] == pytest.approx(-0.5)
