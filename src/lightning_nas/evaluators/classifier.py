"""``ClassificationModule``: the LightningModule that trains any plain classifier network."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.nn.batchnorm import recalibrate_bn

__all__ = [
    "OPTIMIZERS",
    "ClassificationModule",
    "RecalibrateBatchNorm",
    "recalibrate_batchnorm",
    "validate_recipe",
]

OPTIMIZERS = ("sgd", "adamw")
recalibrate_batchnorm = recalibrate_bn
"""The project's one BN recalibration, :func:`lightning_nas.nn.recalibrate_bn` (kept under its old name)."""


def validate_recipe(prefix: str = "", **values: Any) -> None:
    """Check training hyperparameters; the ``ValueError`` names the offending key.

    Args:
        prefix: prepended to key names in messages (``"evaluator."``).
        values: any of ``optimizer, lr, weight_decay, momentum, label_smoothing, warmup_epochs,
            num_classes, max_epochs, final_max_epochs, max_steps, limit_train_batches``.
    """
    checks: dict[str, tuple[Any, str]] = {
        "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        "lr": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
        "weight_decay": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
        "momentum": (lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
        "label_smoothing": (lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
        "warmup_epochs": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
        "num_classes": (lambda v: _is_int(v) and v >= 2, "an int >= 2"),
        "max_epochs": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "final_max_epochs": (lambda v: v is None or (_is_int(v) and v >= 1), "None or an int >= 1"),
        "max_steps": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (no limit) or an int >= 1"),
        "limit_train_batches": (
            lambda v: (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
            "a fraction in (0, 1] or a batch count >= 1",
        ),
    }
    for key, value in values.items():
        check, expected = checks[key]
        if not check(value):
            raise ValueError(f"{prefix}{key} must be {expected}, got {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class WarmupCosine:
    """Learning-rate multiplier for ``LambdaLR``, per step: linear warm-up from ~0 to 1 over ``warmup_steps``,
    then cosine decay to 0 at ``total_steps``.

    :meth:`retarget` moves the end of the decay when a run's length changes on the way (its batches per
    epoch): the decay goes on from where it is and reaches 0 at the new end.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self._from_step, self._from_progress = warmup_steps, 0.0  # where the current stretch of the decay starts

    def progress(self, step: int) -> float:
        """How far the decay is at ``step``, from 0 (after the warm-up) to 1 (the end)."""
        span = max(1, self.total_steps - self._from_step)
        return min(1.0, self._from_progress + (1.0 - self._from_progress) * (step - self._from_step) / span)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))

    def retarget(self, step: int, total_steps: int) -> None:
        """From ``step`` on, end the decay at ``total_steps`` (the multiplier does not jump)."""
        if step > self.warmup_steps:
            self._from_step, self._from_progress = step, self.progress(step)
        self.total_steps = max(int(total_steps), step + 1)


class ClassificationModule(L.LightningModule):
    """Cross-entropy training of a plain classifier, with accuracy on every split.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss`` and ``test/acc``
    (epoch means). A non-finite training loss raises ``FloatingPointError`` at once. After
    ``fit``, :attr:`fit_metrics` holds ``train/epochs``, ``train/steps``, ``train/loss``, ``train/acc``.

    Args:
        model: the network; maps a batch of inputs to ``num_classes`` logits.
        num_classes: number of classes.
        optimizer: ``"adamw"`` or ``"sgd"`` (with Nesterov momentum when ``momentum > 0``).
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        momentum: SGD momentum (ignored by AdamW).
        label_smoothing: cross-entropy label smoothing.
        warmup_epochs: epochs of linear LR warm-up before the per-step cosine decay.
        channels_last: train in the channels-last memory format (weights and 4-D inputs); the
            network is back in the default format after ``fit``.

    Example:
        >>> module = ClassificationModule(nn.Linear(4, 3), num_classes=3, optimizer="sgd", lr=0.1)
        >>> module(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        warmup_epochs: float = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        validate_recipe(num_classes=num_classes, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                        momentum=momentum, label_smoothing=label_smoothing, warmup_epochs=warmup_epochs)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.fit_metrics: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _shared_step(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        smoothing = self.hparams["label_smoothing"] if stage == "train" else 0.0
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        accuracy.update(logits.detach(), y)
        size = int(y.shape[0])
        self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=size)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def on_fit_start(self) -> None:
        if self.hparams.get("channels_last"):
            self.model.to(memory_format=torch.channels_last)

    def on_fit_end(self) -> None:
        if self.hparams.get("channels_last"):
            self.model.to(memory_format=torch.contiguous_format)
        self._record_fit_metrics()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.hparams.get("channels_last") and batch[0].ndim == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        loss = self._shared_step(batch, "train", self.train_acc)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {self.global_step}")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"],
                                        nesterov=hp["momentum"] > 0, weight_decay=hp["weight_decay"])
        else:
            optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):  # unbounded training: constant learning rate
            return optimizer
        per_epoch = self.trainer.num_training_batches / self.trainer.accumulate_grad_batches
        per_epoch = math.ceil(per_epoch) if math.isfinite(per_epoch) else total
        warmup = min(int(total), round(hp["warmup_epochs"] * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, int(total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A fit that continues a checkpoint (a multi-fidelity promotion to more epochs) decays its learning rate
        to its own end: the schedule's saved length is left out, so the new :class:`WarmupCosine` (built for this
        fit's total steps) carries on from the checkpoint's step. Restoring it would keep the old end, where the
        multiplier is 0, and the continued epochs would not train."""
        for state in checkpoint.get("lr_schedulers", []):
            if isinstance(state, dict) and "lr_lambdas" in state:
                state["lr_lambdas"] = [None] * len(state["lr_lambdas"])  # LambdaLR skips a None when loading

    def _record_fit_metrics(self) -> None:
        metrics: Mapping[str, Any] = self.trainer.callback_metrics
        self.fit_metrics = {
            "train/epochs": float(self.trainer.current_epoch),
            "train/steps": float(self.trainer.global_step),
            **{k: float(metrics[k]) for k in ("train/loss", "train/acc") if k in metrics},
        }


class RecalibrateBatchNorm(L.Callback):
    """Re-estimates BatchNorm running statistics from training batches when training ends.

    After a short training run the running statistics (an exponential average over weights
    that kept changing) can be far from the final network's activations, so eval-mode accuracy
    sits near chance while train accuracy is high. This recomputes them with the final weights
    as an equal-weight average over up to ``num_batches`` training batches (BN layers in train
    mode, every other layer in eval mode, no gradients). Nothing happens without BatchNorm.

    Args:
        num_batches: most training batches to use.

    Example:
        >>> trainer = L.Trainer(callbacks=[RecalibrateBatchNorm(20)])  # doctest: +SKIP
    """

    def __init__(self, num_batches: int = 20) -> None:
        if not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be an int >= 1, got {num_batches!r}")
        self.num_batches = num_batches

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if loader is None:
            return
        limit = min(self.num_batches, trainer.num_training_batches)  # inf for iterable datasets
        inputs = (pl_module.transfer_batch_to_device(batch[0], pl_module.device, 0) for batch in loader)
        recalibrate_bn(pl_module, itertools.islice(inputs, int(limit)))
