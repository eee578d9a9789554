"""ParetoFrontLogger on a hand-made history: the CSV flags, the plots, the hypervolume, W&B offline."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.pareto_logger import ParetoFrontLogger
from lightning_nas.callbacks.wandb_logger import WandbSearchLogger
from lightning_nas.objectives import MultiObjective
from lightning_nas.results.history import History
from lightning_nas.spaces.base import SearchSpace

# accuracy, latency (ms), memory (MB); the objective caps latency at 50 ms.
CANDIDATES: list[tuple[float, float, float] | None] = [
    (0.90, 10.0, 1.0),  # 0 front
    (0.80, 20.0, 1.0),  # 1 dominated by 0
    (0.95, 40.0, 2.0),  # 2 front (most accurate feasible)
    (0.99, 80.0, 0.5),  # 3 infeasible: too slow
    None,               # 4 failed
    (0.85, 5.0, 3.0),   # 5 front (fastest)
    (0.70, 30.0, 0.2),  # 6 front (smallest memory)
    (0.88, 12.0, 1.5),  # 7 dominated by 0
]
FRONT = {0, 2, 5, 6}
PNG = b"\x89PNG\r\n\x1a\n"


def objective() -> MultiObjective:
    return MultiObjective({"accuracy": "max", "latency": "min", "memory": "min"},
                          weights={"accuracy": 1.0, "latency": 0.01, "memory": 0.1},
                          constraints={"max_latency": "50ms"})


def result(values: tuple[float, float, float] | None) -> EvalResult:
    if values is None:
        return EvalResult.failed("diverged", {"model/params": 1000.0})
    acc, latency, memory = values
    return EvalResult("ok", {"search/val_acc": acc, "hw/latency_ms": latency, "hw/memory_mb": memory,
                             "model/params": 1e4 * latency, "model/macs": 1e6 * latency * acc})


def run(logger: ParetoFrontLogger, space: SearchSpace) -> History:
    history = History()
    logger.on_search_start(space, history)
    for i, values in enumerate(CANDIDATES):
        record = history.append(Architecture({"width": i}), result(values))
        logger.on_candidate_end(record, history)
    logger.on_search_end(history)
    return history


def test_files_flags_and_hypervolume(tmp_path: Path, toy_space: SearchSpace) -> None:
    logger = ParetoFrontLogger(objective(), str(tmp_path), wandb_run=None, every_n=0)
    run(logger, toy_space)
    with (tmp_path / "pareto.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["index"]) for r in rows] == list(range(len(CANDIDATES)))
    assert {int(r["index"]) for r in rows if r["on_front"] == "True"} == FRONT
    assert [r["feasible"] for r in rows] == ["True"] * 3 + ["False", "False"] + ["True"] * 3
    assert {r["rank"] for r in rows if int(r["index"]) in FRONT} == {"0"}
    assert rows[1]["rank"] == "1" and rows[4]["rank"] == "" and rows[4]["status"] == "failed"
    assert float(rows[3]["violation"]) == pytest.approx(0.6) and rows[4]["violation"] == "inf"
    assert rows[0]["search/val_acc"] == "0.9" and '"width": 0' in rows[0]["arch"] and rows[0]["arch_id"]
    assert [r.index for r in logger.front] == sorted(FRONT)
    for name in ("pareto", "pareto3d", "progress", "correlation"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    volumes = logger.hypervolumes
    assert len(volumes) == len(CANDIDATES) and volumes[0] > 0
    assert all(b >= a for a, b in itertools.pairwise(volumes))
    assert volumes[-1] > volumes[0]  # candidates 2, 5, 6 extend the front
    assert logger.best_scores[-1] == max(objective()(result(v)) for v in CANDIDATES if v and v[1] <= 50)


def test_every_n_writes_while_searching_and_resume_replays(tmp_path: Path, toy_space: SearchSpace) -> None:
    logger = ParetoFrontLogger(objective(), str(tmp_path), x_metric="macs", wandb_run=None, every_n=2)
    history = History(tmp_path / "history.jsonl")
    logger.on_search_start(toy_space, history)
    for i in range(2):
        logger.on_candidate_end(history.append(Architecture({"width": i}), result(CANDIDATES[i])), history)
    assert (tmp_path / "pareto.csv").is_file() and (tmp_path / "pareto.png").read_bytes().startswith(PNG)
    resumed = ParetoFrontLogger(objective(), str(tmp_path / "again"), wandb_run=None)
    resumed.on_search_start(toy_space, History(tmp_path / "history.jsonl"))
    assert resumed.hypervolumes == logger.hypervolumes and [r.index for r in resumed.front] == [0]


def test_default_objective_and_bad_arguments(tmp_path: Path) -> None:
    assert ParetoFrontLogger(output_dir=str(tmp_path), x_metric="macs").objective.keys == [
        "search/val_acc", "model/macs"]
    with pytest.raises(ValueError, match="x_metric"):
        ParetoFrontLogger(x_metric="speed")
    with pytest.raises(ValueError, match="every_n"):
        ParetoFrontLogger(every_n=-1)
    with pytest.raises(ValueError, match="wandb_run"):
        ParetoFrontLogger(wandb_run="online")


def test_wandb_offline_run_gets_the_table_and_hypervolume(tmp_path: Path, toy_space: SearchSpace,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb_logger = WandbSearchLogger(project="pareto-test", mode="offline", output_dir=str(tmp_path))
    pareto = ParetoFrontLogger(objective(), str(tmp_path / "files"), wandb_run=wandb_logger, every_n=0)
    history = History()
    wandb_logger.on_search_start(toy_space, history)  # the app lists the W&B logger first
    pareto.on_search_start(toy_space, history)
    for i, values in enumerate(CANDIDATES):
        record = history.append(Architecture({"width": i}), result(values))
        wandb_logger.on_candidate_end(record, history)
        pareto.on_candidate_end(record, history)
    wandb_logger.on_search_end(history)
    pareto.on_search_end(history)
    summary = dict(wandb_logger.run.summary)
    wandb_logger.finish()
    assert summary["search/hypervolume"] == pytest.approx(pareto.hypervolumes[-1])
    assert math.isfinite(summary["search/hypervolume"]) and summary["search/front_size"] == len(FRONT)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    tables = sorted(p.name for p in (run_dir / "files" / "media" / "table").rglob("*.table.json"))
    assert any(name.startswith("pareto_") for name in tables), tables
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    assert len(images) >= 4
