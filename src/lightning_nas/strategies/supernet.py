"""Weight sharing: single-path one-shot supernet training (SPOS) with an optional sandwich rule.

:class:`SupernetModule` trains every path of a supernet at once: each batch trains one path
drawn uniformly (``sampling="uniform"``, Guo et al. 2020), or the largest, the smallest and
``num_random_paths`` random paths with in-place distillation (``sampling="sandwich"``, Yu et
al. 2020 / BigNAS). :class:`PathSampler` draws the paths and is shared with
:class:`~lightning_nas.callbacks.NASCallback`; :class:`SupernetSpace` turns any module that
contains choices into a :class:`~lightning_nas.spaces.base.SearchSpace` so strategies can search it.

"Largest" and "smallest" are defined per decision (:func:`path_extremes`): the maximum and
minimum for numeric candidates (width, depth, kernel, expansion, resolution, ...); for a
:class:`~lightning_nas.nn.LayerChoice`, the candidate with the most and fewest parameters
(the first declared on ties). Other categorical decisions (string values, input subsets,
layer candidates of equal size) have no order and are drawn at random for each path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.arch import Architecture, ChoiceValue
from lightning_nas.evaluators.classifier import validate_recipe
from lightning_nas.nn import LayerChoice, ValueChoice, activate, decisions, freeze, sample
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "SAMPLING_RULES",
    "PathSampler",
    "SupernetModule",
    "broadcast_paths",
    "path_extremes",
]

SAMPLING_RULES = ("uniform", "sandwich")


def _layer_sizes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Parameter count of every candidate of every :class:`LayerChoice`, by label."""
    sizes: dict[str, dict[str, int]] = {}
    for module in model.modules():
        if isinstance(module, LayerChoice) and module.label not in sizes:
            sizes[module.label] = {
                name: sum(p.numel() for p in candidate.parameters())
                for name, candidate in module.candidates.items()
            }
    return sizes


def path_extremes(model: nn.Module) -> tuple[dict[str, ChoiceValue], dict[str, ChoiceValue]]:
    """The largest and the smallest value of each *ordered* decision of ``model``.

    Numeric decisions give their maximum and minimum; a :class:`LayerChoice` gives its
    candidates with the most and the fewest parameters (the first declared on ties), unless
    all are the same size. Unordered decisions are absent from both dicts.

    Args:
        model: a supernet (any module containing ``lightning_nas.nn`` choices).

    Example:
        >>> largest, smallest = path_extremes(nn.Sequential(ElasticLinear(4, ValueChoice([2, 8], label="w"))))
        >>> largest, smallest
        ({'w': 8}, {'w': 2})
    """
    sizes = _layer_sizes(model)
    largest: dict[str, ChoiceValue] = {}
    smallest: dict[str, ChoiceValue] = {}
    for label, choice in decisions(model).items():
        candidates = choice.candidates
        if all(isinstance(c, int | float) for c in candidates):
            largest[label], smallest[label] = max(candidates), min(candidates)
        elif label in sizes and len(set(sizes[label].values())) > 1:
            counts = sizes[label]
            largest[label] = max(counts, key=counts.__getitem__)
            smallest[label] = min(counts, key=counts.__getitem__)
    return largest, smallest


