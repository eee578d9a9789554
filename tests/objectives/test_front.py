"""One "best" everywhere: ties broken by dominance then cost; one front, named, in the table and the plots."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.evolution_controller import pareto_front
from lightning_nas.callbacks.pareto_logger import ParetoFrontLogger
from lightning_nas.callbacks.study_reports import efficiency_rows
from lightning_nas.objectives.front import front_records, rank_records, score_label
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.objectives.score import Objective, default_score
from lightning_nas.results.history import History, Record
from lightning_nas.results.report import summary_table, top_records
from lightning_nas.search import best_record
from lightning_nas.spaces import EfficientConvNetSpace


def _history(rows: list[dict[str, float]]) -> History:
    history = History()
    for i, metrics in enumerate(rows):
        history.append(Architecture({"width": i}), EvalResult("ok", metrics))
    return history


def test_equal_scores_go_to_the_dominating_candidate() -> None:
    """The default run's case: equal accuracy 0.9722, the later candidate is smaller and faster."""
    history = _history([
        {"search/val_acc": 0.9722, "model/params": 66_100, "hw/latency_ms": 2.30},
        {"search/val_acc": 0.9722, "model/params": 49_400, "hw/latency_ms": 1.21},
        {"search/val_acc": 0.9500, "model/params": 10_000, "hw/latency_ms": 0.50},
    ])
    assert best_record(history).index == 1
    assert [r.index for r in top_records(history, default_score, 3)] == [1, 0, 2]


def test_equal_scores_without_dominance_go_to_fewer_params_then_latency() -> None:
    history = _history([
        {"search/val_acc": 0.9, "model/params": 50_000, "hw/latency_ms": 1.0},
        {"search/val_acc": 0.9, "model/params": 40_000, "hw/latency_ms": 2.0},  # neither dominates: params
        {"search/val_acc": 0.9, "model/params": 40_000, "hw/latency_ms": 3.0},  # dominated by #1
    ])
    assert [r.index for r in rank_records(history, default_score)] == [1, 0, 2]
    same = _history([{"search/val_acc": 0.9, "model/params": 1.0}] * 2)
    assert best_record(same).index == 0  # all else equal: the first evaluated


def _three_objectives() -> tuple[MultiObjective, History]:
    objective = MultiObjective({"accuracy": "max", "latency": "min", "memory": "min"},
                               constraints={"min_accuracy": 0.5})
    history = _history([
        {"search/val_acc": 0.90, "hw/latency_ms": 2.0, "hw/memory_mb": 1.0, "model/params": 5e4},
        {"search/val_acc": 0.85, "hw/latency_ms": 2.5, "hw/memory_mb": 0.1, "model/params": 4e4},  # 2-D dominated
        {"search/val_acc": 0.80, "hw/latency_ms": 3.0, "hw/memory_mb": 2.0, "model/params": 3e4},  # dominated
        {"search/val_acc": 0.40, "hw/latency_ms": 0.1, "hw/memory_mb": 0.1, "model/params": 1e4},  # infeasible
    ])
    return objective, history


def test_one_front_over_the_objectives_everywhere(tmp_path: Path) -> None:
    objective, history = _three_objectives()
    front = front_records(history.records, objective)
    assert [r.index for r in front] == [0, 1]  # #1 wins on memory although accuracy-vs-latency dominates it
    assert [r.index for r in objective.front(history.records)] == [0, 1]
    logger = ParetoFrontLogger(objective, output_dir=str(tmp_path), x_metric="latency", wandb_run=None)
    logger.on_search_start(EfficientConvNetSpace((1, 8, 8), 10), History())
    for record in history:
        logger.on_candidate_end(record, history)
    assert [r.index for r in logger.front] == [0, 1]
    assert logger._on_front(history.records).tolist() == [True, True, False, False]
    assert logger._chosen(history.records) == best_record(history, objective).index
    paths = logger.write(history.records)
    assert {"pareto", "pareto3d", "progress"} <= set(paths) and all(p.is_file() for p in paths.values())
    rows = efficiency_rows(history.records, constraints=objective.constraints)
    assert [row["violates"] for row in rows] == [False, False, False, True]  # min_accuracy violator


def test_summary_table_names_objectives_and_shows_the_score(tmp_path: Path) -> None:
    objective, history = _three_objectives()
    space = SimpleNamespace(describe=lambda arch: f"width={arch['width']}")
    best = best_record(history, objective)
    front = front_records(history.records, objective)
    table = summary_table(top_records(history, objective, 3), space, best, {}, tmp_path, front, score=objective)
    assert "ordered by score (accuracy)" in table
    assert "Pareto front: 2 architectures over accuracy (max), latency (ms) (min), memory (MB) (min)" in table
    header = next(line for line in table.splitlines() if line.startswith("rank"))
    assert "score" in header.split()
    assert f"{objective(best.result):.4g}" in table


def test_controller_front_is_the_shared_front() -> None:
    history = _history([
        {"search/val_acc": 0.9, "model/params": 5.0},
        {"search/val_acc": 0.8, "model/params": 3.0},
        {"search/val_acc": 0.7, "model/params": 4.0},
    ])
    assert [r.index for r in pareto_front(history.records)] == [0, 1]  # latency missing: left out
    assert pareto_front(history.records) == front_records(history.records)


@pytest.mark.parametrize(("objective", "label"), [
    (None, "accuracy"), (default_score, "accuracy"), (Objective({"accuracy": 1.0}), "accuracy"),
    (Objective({"accuracy": 1.0, "latency": -0.5}), "score = +1*accuracy -0.5*latency"),
    (MultiObjective({"accuracy": "max", "latency": "min"}, weights={"accuracy": 1, "latency": 0.1}),
     "score = +1*accuracy -0.1*latency"),
    (MultiObjective({"accuracy": "max"}, weights={"accuracy": 1, "macs": 0.003}, score_metrics={"macs": "max"}),
     "score = +1*accuracy +0.003*macs"),
])
def test_score_label(objective: object, label: str) -> None:
    assert score_label(objective) == label


def test_records_are_ranked_not_reordered_by_failures() -> None:
    history = History()
    history.append(Architecture({"w": 0}), EvalResult.failed("boom"))
    history.append(Architecture({"w": 1}), EvalResult("ok", {"search/val_acc": 0.5}))
    assert [r.index for r in rank_records(history, default_score)] == [1]
    assert isinstance(history[1], Record)
