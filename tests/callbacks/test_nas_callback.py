"""NASCallback / SearchController: supernet training in a user's module, search, state, rank zero, example."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.evolution_controller import SearchController, find_supernet, pareto_front
from lightning_nas.callbacks.nas_callback import NASCallback
from lightning_nas.nn import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, LayerChoice, ValueChoice, decisions
from lightning_nas.objectives.score import Objective
from lightning_nas.results.history import Record
from lightning_nas.strategies import EvolutionStrategy, RandomSearch
from lightning_nas.strategies.supernet import SupernetModule

ROOT = Path(__file__).resolve().parents[2]
TRAINER: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
           "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}


class RandomImages(L.LightningDataModule):
    """96 train / 32 val random 8x8 images whose label is the sign of their mean."""

    def _data(self, n: int, seed: int) -> TensorDataset:
        x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        return TensorDataset(x, (x.mean((1, 2, 3)) > 0).long())

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self._data(96, 0), batch_size=16)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self._data(32, 1), batch_size=16)


class UserModule(L.LightningModule):
    """A user's plain LightningModule; it only records which path each batch trained."""

    def __init__(self) -> None:
        super().__init__()
        width = ValueChoice([4, 8], label="width")
        self.net = nn.Sequential(
            ElasticConv2d(1, width, ValueChoice([3, 5], label="kernel")), ElasticBatchNorm2d(width), nn.ReLU(),
            LayerChoice({"conv": lambda: ElasticConv2d(width, width, 3), "skip": nn.Identity}, label="op"),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), ElasticLinear(width, 2))
        self.trained_paths: list[dict[str, Any]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.trained_paths.append({label: c.value for label, c in decisions(self.net).items()})
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_acc", (self.net(batch[0]).argmax(-1) == batch[1]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def fit(callback: L.Callback, module: L.LightningModule | None = None, epochs: int = 2) -> L.LightningModule:
    module = module if module is not None else UserModule()
    L.Trainer(max_epochs=epochs, callbacks=[callback], **TRAINER).fit(module, datamodule=RandomImages())
    return module


def test_callback_trains_paths_and_searches_in_unchanged_training_step(tmp_path: Path) -> None:
    callback = NASCallback(strategy=RandomSearch(num_samples=5, seed=1), output_dir=tmp_path, seed=3)
    module = fit(callback)
    assert len(module.trained_paths) == 12
    assert len({json.dumps(p, sort_keys=True) for p in module.trained_paths}) > 3  # many paths trained
    assert callback.history is not None and len(callback.history) == 5
    assert callback.best_arch is not None and math.isfinite(callback.best_score)
    assert callback.front and all(r.result.ok for r in callback.front)
    assert {label: c.value for label, c in decisions(module.net).items()} == dict(callback.best_arch)  # left active
    assert Architecture.load(tmp_path / "best" / "arch.json") == callback.best_arch
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 5
    assert json.loads((tmp_path / "best" / "metrics.json").read_text())["search/val_acc"] >= 0


def test_sandwich_schedule_and_periodic_search_with_supernet_module() -> None:
    callback = NASCallback(strategy=RandomSearch(num_samples=3), sampling="sandwich", num_random_paths=1)
    module = fit(callback, epochs=1)
    widths = [p["width"] for p in module.trained_paths]
    assert widths[0::3] == [8, 8] and widths[1::3] == [4, 4]  # largest, smallest, random, ...

    controller = SearchController(RandomSearch(num_samples=4), objective={"accuracy": 1.0, "params": -1.0},
                                  search_every_n_epochs=1)
    trainer = L.Trainer(max_epochs=2, callbacks=[controller], **TRAINER)
    trainer.fit(SupernetModule(UserModule().net), datamodule=RandomImages())
    assert controller.num_searches == 2  # epochs 0 and 1; fit end reuses the last one
    assert "search/best_score" in trainer.callback_metrics
    assert controller.best_score == pytest.approx(Objective({"accuracy": 1.0, "params": -1.0})(
        next(r.result for r in controller.history or () if r.arch == controller.best_arch)))


def test_state_dict_round_trip_restores_rng_and_strategy() -> None:
    callback = NASCallback(strategy=EvolutionStrategy(population_size=3, generations=2, tournament_size=2,
                                                      elitism=1), seed=4)
    fit(callback, epochs=1)
    buffer = io.BytesIO()
    torch.save(callback.state_dict(), buffer)  # what a Lightning checkpoint holds
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = NASCallback(strategy=EvolutionStrategy(population_size=3, generations=2, tournament_size=2,
                                                      elitism=1), seed=4)
    restored.load_state_dict(state)
    assert restored.strategy.state_dict() == callback.strategy.state_dict()
    assert restored.strategy.num_told == 6
    assert restored.best_arch == callback.best_arch and len(restored.front) == len(callback.front)
    assert restored.rng.integers(1 << 30, size=5).tolist() == callback.rng.integers(1 << 30, size=5).tolist()


def test_resume_from_lightning_checkpoint(tmp_path: Path) -> None:
    first = NASCallback(strategy=RandomSearch(num_samples=3), seed=2)
    trainer = L.Trainer(max_epochs=1, callbacks=[first], **TRAINER)
    trainer.fit(UserModule(), datamodule=RandomImages())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    resumed = NASCallback(strategy=RandomSearch(num_samples=3), seed=2)
    L.Trainer(max_epochs=1, callbacks=[resumed], **TRAINER).fit(
        UserModule(), datamodule=RandomImages(), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.rng.bit_generator.state == first.rng.bit_generator.state
    assert resumed.best_arch == first.best_arch and resumed.num_searches == 1  # not searched again


def test_other_ranks_take_rank_zero_result_and_write_nothing(tmp_path: Path) -> None:
    arch = Architecture({"width": 8})
    payload = {"records": [Record(0, arch, EvalResult("ok", {"search/val_acc": 0.5}), 0.0, {}).to_json()],
               "strategy": RandomSearch(num_samples=1).state_dict(), "rate": 10.0}
    callback = SearchController(RandomSearch(num_samples=1), output_dir=tmp_path)
    trainer = SimpleNamespace(sanity_checking=False, global_step=7, is_global_zero=False, world_size=2,
                              current_epoch=0, loggers=[],
                              strategy=SimpleNamespace(broadcast=lambda obj, src: payload if src == 0 else obj))
    callback.on_fit_end(trainer, UserModule())  # type: ignore[arg-type]
    assert callback.best_arch == arch and callback.subnets_per_second == 10.0
    assert not any(tmp_path.iterdir())  # side effects happen on rank zero only


def test_find_supernet_and_pareto_front() -> None:
    module = UserModule()
    assert find_supernet(module) is module.net
    with pytest.raises(ValueError, match="no lightning_nas choice"):
        find_supernet(nn.Linear(2, 2))
    records = [Record(i, Architecture({"i": i}), EvalResult("ok", {"search/val_acc": a, "model/params": p}), 0, {})
               for i, (a, p) in enumerate([(0.9, 100), (0.8, 50), (0.7, 80), (0.95, 200)])]
    records.append(Record(4, Architecture({"i": 4}), EvalResult.failed("boom"), 0, {}))
    assert [r.index for r in pareto_front(records)] == [3, 0, 1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sampling": "greedy"}, "sampling"),
    ({"search_every_n_epochs": 0}, "search_every_n_epochs"),
    ({"calibration_batches": -1}, "calibration_batches"),
    ({"strategy": "evolution"}, "strategy"),
    ({"objective": 3}, "objective"),
    ({"objective": {"accuracy": 1.0, "latency": -0.1}, "measure_hardware": False}, "hardware"),
    ({"num_random_paths": -1}, "num_random_paths"),
    ({"seed": -1}, "seed"),
])
def test_invalid_options_raise_at_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NASCallback(**kwargs)


def test_rejects_supernet_module() -> None:
    with pytest.raises(ValueError, match="SearchController"):
        fit(NASCallback(strategy=RandomSearch(num_samples=2)), SupernetModule(UserModule().net), epochs=1)


def test_example_script_runs(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "examples" / "nas_callback.py"), "--epochs", "1", "--population", "4",
               "--generations", "2", "--output-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best architecture: {" in done.stdout and "best val acc" in done.stdout
    assert (tmp_path / "best" / "arch.json").exists()
