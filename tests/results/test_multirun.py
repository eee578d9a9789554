"""Multirun: presets fit any population, the report lists failed/missing jobs and plots best-so-far honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.config import register_configs
from lightning_nas.results.history import History
from lightning_nas.results.multirun import _common, format_jobs, job_statuses, load_runs, write_report
from lightning_nas.strategies import EvolutionStrategy


def _job(root: Path, number: int, overrides: list[str], accs: list[float] | None, error: str = "") -> None:
    folder = root / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    strategy = overrides[0].split("=")[1]
    (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      strategy: {strategy}\n")
    if accs is None:
        (folder / "cli.log").write_text(f"[INFO] - search space ...\n[ERROR] - {error}\n")
        return
    history = History(folder / "history.jsonl")
    for i, acc in enumerate(accs):
        history.append(Architecture({"width": i}), EvalResult("ok", {"search/val_acc": acc}, duration_s=1.0))
    summary = {"best": {"metrics": {"search/val_acc": max(accs)}}, "test": {"test/acc": max(accs)},
               "evaluations": len(accs), "total_seconds": 10.0}
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """The README's sweep stopped at job 2: jobs 0-1 done, 2 failed, 3 never ran."""
    root = tmp_path / "multirun"
    root.mkdir()
    task = ["strategy=random,evolution", "seed=0,1", "budget.evaluations=4"]
    (root / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n" + "".join(f"    - {t}\n" for t in task))
    _job(root, 0, ["strategy=random", "seed=0", "budget.evaluations=4"], [0.5, 0.6, 0.9, 0.9])
    _job(root, 1, ["strategy=random", "seed=1", "budget.evaluations=4"], [0.7, 0.7])
    _job(root, 2, ["strategy=evolution", "seed=0", "budget.evaluations=4"], None,
         "ValueError: strategy.tournament_size must be an integer in [1, population_size=2], got 3")
    return root


def test_report_lists_failed_and_missing_jobs(sweep: Path, tmp_path: Path) -> None:
    statuses = job_statuses(sweep)
    assert [(j.number, j.status) for j in statuses] == [(0, "ok"), (1, "ok"), (2, "failed"), (3, "missing")]
    assert statuses[3].overrides == ("strategy=evolution", "seed=1", "budget.evaluations=4")
    assert "tournament_size" in statuses[2].reason
    table, _, png = write_report(sweep, tmp_path / "out")
    assert "Jobs: 2 of 4 finished" in table
    assert "job 2 (strategy=evolution seed=0 budget.evaluations=4): failed: " in table
    assert "job 3 (strategy=evolution seed=1 budget.evaluations=4): missing" in table
    assert png.is_file() and png.stat().st_size > 10_000
    assert format_jobs(()) == ""


def test_mean_best_so_far_never_falls_when_runs_differ_in_length(sweep: Path) -> None:
    runs = load_runs(sweep)
    shortest = min(len(r.best_so_far) for r in runs)
    mean, std = _common([r.best_so_far[:shortest] for r in runs])
    assert mean.tolist() == pytest.approx([0.6, 0.65])  # only where both runs have values
    assert np.all(np.diff(mean) >= 0) and np.all(std >= 0)
    late = np.array([[np.nan, 0.5, 0.5], [0.9, 0.9, 0.9]])  # one run's first result arrives late
    assert np.isnan(_common(list(late))[0][0])  # no mean of the early run alone, then a drop


@pytest.mark.parametrize("experiment", [None, "efficient_convnet", "macro_convnet", "fashion_mnist", "transfer"])
@pytest.mark.parametrize("population", [2, 3, 20])
def test_tuning_presets_fit_any_population(experiment: str | None, population: int) -> None:
    register_configs()
    strategy = "warm_evolution" if experiment == "transfer" else "evolution"
    chosen = [f"experiment={experiment}"] if experiment else []
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*chosen, f"strategy={strategy}",
                                                      f"budget.population_size={population}"])
    node = cfg.strategy
    assert 1 <= node.tournament_size <= population and 0 <= node.elitism < population
    EvolutionStrategy(population_size=population, tournament_size=node.tournament_size, elitism=node.elitism)
    if population == 20 and experiment:
        assert node.tournament_size > 3  # derived from the population, not a fixed 3
