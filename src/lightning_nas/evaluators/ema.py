"""``EMAWeights``: an exponential moving average of the weights, swapped in when training ends."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

__all__ = ["EMAWeights"]


class EMAWeights(L.Callback):
    """Keeps an exponential moving average of the trainable weights and loads it at the end of ``fit``.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` optimizer steps, so a
    short run is not dominated by its random initial weights. Put it before
    :class:`~lightning_nas.evaluators.classifier.RecalibrateBatchNorm` in the callback list: the
    BatchNorm statistics are then re-estimated for the averaged weights.

    Args:
        decay: the largest per-step decay, in ``[0, 1)``; 0.999 averages over about the last 1000 steps.

    Example:
        >>> trainer = L.Trainer(callbacks=[EMAWeights(0.999), RecalibrateBatchNorm()])  # doctest: +SKIP
    """

    def __init__(self, decay: float = 0.999) -> None:
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self._params: list[torch.Tensor] = []
        self._average: list[torch.Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._params = [p for p in pl_module.parameters() if p.requires_grad]
        self._average = [p.detach().clone() for p in self._params]
        self.updates = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self._average, [p.detach() for p in self._params], 1.0 - decay)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.updates:
            return
        with torch.no_grad():
            for param, average in zip(self._params, self._average, strict=True):
                param.copy_(average)
        self._params, self._average = [], []