class PathSampler:
    """Draws supernet paths from one ``numpy.random.Generator`` (uniform, extremes, sandwich).

    Args:
        model: the supernet; its decisions and their order are read once.
        rng: the only source of randomness (owned and checkpointed by the caller).

    Example:
        >>> sampler = PathSampler(supernet, np.random.default_rng(0))  # doctest: +SKIP
        >>> largest, smallest, random_path = sampler.sandwich(num_random=1)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, rng: np.random.Generator) -> None:
        self.decisions: dict[str, ValueChoice] = decisions(model)
        if not self.decisions:
            raise ValueError(f"{type(model).__name__} contains no lightning_nas choices: no path to sample")
        self.rng = rng
        self.largest_values, self.smallest_values = path_extremes(model)

    def uniform(self) -> Architecture:
        """A path drawn uniformly at random."""
        return sample(self.decisions, self.rng)

    def largest(self, random_fill: bool = True) -> Architecture:
        """The largest path; unordered decisions drawn at random (or their first candidate)."""
        return self._extreme(self.largest_values, random_fill)

    def smallest(self, random_fill: bool = True) -> Architecture:
        """The smallest path; unordered decisions drawn at random (or their first candidate)."""
        return self._extreme(self.smallest_values, random_fill)

    def _extreme(self, known: Mapping[str, ChoiceValue], random_fill: bool) -> Architecture:
        values: dict[str, ChoiceValue] = {}
        for label, choice in self.decisions.items():
            if label in known:
                values[label] = known[label]
            elif random_fill:
                values[label] = choice.candidates[int(self.rng.integers(len(choice.candidates)))]
            else:
                values[label] = choice.candidates[0]
        return Architecture(values)

    def sandwich(self, num_random: int) -> list[Architecture]:
        """``[largest, smallest, *num_random uniform paths]``."""
        return [self.largest(), self.smallest(), *(self.uniform() for _ in range(num_random))]

    def scheduled(self, position: int, num_random: int) -> Architecture:
        """The sandwich spread over consecutive batches: largest, smallest, then random, cyclically."""
        slot = position % (2 + num_random)
        if slot == 0:
            return self.largest()
        return self.smallest() if slot == 1 else self.uniform()


def broadcast_paths(trainer: L.Trainer | None, paths: list[Architecture]) -> list[Architecture]:
    """Rank zero's ``paths`` on every rank (unchanged without a trainer or on one process)."""
    if trainer is None or trainer.world_size <= 1:
        return paths
    payload = trainer.strategy.broadcast([p.to_dict() for p in paths], src=0)
    return [Architecture(p) for p in payload]


