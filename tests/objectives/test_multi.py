import math

import numpy as np
import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.objectives.multi import INFEASIBLE_SCORE, MultiObjective
from lightning_nas.objectives.score import Objective
from lightning_nas.results.history import History


def result(acc: float, latency: float, **extra: float) -> EvalResult:
    return EvalResult("ok", {"search/val_acc": acc, "hw/latency_ms": latency, **extra})


def test_defaults() -> None:
    objective = MultiObjective()
    assert objective.names == ["accuracy", "latency"]
    assert objective.directions == ["max", "min"]
    assert objective.keys == ["search/val_acc", "hw/latency_ms"]
    assert objective.weights == {"accuracy": 1.0, "latency": 0.0}
    assert objective.constraints == []
    np.testing.assert_array_equal(objective.vector(result(0.9, 20.0)), [0.9, 20.0])
    assert objective(result(0.9, 20.0)) == pytest.approx(0.9)


def test_weighted_scalar_uses_scales_and_direction() -> None:
    objective = MultiObjective({"accuracy": "max", "params": "min"}, weights={"accuracy": 1.0, "params": 0.1})
    candidate = EvalResult("ok", {"search/val_acc": 0.9, "model/params": 2e6})
    # the same number as Objective's signed weights
    assert objective(candidate) == pytest.approx(Objective({"accuracy": 1.0, "params": -0.1})(candidate))
    assert objective(candidate) == pytest.approx(0.7)


def test_aliases_and_full_names_agree() -> None:
    by_alias = MultiObjective({"accuracy": "max", "latency": "min"}, constraints={"max_latency": "50ms"})
    by_key = MultiObjective({"search/val_acc": "max", "hw/latency_ms": "min"},
                            constraints={"max_latency": 50})
    for candidate in (result(0.9, 20.0), result(0.95, 80.0)):
        assert by_alias(candidate) == by_key(candidate)
        np.testing.assert_array_equal(by_alias.vector(candidate), by_key.vector(candidate))
    assert by_alias.keys == by_key.keys


def test_ordering_feasible_infeasible_failed() -> None:
    objective = MultiObjective(constraints={"max_latency": "100ms", "min_accuracy": "50%"})
    good, fine = result(0.9, 50.0), result(0.6, 90.0)
    slightly_slow, very_slow = result(0.99, 110.0), result(0.99, 300.0)  # violations 0.1 and 2.0
    inaccurate = result(0.4, 10.0)  # violation 0.2
    failed = EvalResult.failed("boom", {"search/val_acc": 0.99, "hw/latency_ms": 1.0})
    missing = EvalResult("ok", {"search/val_acc": 0.99})
    candidates = [very_slow, failed, fine, inaccurate, missing, slightly_slow, good]
    ranked = sorted(candidates, key=objective, reverse=True)
    assert ranked[:5] == [good, fine, slightly_slow, inaccurate, very_slow]
    assert objective(failed) == objective(missing) == -math.inf
    assert objective(slightly_slow) == pytest.approx(INFEASIBLE_SCORE - 0.1)
    assert objective(slightly_slow) < objective(result(0.5, 100.0)) == 0.5  # feasible at both bounds
    assert objective.feasible(good) and not objective.feasible(inaccurate) and not objective.feasible(failed)
    assert objective.violation(inaccurate) == pytest.approx(0.2)
    assert objective.violation(failed) == objective.violation(missing) == math.inf


def test_front_and_hypervolume_on_records() -> None:
    objective = MultiObjective(constraints={"max_latency": "50ms"})
    history = History()
    for i, (acc, latency) in enumerate([(0.9, 20.0), (0.8, 10.0), (0.95, 60.0), (0.7, 30.0)]):
        history.append(Architecture({"i": i}), result(acc, latency))
    history.append(Architecture({"i": 9}), EvalResult.failed("boom"))
    front = objective.front(history)
    assert [record.arch["i"] for record in front] == [0, 1]  # 0.95@60ms is infeasible
    # reference: accuracy 0, latency from the constraint (50 ms): 0.9 * 30 + 0.8 * 10
    np.testing.assert_array_equal(objective.reference(history), [0.0, 50.0])
    assert objective.hypervolume(history) == pytest.approx(35.0)
    assert objective.hypervolume(history, reference={"latency": 40.0}) == pytest.approx(0.9 * 20 + 0.8 * 10)
    assert objective.hypervolume([EvalResult.failed("x")]) == 0.0
    assert objective.front([]) == []


