"""W&B: named and grouped runs, one run id across a resume, the best in the summary, architecture columns;
and the final training's progress bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.wandb_logger import RUN_ID_FILE, WandbSearchLogger, candidate_rows, run_names
from lightning_nas.config import register_configs
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.evaluators import TrainEvaluator
from lightning_nas.results.history import History
from lightning_nas.spaces import EfficientConvNetSpace


def _history() -> History:
    history = History()
    history.append(Architecture({"op": "conv", "width": 8}), EvalResult("ok", {"search/val_acc": 0.9}))
    history.append(Architecture({"op": "skip", "width": 4}), EvalResult("ok", {"search/val_acc": 0.7}))
    return history


def test_runs_are_named_grouped_and_resume_the_same_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    names = run_names("multi_objective", "nsga2", 3)
    assert names == {"run_name": "multi_objective/nsga2/seed3", "run_group": "multi_objective/nsga2"}
    space, ids = EfficientConvNetSpace((1, 8, 8), 10), []
    for _ in range(2):  # a run, then its resume
        logger = WandbSearchLogger(mode="offline", output_dir=str(tmp_path), **names)
        logger.on_search_start(space, _history())
        assert logger.run.name == "multi_objective/nsga2/seed3" and logger.run.group == "multi_objective/nsga2"
        ids.append(logger.run.id)
        logger.log_summary({"search/val_acc": 0.9, "best/arch_id": "abc"})
        assert logger.run.summary["search/val_acc"] == 0.9  # the best, not the last candidate's 0.7
        logger.finish()
    assert ids[0] == ids[1] == (tmp_path / RUN_ID_FILE).read_text().strip()


def test_architecture_is_columns() -> None:
    rows = candidate_rows(_history())
    assert rows[0]["arch/op"] == "conv" and rows[1]["arch/width"] == 4
    assert "arch" not in rows[0]


def test_final_training_shows_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        assert compose(config_name="config", overrides=["progress=false"]).evaluator.final_progress is False
        assert compose(config_name="config").evaluator.final_progress is True
    data = DigitsDataModule(max_train_samples=128, max_val_samples=64, max_test_samples=64)
    space = EfficientConvNetSpace((1, 8, 8), 10, width_multipliers=[0.5], depth_multipliers=[0.5])
    arch = space.sample(__import__("numpy").random.default_rng(0))
    quiet = TrainEvaluator(data, max_epochs=1, latency_repeats=1)
    quiet.test(space, arch)
    assert "Epoch 0" not in "".join(capsys.readouterr())
    shown = TrainEvaluator(data, max_epochs=1, latency_repeats=1, final_progress=True)
    shown.evaluate(space, arch)  # the search's fits stay quiet
    assert "Epoch 0" not in "".join(capsys.readouterr())
    shown.test(space, arch)
    assert "Epoch 0: 100%" in "".join(capsys.readouterr())  # Lightning's bar, on stdout