def _soft_cross_entropy(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy against the teacher's softened distribution, scaled by ``T**2``."""
    target = F.softmax(teacher / temperature, dim=-1)
    return -(target * F.log_softmax(logits / temperature, dim=-1)).sum(-1).mean() * temperature**2


class SupernetModule(L.LightningModule):
    """Trains a weight-sharing supernet, one or several sampled paths per batch.

    ``"uniform"``: each batch trains one path drawn uniformly (single-path one-shot).
    ``"sandwich"``: each batch trains the largest path on the labels, then the smallest and
    ``num_random_paths`` random paths on the largest path's soft predictions (in-place
    distillation; on the labels when ``distill=False``); gradients of all paths accumulate
    into one optimizer step. Paths come from the module's own seeded generator (saved in
    checkpoints) and, under DDP, rank zero's paths are broadcast. Optimization is manual
    (``gradient_clip_val`` here, not on the Trainer). Logs ``train/loss``, ``train/acc`` (the
    first path of the batch) and ``val/loss``, ``val/acc`` of the largest path with the
    supernet's shared BN statistics (a lower bound: :class:`SupernetEvaluator` recalibrates).

    Args:
        space_or_supernet: a :class:`SearchSpace` (its ``supernet()`` is trained) or a supernet module.
        optimizer: ``"sgd"`` (Nesterov) or ``"adamw"``.
        lr: peak learning rate, cosine-decayed per step.
        weight_decay: weight decay.
        momentum: SGD momentum.
        label_smoothing: label smoothing of the hard-label loss.
        sampling: ``"uniform"`` or ``"sandwich"``.
        num_random_paths: random paths per batch besides the largest and smallest (sandwich).
        distill: in-place distillation from the largest path (sandwich).
        temperature: softmax temperature of the distillation targets.
        gradient_clip_val: clip the gradient norm to this value, or None.
        seed: seed of the path generator.

    Example:
        >>> module = SupernetModule(EfficientConvNetSpace((1, 8, 8), 10), sampling="sandwich")
        >>> L.Trainer(max_epochs=5).fit(module, datamodule=DigitsDataModule())  # doctest: +SKIP
    """

    def __init__(
        self,
        space_or_supernet: SearchSpace | nn.Module,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 5e-5,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        sampling: str = "uniform",
        num_random_paths: int = 2,
        distill: bool = True,
        temperature: float = 1.0,
        gradient_clip_val: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        validate_recipe("supernet.", optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
                        label_smoothing=label_smoothing)
        _check_options(sampling, num_random_paths, temperature, gradient_clip_val, seed)
        self.save_hyperparameters(ignore=["space_or_supernet"])
        if isinstance(space_or_supernet, SearchSpace):
            self.space: SearchSpace | None = space_or_supernet
            self.supernet = space_or_supernet.supernet()
        elif isinstance(space_or_supernet, nn.Module):
            self.space = None
            self.supernet = space_or_supernet
        else:
            raise ValueError(f"space_or_supernet must be a SearchSpace or an nn.Module, "
                             f"got {space_or_supernet!r}")
        self.rng = np.random.default_rng(seed)
        self.sampler = PathSampler(self.supernet, self.rng)
        self.automatic_optimization = False
        self.last_paths: list[Architecture] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The supernet's output on its active path."""
        return self.supernet(x)

    def subnet(self, arch: Mapping[str, Any]) -> nn.Module:
        """A plain module for ``arch`` inheriting the supernet's weights."""
        return freeze(self.supernet, arch)

    def sample_paths(self) -> list[Architecture]:
        """The paths for the next batch (rank zero's under DDP); also kept in :attr:`last_paths`."""
        hp = self.hparams
        paths = self.sampler.sandwich(hp["num_random_paths"]) if hp["sampling"] == "sandwich" else [
            self.sampler.uniform()]
        self.last_paths = broadcast_paths(self._trainer, paths)
        return self.last_paths

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        paths = self.sample_paths()
        optimizer = cast(Any, self.optimizers())
        optimizer.zero_grad(set_to_none=True)
        losses, accuracy = self._train_paths(paths, x, y)
        clip = self.hparams["gradient_clip_val"]
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            cast(Any, scheduler).step()
        size = int(y.shape[0])
        self.log("train/loss", losses[0], on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        self.log("train/acc", accuracy, on_step=False, on_epoch=True, batch_size=size)
        return torch.stack(losses).sum()

    def _train_paths(self, paths: list[Architecture], x: torch.Tensor,
                     y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Forward and backward every path (gradients accumulate); per-path losses, first path's accuracy."""
        hp = self.hparams
        teacher: torch.Tensor | None = None
        losses: list[torch.Tensor] = []
        accuracy = torch.zeros(())
        for index, path in enumerate(paths):
            activate(self.supernet, path)
            logits = self.supernet(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y, label_smoothing=hp["label_smoothing"])
            else:
                loss = _soft_cross_entropy(logits, teacher, hp["temperature"])
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} on path {path.to_json()} "
                                         f"at step {self.global_step}")
            self.manual_backward(loss)
            if index == 0:
                accuracy = (logits.detach().argmax(-1) == y).float().mean()
                if hp["sampling"] == "sandwich" and hp["distill"]:
                    teacher = logits.detach()
            losses.append(loss.detach())
        return losses, accuracy

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        activate(self.supernet, self.sampler.largest(random_fill=False))
        logits = self.supernet(x)
        size = int(y.shape[0])
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=size)
        accuracy = (logits.argmax(-1) == y).float().mean()
        self.log("val/acc", accuracy, on_epoch=True, prog_bar=True, batch_size=size)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.supernet.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"],
                                        nesterov=hp["momentum"] > 0, weight_decay=hp["weight_decay"])
        else:
            optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["path_sampler_rng"] = self.rng.bit_generator.state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "path_sampler_rng" in checkpoint:
            self.rng.bit_generator.state = checkpoint["path_sampler_rng"]


def _check_options(sampling: str, num_random_paths: int, temperature: float, gradient_clip_val: float | None,
                   seed: int) -> None:
    if sampling not in SAMPLING_RULES:
        raise ValueError(f"supernet.sampling must be one of {list(SAMPLING_RULES)}, got {sampling!r}")
    if not isinstance(num_random_paths, int) or isinstance(num_random_paths, bool) or num_random_paths < 0:
        raise ValueError(f"supernet.num_random_paths must be an int >= 0, got {num_random_paths!r}")
    if not isinstance(temperature, int | float) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"supernet.temperature must be a finite number > 0, got {temperature!r}")
    clip = gradient_clip_val
    if clip is not None and not (isinstance(clip, int | float) and math.isfinite(clip) and clip > 0):
        raise ValueError(f"supernet.gradient_clip_val must be None or a number > 0, got {clip!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"supernet.seed must be an int >= 0, got {seed!r}")