def test_score_metrics_count_in_the_score_and_stay_off_the_front() -> None:
    objective = MultiObjective({"accuracy": "max", "latency": "min"}, weights={"accuracy": 1.0, "macs": 0.01},
                               score_metrics={"macs": "max"}, constraints={"max_latency": "50ms"})
    small, large = result(0.9, 20.0, **{"model/macs": 1e6}), result(0.89, 10.0, **{"model/macs": 3e6})
    assert objective(small) == pytest.approx(0.91) and objective(large) == pytest.approx(0.92)  # capacity decides
    assert objective.keys == ["search/val_acc", "hw/latency_ms"]  # vectors, front and hypervolume: no MACs
    np.testing.assert_array_equal(objective.vector(large), [0.89, 10.0])
    assert objective.front([small, large]) == [small, large]  # MACs would not make small dominated either way
    assert objective.score_directions == {"accuracy": "max", "latency": "min", "macs": "max"}
    missing = result(0.95, 10.0)  # no MACs: it cannot be scored
    assert objective.violation(missing) == math.inf and objective(missing) == -math.inf
    unweighted = MultiObjective(weights={"accuracy": 1.0}, score_metrics={"macs": "max"})
    assert unweighted(missing) == pytest.approx(0.95)  # a score metric at weight 0 is not needed
    assert "score_metrics={'macs': 'max'}" in repr(objective)


def test_reference_defaults() -> None:
    explicit = MultiObjective(reference_point={"latency": 70.0})
    assert explicit.reference([result(0.5, 10.0)]).tolist() == [0.0, 70.0]
    # no constraint, no explicit value: worst feasible latency plus 10% of the range
    nadir = MultiObjective({"accuracy": "max", "latency": "min"})
    assert nadir.reference([result(0.9, 20.0), result(0.8, 10.0)]).tolist() == pytest.approx([0.0, 21.0])
    assert math.isnan(nadir.reference([])[1])
    params = MultiObjective({"params": "min", "macs": "max"})
    points = [EvalResult("ok", {"model/params": 2.0, "model/macs": 10.0})]
    assert params.reference(points).tolist() == pytest.approx([2.2, 9.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {}}, r"objective\.metrics must name"),
        ({"metrics": {"speed": "max"}}, r"objective\.metrics\.speed: .*unknown metric"),
        ({"metrics": {"latency": "lowest"}}, r"objective\.metrics\.latency must be 'max' or 'min'"),
        ({"weights": {"params": 1.0}},
         r"objective\.weights\.params is not one of objective\.metrics or objective\.score_metrics"),
        ({"weights": {"latency": -0.5}}, r"objective\.weights\.latency must be a finite number >= 0"),
        ({"weights": {"latency": math.nan}}, r"objective\.weights\.latency must be a finite number"),
        ({"weights": {"accuracy": 0.0}}, r"objective\.weights must give"),
        ({"constraints": {"max_speed": 1}}, r"objective\.constraints\.max_speed"),
        ({"constraints": {"max_latency": "1h"}}, r"objective\.constraints\.max_latency: unknown unit"),
        ({"reference_point": {"params": 1.0}}, r"objective\.reference_point\.params is not one of"),
        ({"reference_point": {"latency": "x"}}, r"objective\.reference_point\.latency must be a finite"),
        ({"score_metrics": {"latency": "min"}}, r"objective\.score_metrics\.latency is also in objective\.metrics"),
        ({"score_metrics": {"speed": "max"}}, r"objective\.score_metrics\.speed: .*unknown metric"),
        ({"score_metrics": {"macs": "more"}}, r"objective\.score_metrics\.macs must be 'max' or 'min'"),
    ],
)
def test_eager_validation_names_the_key(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiObjective(**kwargs)  # type: ignore[arg-type]
