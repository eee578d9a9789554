import math

import pytest

from lightning_nas.objectives.constraints import Constraint, parse_constraints, total_violation


@pytest.mark.parametrize(
    ("key", "raw", "metric", "bound"),
    [
        ("max_params", "5M", "params", 5e6),
        ("max_params", "5m", "params", 5e6),
        ("max_params", "250K", "params", 250e3),
        ("max_params", "1.5G", "params", 1.5e9),
        ("max_params", 5_000_000, "params", 5e6),
        ("max_params", "2e6", "params", 2e6),
        ("max_macs", "300M", "macs", 300e6),
        ("max_macs", "300 M", "macs", 300e6),
        ("max_macs", "20k", "macs", 20e3),
        ("max_latency", "100ms", "latency", 100.0),
        ("max_latency", "0.1s", "latency", 100.0),
        ("max_latency", "250us", "latency", 0.25),
        ("max_latency", "250µs", "latency", 0.25),
        ("max_latency", "5 ms", "latency", 5.0),
        ("max_latency", 12.5, "latency", 12.5),
        ("max_memory", "2MB", "memory", 2.0),
        ("max_memory", "512KB", "memory", 0.5),
        ("max_memory", "1GB", "memory", 1024.0),
        ("max_memory", "1048576B", "memory", 1.0),
        ("max_memory", "3", "memory", 3.0),
        ("min_accuracy", 0.75, "accuracy", 0.75),
        ("min_accuracy", "75%", "accuracy", 0.75),
        ("min_accuracy", "0.8", "accuracy", 0.8),
        ("min_accuracy", 0, "accuracy", 0.0),
    ],
)
def test_parse_every_unit(key: str, raw: object, metric: str, bound: float) -> None:
    (constraint,) = parse_constraints({key: raw})
    assert constraint.metric == metric
    assert constraint.bound == pytest.approx(bound)
    assert constraint.kind == ("min" if key.startswith("min_") else "max")


def test_parse_several_and_skips_none() -> None:
    constraints = parse_constraints({"max_latency": "100ms", "max_params": None, "min_accuracy": "75%"})
    assert [c.key for c in constraints] == ["hw/latency_ms", "search/val_acc"]
    assert parse_constraints(None) == [] == parse_constraints({})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"max_flops": "5M"}, r"objective\.constraints\.max_flops is not a known constraint"),
        ({"max_params": "5Q"}, r"objective\.constraints\.max_params: unknown unit 'q'"),
        ({"max_latency": "100mb"}, r"objective\.constraints\.max_latency: unknown unit 'mb'"),
        ({"max_memory": "2ms"}, r"objective\.constraints\.max_memory: unknown unit"),
        ({"max_latency": "fast"}, r"objective\.constraints\.max_latency: cannot parse 'fast'"),
        ({"max_latency": [100]}, r"objective\.constraints\.max_latency: cannot parse"),
        ({"max_latency": "-5ms"}, r"objective\.constraints\.max_latency must not be negative"),
        ({"max_params": 0}, r"objective\.constraints\.max_params of 0 is impossible"),
        ({"max_macs": "0M"}, r"objective\.constraints\.max_macs of '0M' is impossible"),
        ({"min_accuracy": 75}, r"objective\.constraints\.min_accuracy must be a fraction"),
        ({"min_accuracy": "120%"}, r"objective\.constraints\.min_accuracy must be a fraction"),
        ({"max_memory": True}, r"objective\.constraints\.max_memory must be a number"),
        ({"max_memory": math.inf}, r"objective\.constraints\.max_memory must be finite"),
    ],
)
def test_parse_errors_name_the_key(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_constraints(mapping)


def test_violation_is_normalised() -> None:
    latency = Constraint("latency", 100.0, "max")
    assert latency.violation({"hw/latency_ms": 150.0}) == pytest.approx(0.5)
    assert latency.violation({"hw/latency_ms": 100.0}) == 0.0
    assert latency.is_satisfied({"hw/latency_ms": 99.0})
    assert not latency.is_satisfied({"hw/latency_ms": 101.0})
    accuracy = Constraint("search/val_acc", 0.75, "min")
    assert accuracy.violation({"search/val_acc": 0.6}) == pytest.approx(0.2)
    assert accuracy.violation({"search/val_acc": 0.9}) == 0.0
    assert Constraint("accuracy", 0.0, "min").violation({"search/val_acc": 0.1}) == 0.0
    assert str(latency) == "latency <= 100"


def test_missing_metric_is_violated() -> None:
    latency = Constraint("latency", 100.0, "max")
    assert latency.violation({}) == math.inf
    assert latency.violation({"hw/latency_ms": math.nan}) == math.inf
    assert not latency.is_satisfied({"model/params": 1.0})


def test_total_violation_sums() -> None:
    constraints = parse_constraints({"max_latency": "100ms", "max_params": "1M"})
    metrics = {"hw/latency_ms": 150.0, "model/params": 3e6}
    assert total_violation(constraints, metrics) == pytest.approx(0.5 + 2.0)
    assert total_violation([], metrics) == 0.0


def test_constraint_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        Constraint("speed", 1.0, "max")
    with pytest.raises(ValueError, match="kind"):
        Constraint("latency", 1.0, "at_most")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Constraint("latency", math.nan, "max")
