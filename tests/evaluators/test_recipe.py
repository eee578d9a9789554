"""The final recipe's pieces: EMA of the weights, channels_last training, final warm-up."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators.classifier import ClassificationModule
from lightning_nas.evaluators.ema import EMAWeights
from lightning_nas.evaluators.train import TrainEvaluator


def test_ema_averages_the_weights_and_loads_them_at_the_end() -> None:
    model = nn.Linear(2, 1, bias=False)
    ema = EMAWeights(0.5)
    module = L.LightningModule()
    module.net = model
    ema.on_fit_start(None, module)  # type: ignore[arg-type]
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.on_train_batch_end(None, module, None, None, 0)  # type: ignore[arg-type]
    decay = min(0.5, 2 / 11)  # the ramp: (1 + n) / (10 + n) after the first update
    expected = decay * start + (1 - decay) * (start + 1)
    ema.on_train_end(None, module)  # type: ignore[arg-type]
    assert torch.allclose(model.weight, expected)


def test_ema_decay_is_checked() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMAWeights(1.0)
    with pytest.raises(ValueError, match=r"evaluator\.ema_decay"):
        TrainEvaluator(DigitsDataModule(), ema_decay=-0.1)


def test_final_fit_uses_ema_channels_last_and_its_own_warmup() -> None:
    data = DigitsDataModule(max_train_samples=128, max_val_samples=64, batch_size=32)
    evaluator = TrainEvaluator(data, max_epochs=1, ema_decay=0.9, channels_last=True, final_warmup_epochs=1,
                               latency_repeats=1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10))
    module = evaluator.fit_model(model, 1, num_classes=10, final=True)
    assert module.hparams["warmup_epochs"] == 1 and module.hparams["channels_last"]
    assert model[0].weight.is_contiguous()  # back in the default format after fit
    assert 0.0 <= evaluator.validate_model(module)["val/acc"] <= 1.0
    search = evaluator.fit_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), 1, num_classes=10)
    assert search.hparams["warmup_epochs"] == 0


def test_channels_last_module_trains_on_channels_last_batches() -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.head = nn.Linear(2 * 6 * 6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.head(self.conv(x).flatten(1))

    module = ClassificationModule(Probe(), 3, channels_last=True)
    module.training_step((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])), 0)
    assert seen == [True]
