"""The terminal summary's figures, its constraint line and the ``constraints`` block of ``summary.json``."""

from __future__ import annotations

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.objectives.constraints import parse_constraints
from lightning_nas.results.history import History
from lightning_nas.results.report import constraint_report, format_constraints, format_metric


def test_constraint_report_counts_violations_per_constraint() -> None:
    history = History()
    for i, (params, latency) in enumerate([(50e3, 2.0), (90e3, 2.5), (60e3, 3.5), (120e3, 4.0)]):
        history.append(Architecture({"w": i}), EvalResult("ok", {"model/params": params, "hw/latency_ms": latency}))
    history.append(Architecture({"w": 9}), EvalResult.failed("boom"))
    constraints = parse_constraints({"max_params": "75K", "max_latency": "3ms"})
    report = constraint_report(history, constraints, best=history[0])
    assert report == {"constraints": ["params <= 75000", "latency <= 3"], "evaluated": 4, "violating": 3,
                      "by_constraint": {"params <= 75000": 2, "latency <= 3": 2}, "best_feasible": True}
    line = format_constraints(report)
    assert line.startswith("Constraints: 3 of 4 candidates violate (params <= 75000: 2") and "meets them all" in line
    assert constraint_report(history, []) == {} and format_constraints({}) == ""
    assert constraint_report(history, constraints, best=history[3])["best_feasible"] is False


def test_small_latencies_and_memories_keep_three_significant_digits() -> None:
    assert format_metric("hw/latency_ms", 0.0402) == "0.0402"  # an XNNPACK program: 0.04 would hide 0.040 vs 0.045
    assert format_metric("hw/memory_mb", 0.003512) == "0.00351"
    assert format_metric("hw/latency_ms", 12.345) == "12.35" and format_metric("hw/memory_mb", 0.0) == "0.00"
    assert format_metric("model/macs", 2.05e6) == "2.05M" and format_metric("search/val_acc", 0.93041) == "0.9304"
    assert format_metric("hw/latency_ms", None) == format_metric("hw/latency_ms", float("nan")) == "-"
