"""A LightningCLI config holding ``NASCallback`` is saved as plain values and replays to the same config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.callbacks.nas_callback import NASCallback
from lightning_nas.nn import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, ValueChoice

pytest.importorskip("jsonargparse")
from lightning.pytorch.cli import LightningCLI


class SignData(L.LightningDataModule):
    """Random 8x8 images labelled by the sign of their mean."""

    def _data(self, n: int, seed: int) -> TensorDataset:
        x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        return TensorDataset(x, (x.mean((1, 2, 3)) > 0).long())

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self._data(32, 0), batch_size=16)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self._data(16, 1), batch_size=16)


class TinyModel(L.LightningModule):
    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        width = ValueChoice([4, 8], label="width")
        self.lr = lr
        self.net = nn.Sequential(ElasticConv2d(1, width, 3), ElasticBatchNorm2d(width), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), ElasticLinear(width, 2))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_acc", (self.net(batch[0]).argmax(-1) == batch[1]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


OBJECTIVES = {
    "weights": {"accuracy": 1.0, "params": -0.1},
    "multi": {"class_path": "lightning_nas.objectives.MultiObjective",
              "init_args": {"metrics": {"accuracy": "max", "params": "min"}}},
}


def _fit(config: Path, root: Path) -> dict[str, Any]:
    LightningCLI(TinyModel, SignData, args=["fit", "--config", str(config), "--trainer.default_root_dir", str(root)])
    saved = sorted(root.rglob("config.yaml"))
    assert saved, f"LightningCLI saved no config under {root}"
    loaded = yaml.safe_load(saved[0].read_text())
    assert "Unable to serialize" not in saved[0].read_text()
    loaded["trainer"].pop("default_root_dir")
    return {"config": loaded, "path": saved[0]}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_saved_config_replays(objective: str, tmp_path: Path) -> None:
    callback = {"class_path": "lightning_nas.callbacks.NASCallback",
                "init_args": {"objective": OBJECTIVES[objective], "monitor_every_epoch": False,
                              "strategy": {"class_path": "lightning_nas.strategies.RandomSearch",
                                           "init_args": {"num_samples": 2}}}}
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({"trainer": {"max_epochs": 1, "logger": False, "enable_progress_bar": False,
                                                 "enable_model_summary": False, "callbacks": [callback]}}))
    saved = _fit(first, tmp_path / "run1")
    node = saved["config"]["trainer"]["callbacks"][0]["init_args"]["objective"]
    if objective == "weights":
        assert node == {"accuracy": 1.0, "params": -0.1}
    else:
        assert node["class_path"] == "lightning_nas.objectives.MultiObjective"
    replayed = _fit(saved["path"], tmp_path / "run2")
    assert replayed["config"] == saved["config"]
    assert isinstance(NASCallback(objective=node if objective == "weights" else None), NASCallback)
