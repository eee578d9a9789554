"""NASCallback hands over a ready model: ``best_model`` (BN recalibrated), a monitorable metric, a score hook."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_nas.callbacks.nas_callback import NASCallback
from lightning_nas.strategies import EvolutionStrategy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nas_callback_example", ROOT / "examples" / "nas_callback.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _accuracy(model: nn.Module, data: Any) -> float:
    with torch.no_grad():
        hits = [(model(x).argmax(-1) == y).float() for x, y in data.val_dataloader()]
    return float(torch.cat(hits).mean())


@pytest.fixture(scope="module")
def searched(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    data = example.DigitsData(seed=0)
    callback = NASCallback(strategy=EvolutionStrategy(population_size=6, generations=2, tournament_size=3, seed=0),
                           seed=0)
    folder = tmp_path_factory.mktemp("checkpoints")
    checkpoint = ModelCheckpoint(dirpath=folder, monitor="search/best_path_val_acc", mode="max")
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", devices=1, callbacks=[callback, checkpoint], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    module = example.LitClassifier()
    trainer.fit(module, datamodule=data)
    return {"callback": callback, "module": module, "data": data, "trainer": trainer, "checkpoint": checkpoint}


def test_best_model_scores_what_the_search_scored(searched: dict[str, Any], example: ModuleType) -> None:
    callback, data = searched["callback"], searched["data"]
    model = callback.best_model(data)
    assert not any(type(m).__module__.startswith("lightning_nas") for m in model.modules())
    assert not model.training
    ready = _accuracy(model, data)
    assert abs(ready - callback.best_score) <= 0.02, (ready, callback.best_score)
    assert ready > 0.5  # a trained digit classifier, not chance (0.1)


def test_checkpoint_monitors_the_search_metric(searched: dict[str, Any]) -> None:
    trainer, checkpoint = searched["trainer"], searched["checkpoint"]
    value = float(trainer.callback_metrics["search/best_path_val_acc"])
    assert 0.0 <= value <= 1.0 and math.isfinite(value)
    assert checkpoint.best_model_path and Path(checkpoint.best_model_path).is_file()
    assert 0.0 < float(checkpoint.best_model_score) <= 1.0


def test_best_model_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="no search has run"):
        NASCallback().best_model()


def test_val_score_hook_replaces_accuracy(example: ModuleType) -> None:
    calls: list[int] = []

    def negative_loss(subnet: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        calls.append(len(batches))
        losses = [torch.nn.functional.cross_entropy(subnet(x), y) for x, y in batches]
        return -float(torch.stack(losses).mean())

    data = example.DigitsData(seed=0)
    callback = NASCallback(strategy=EvolutionStrategy(population_size=3, generations=1, tournament_size=2,
                                                      elitism=1, seed=0), val_score=negative_loss,
                           monitor_every_epoch=False)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_train_batches=4)
    trainer.fit(example.LitClassifier(), datamodule=data)
    assert calls and callback.history is not None
    assert all(r.result.metrics["search/val_acc"] < 0 for r in callback.history)  # negative losses, not accuracy
    assert callback.best_score == max(r.result.metrics["search/val_acc"] for r in callback.history)
    with pytest.raises(ValueError, match="val_score"):
        NASCallback(val_score="accuracy")  # type: ignore[arg-type]
