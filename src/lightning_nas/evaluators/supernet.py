"""Scoring subnets with inherited supernet weights (no training), and retraining the winner.

:class:`SupernetEvaluator` freezes a path of a trained supernet, re-estimates its BatchNorm
statistics on a few training batches (:func:`recalibrate_bn`) and measures its accuracy on
cached validation batches: milliseconds per subnet, so a strategy can score hundreds.
:func:`retrain` is the final stage: the chosen architecture trained from scratch or fine-tuned.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.supernet_workers import ForkedScorer, can_fork, weights_fingerprint
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded
from lightning_nas.hardware.profile import (
    count_macs,
    count_params,
    measure_latency,
    peak_activation_memory,
    profile_model,
)
from lightning_nas.nn import freeze, has_choices
from lightning_nas.nn.batchnorm import recalibrate_bn
from lightning_nas.nn.fusion import fold_batchnorm, inplace_activations
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.supernet import SupernetSpace

__all__ = ["RETRAIN_MODES", "SupernetEvaluator", "ValScore", "recalibrate_bn", "retrain", "top1_accuracy"]


@runtime_checkable
class SupernetOwner(Protocol):
    """A trained weight-sharing module (e.g. ``SupernetModule``): its supernet and its space."""

    supernet: nn.Module
    space: SearchSpace

log = logging.getLogger(__name__)

RETRAIN_MODES = ("scratch", "finetune")


ValScore = Callable[[nn.Module, Sequence[tuple[torch.Tensor, torch.Tensor]]], float]
"""A subnet's validation score (higher is better) from the frozen subnet and the ``(x, y)`` batches."""


def top1_accuracy(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy: the network returns class logits, ``y`` holds class indices."""
    correct, total = 0, 0
    for x, y in batches:
        correct += int((model(x).argmax(-1) == y).sum())
        total += int(y.numel())
    return correct / total


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


class SupernetEvaluator(Evaluator):
    """Scores a path of a trained supernet with inherited weights; never raises for a bad candidate.

    For each architecture: ``freeze`` the path (sharing the supernet's weights, BN statistics copied),
    :func:`recalibrate_bn` on ``calibration_batches`` training batches, then accuracy on the
    validation batches (``search/val_acc``). Both sets of batches are read once and cached as
    tensors on the supernet's device, so every subnet sees the same data. ``model/params``
    is always reported; with ``measure_hardware`` also ``model/macs``, ``hw/memory_mb``,
    ``hw/latency_ms`` and ``hw/latency_p90_ms`` (cached per architecture).

    Data comes from ``datamodule`` (``train_dataloader()``/``val_dataloader()``, after
    ``setup("fit")``) or from explicit ``train_dataloader``/``val_dataloader`` iterables of
    ``(inputs, targets, ...)`` batches.

    Args:
        supernet_module_or_supernet: a :class:`SupernetModule` or a supernet ``nn.Module``.
        datamodule: the data (or pass the two loaders).
        calibration_batches: training batches for BN recalibration (0 keeps the supernet's statistics).
        max_val_batches: cap on validation batches (None: all).
        latency_repeats: timed forward passes per latency measurement.
        measure_hardware: also measure MACs, memory and latency.
        train_dataloader: training batches, instead of ``datamodule``.
        val_dataloader: validation batches, instead of ``datamodule``.
        val_score: the subnet's ``search/val_acc`` from the frozen subnet and the cached ``(x, y)`` validation
            batches (default :func:`top1_accuracy`); a user's own score plugs in here.
        channels_last: score in the channels-last memory format (images cached so, convolution weights
            copied so per subnet; the supernet is untouched): the same scores, and on CPU depthwise
            convolutions and train-mode BatchNorm several times faster (``benchmarks/supernet_scoring.py``).
        fold_bn: after recalibration, fold each BatchNorm that follows a convolution into it for the
            validation pass (eval-mode BN is a per-channel affine map): the same scores up to float
            rounding, and faster. Model metrics are those of the unfolded subnet.
        workers: processes scoring at once in :meth:`evaluate_many` (1: in this process). They are forked
            from this one (so they share the supernet's and the cached batches' memory), run one thread
            each and give the scores this process gives; of the hardware metrics they compute the exact
            ones (MACs, memory), latency is timed here, one subnet at a time, so that workers do not slow
            it down. Needs the ``fork`` start method and a supernet on the CPU; else in-process.

    Every activation that follows a convolution or BatchNorm in an ``nn.Sequential`` runs in place
    while scoring (the same values, less memory traffic).

    Example:
        >>> evaluator = SupernetEvaluator(module, dm, measure_hardware=False)  # doctest: +SKIP
        >>> evaluator.evaluate(space, space.sample(rng)).metrics["search/val_acc"]  # doctest: +SKIP
        0.91
    """

    def __init__(
        self,
        supernet_module_or_supernet: nn.Module,
        datamodule: L.LightningDataModule | None = None,
        calibration_batches: int = 5,
        max_val_batches: int | None = None,
        latency_repeats: int = 10,
        measure_hardware: bool = True,
        *,
        train_dataloader: Iterable[Any] | None = None,
        val_dataloader: Iterable[Any] | None = None,
        val_score: ValScore | None = None,
        channels_last: bool = True,
        fold_bn: bool = False,
        workers: int = 1,
    ) -> None:
        module = supernet_module_or_supernet
        self.supernet: nn.Module = module.supernet if isinstance(module, SupernetOwner) else module
        if not isinstance(self.supernet, nn.Module) or not has_choices(self.supernet):
            raise ValueError(f"SupernetEvaluator needs a supernet with lightning_nas choices, "
                             f"got {type(module).__name__}")
        _check_int("calibration_batches", calibration_batches, 0)
        _check_int("latency_repeats", latency_repeats, 1)
        _check_int("workers", workers, 1)
        for key, flag in (("channels_last", channels_last), ("fold_bn", fold_bn)):
            if not isinstance(flag, bool):
                raise ValueError(f"evaluator.{key} must be a bool, got {flag!r}")
        if max_val_batches is not None:
            _check_int("max_val_batches", max_val_batches, 1)
        if datamodule is None and (train_dataloader is None or val_dataloader is None):
            raise ValueError("SupernetEvaluator needs a datamodule, or both train_dataloader and "
                             "val_dataloader")
        self.owner_space = module.space if isinstance(module, SupernetOwner) else None
        self.datamodule = datamodule
        self.calibration_batches, self.max_val_batches = calibration_batches, max_val_batches
        self.latency_repeats, self.measure_hardware = latency_repeats, bool(measure_hardware)
        self._loaders = (train_dataloader, val_dataloader)
        self.val_score: ValScore = val_score if val_score is not None else top1_accuracy
        self.channels_last, self.fold_bn, self.workers = channels_last, fold_bn, workers
        self._scorer: ForkedScorer | None = None
        self._latency_in_parent = False  # True in a worker: its parent times the latency
        self._calibration: list[torch.Tensor] | None = None
        self._val: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._hardware: dict[Architecture, dict[str, float]] = {}
        self.num_evaluated = 0
        self.seconds = 0.0

    @property
    def parallelism(self) -> int:
        """How many candidates :meth:`evaluate_many` scores at once (the search loop's batch size)."""
        return self.workers if can_fork(self.supernet) else 1

    @property
    def subnets_per_second(self) -> float:
        """Successful evaluations per second of evaluation time (0 before any)."""
        return self.num_evaluated / self.seconds if self.seconds > 0 else 0.0

    def space(self) -> SearchSpace:
        """The supernet module's space, or a :class:`SupernetSpace` shaped from the validation data."""
        if self.owner_space is not None:
            return self.owner_space
        x, _ = self._val_batches()[0]
        was_training = self.supernet.training
        try:
            with torch.no_grad():
                out = self.supernet.eval()(x[:1])
        finally:
            self.supernet.train(was_training)
        return SupernetSpace(self.supernet, tuple(x.shape[1:]), int(out.shape[-1]))

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """``search/val_acc`` of the path ``arch`` with inherited weights, plus model metrics."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            chosen = space.validate(arch)
            model = self._scoring_subnet(chosen)
            model_metrics = self._model_metrics(chosen, model, space.input_shape)  # of the unfolded subnet
            if self.fold_bn:
                fold_batchnorm(model)
            with torch.inference_mode():
                metrics["search/val_acc"] = float(self.val_score(model, self._val_batches()))
            metrics.update(model_metrics)
        except Exception as error:  # a bad candidate must not end the search
            log.debug("subnet %s failed", arch.digest(), exc_info=True)
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - start)
        duration = time.perf_counter() - start
        self.num_evaluated += 1
        self.seconds += duration
        return EvalResult("ok", metrics, duration_s=duration)

    def evaluate_many(self, space: SearchSpace, archs: Sequence[Architecture]) -> list[EvalResult]:
        """One result per architecture, in order, scored by ``workers`` forked processes (when there are
        several, and more than one architecture); the same results as :meth:`evaluate` one by one."""
        if self.workers == 1 or len(archs) < 2:
            return [self.evaluate(space, arch) for arch in archs]
        start = time.perf_counter()
        scorer = self._forked_scorer(space)
        if scorer is None:
            return [self.evaluate(space, arch) for arch in archs]
        results = scorer.map(archs)
        if scorer.broken:  # a worker died: score what is left here, fork afresh next time
            self.close()
        done = [r if r is not None else self.evaluate(space, a) for a, r in zip(archs, results, strict=True)]
        if self.measure_hardware:
            done = [self._with_hardware(space, a, r) if r.ok else r for a, r in zip(archs, done, strict=True)]
        self.num_evaluated += sum(r.ok for r in results if r is not None)
        self.seconds += time.perf_counter() - start
        return done

    def worker_copy(self) -> SupernetEvaluator:
        """What a forked worker runs: this evaluator in one process, latency left to the parent."""
        twin = copy.copy(self)
        twin.workers, twin._latency_in_parent, twin._scorer = 1, True, None
        return twin

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`evaluate_many` forks new ones)."""
        scorer, self._scorer = getattr(self, "_scorer", None), None
        if scorer is not None:
            scorer.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scorer": None}  # worker processes do not travel

    def __del__(self) -> None:
        self.close()

    def _forked_scorer(self, space: SearchSpace) -> ForkedScorer | None:
        """The pool for ``space`` and the supernet's current weights (forked afresh when they changed)."""
        if not can_fork(self.supernet):
            if not getattr(self, "_warned_no_fork", False):
                log.warning("SupernetEvaluator(workers=%d): no fork start method or the supernet is not on the "
                            "CPU; scoring in this process", self.workers)
                self._warned_no_fork = True
            return None
        fingerprint = (id(space), weights_fingerprint(self.supernet))
        if self._scorer is not None and self._scorer.fingerprint != fingerprint:
            self.close()
        if self._scorer is None:
            try:
                self._calibration_batches(), self._val_batches()  # cached before the fork: the workers share them
                self._scorer = ForkedScorer(self, space, self.workers, fingerprint)
            except Exception as error:  # e.g. no memory to fork, or data that cannot be read: score here
                log.warning("SupernetEvaluator(workers=%d): no worker processes (%s: %s); scoring in this process",
                            self.workers, type(error).__name__, error)
        return self._scorer

    def _with_hardware(self, space: SearchSpace, arch: Architecture, result: EvalResult) -> EvalResult:
        """``result`` (from a worker, with MACs and memory) with the latency of ``arch``, timed here."""
        chosen = space.validate(arch)
        try:
            if chosen not in self._hardware:
                model = self._scoring_subnet(chosen, calibrate=False)
                stats = measure_latency(model, space.input_shape, repeats=self.latency_repeats)
                self._hardware[chosen] = {**{k: v for k, v in result.metrics.items() if k != "search/val_acc"},
                                          "hw/latency_ms": stats.median_ms, "hw/latency_p90_ms": stats.p90_ms}
        except Exception as error:  # as in evaluate: a failed measurement fails the candidate
            log.debug("hardware metrics of %s failed", arch.digest(), exc_info=True)
            return EvalResult.failed(f"{type(error).__name__}: {error}", result.metrics, result.duration_s)
        return EvalResult(result.status, {**result.metrics, **self._hardware[chosen]}, duration_s=result.duration_s)

    def subnet(self, arch: Architecture, share_weights: bool = False) -> nn.Module:
        """The frozen path ``arch`` with inherited weights and recalibrated BN, in eval mode.

        Scoring shares the supernet's weights (no copy; BN statistics are the subnet's own); by
        default the weights are copied, so the returned model is independent of the supernet.
        """
        return self._calibrated(freeze(self.supernet, arch, share_weights=share_weights))

    def _scoring_subnet(self, arch: Architecture, calibrate: bool = True) -> nn.Module:
        """The subnet scored: the supernet's weights shared, or with ``channels_last`` convolution
        weights copied into that format (the supernet's own tensors keep theirs); in-place activations."""
        model = freeze(self.supernet, arch, share_weights=True)
        inplace_activations(model)
        if self.channels_last:
            for module in model.modules():
                weight = getattr(module, "weight", None)
                if isinstance(module, nn.Conv2d) and isinstance(weight, torch.Tensor):
                    # requires_grad as the original: count_params (model/params) counts trainable parameters
                    module.weight = nn.Parameter(_as_channels_last(weight.detach()), requires_grad=weight.requires_grad)
        return self._calibrated(model) if calibrate else model.eval()

    def _calibrated(self, model: nn.Module) -> nn.Module:
        """``model`` with its BN statistics recalibrated on the cached batches, in eval mode."""
        if self.calibration_batches:
            recalibrate_bn(model, self._calibration_batches())
        return model.eval()

    def _model_metrics(self, arch: Architecture, model: nn.Module,
                       input_shape: tuple[int, ...]) -> dict[str, float]:
        if not self.measure_hardware:
            return {"model/params": float(count_params(model))}
        if self._latency_in_parent:  # a worker: the exact metrics, the latency is timed by the parent
            return {"model/params": float(count_params(model)), "model/macs": float(count_macs(model, input_shape)),
                    "hw/memory_mb": peak_activation_memory(model, input_shape) / 2**20}
        if arch not in self._hardware:
            self._hardware[arch] = profile_model(model, input_shape, latency_repeats=self.latency_repeats)
        return dict(self._hardware[arch])

    def _calibration_batches(self) -> list[torch.Tensor]:
        device = _device_of(self.supernet)
        if self._calibration is None or (self._calibration and self._calibration[0].device != device):
            loader = self._loaders[0] if self._loaders[0] is not None else self._datamodule_loader("train")
            self._calibration = [self._format(b[0].to(device)) for b in _take(loader, self.calibration_batches)]
        return self._calibration

    def _val_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        device = _device_of(self.supernet)
        if self._val is None or self._val[0][0].device != device:
            loader = self._loaders[1] if self._loaders[1] is not None else self._datamodule_loader("val")
            self._val = [(self._format(b[0].to(device)), b[1].to(device)) for b in _take(loader, self.max_val_batches)]
            if not self._val:
                raise ValueError("SupernetEvaluator: the validation data is empty")
        return self._val

    def _format(self, images: torch.Tensor) -> torch.Tensor:
        return _as_channels_last(images) if self.channels_last else images

    def _datamodule_loader(self, split: str) -> Iterable[Any]:
        if self.datamodule is None:
            raise ValueError(f"SupernetEvaluator has no {split} data")
        self.datamodule.setup("fit")
        loader = self.datamodule.train_dataloader() if split == "train" else self.datamodule.val_dataloader()
        return loader


def _as_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A channels-last copy of a 4-D tensor (also where one channel or a 1x1 kernel makes the format
    ambiguous: the strides then still tell convolutions to compute channels-last); others unchanged."""
    if tensor.dim() != 4:
        return tensor
    return torch.empty_like(tensor, memory_format=torch.channels_last).copy_(tensor)


def _take(loader: Iterable[Any], limit: int | None) -> list[Any]:
    batches: list[Any] = []
    for batch in loader:
        if limit is not None and len(batches) >= limit:
            break
        batches.append(batch)
    return batches


def _check_int(key: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"evaluator.{key} must be an int >= {low}, got {value!r}")


def _reinitialise(model: nn.Module) -> nn.Module:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


def retrain(
    space_or_supernet: SearchSpace | nn.Module,
    arch: Architecture,
    datamodule: L.LightningDataModule,
    mode: str = "scratch",
    max_epochs: int = 10,
    lr: float | None = None,
    seed: int = 0,
    models: MutableMapping[Architecture, nn.Module] | None = None,
    **evaluator_kwargs: Any,
) -> dict[str, float]:
    """Final stage: train ``arch`` stand-alone and report ``test/acc`` (and val/train/model metrics).

    ``"scratch"``: a freshly initialised network (``space.build(arch)``; for a supernet module
    without a space, the frozen path with re-initialised parameters). ``"finetune"``: the
    frozen path inheriting the supernet's weights, trained further. Training uses
    :class:`~lightning_nas.evaluators.train.TrainEvaluator` (its ``fit_model``/``test_model``).

    Args:
        space_or_supernet: a :class:`SearchSpace`, a :class:`SupernetModule` or a supernet module.
        arch: the architecture to retrain.
        datamodule: data with train/val/test dataloaders.
        mode: ``"scratch"`` or ``"finetune"`` (needs a supernet).
        max_epochs: training epochs.
        lr: peak learning rate (None: 3e-3 from scratch, 1e-3 to fine-tune).
        seed: base seed of initialisation and training.
        models: filled with ``arch`` -> the retrained network (like ``TrainEvaluator.trained_models``).
        evaluator_kwargs: further :class:`TrainEvaluator` options (``optimizer``, ``accelerator``...).

    Example:
        >>> retrain(module, callback.best_arch, dm, mode="finetune")["test/acc"]  # doctest: +SKIP
        0.96
    """
    if mode not in RETRAIN_MODES:
        raise ValueError(f"retrain mode must be one of {list(RETRAIN_MODES)}, got {mode!r}")
    rate = lr if lr is not None else (3e-3 if mode == "scratch" else 1e-3)
    evaluator = TrainEvaluator(datamodule, max_epochs=max_epochs, lr=rate, seed=seed, **evaluator_kwargs)
    model = _retrain_model(space_or_supernet, arch, mode, derive_seed(seed, arch.digest(), "init"))
    num_classes = getattr(space_or_supernet, "num_classes", None) or getattr(datamodule, "num_classes", None)
    metrics = {"model/params": float(count_params(model))}
    train_seed = derive_seed(seed, arch.digest(), "train")
    module = evaluator.fit_model(model, num_classes=num_classes, seed=train_seed, progress=evaluator.final_progress)
    metrics.update(module.fit_metrics)
    metrics.update(evaluator.validate_model(module))
    metrics.update(evaluator.test_model(module))
    if models is not None:
        models[arch] = module.model
    log.info("retrained %s (%s): test/acc=%.4f", arch.digest(), mode, metrics.get("test/acc", float("nan")))
    return metrics


def _retrain_model(source: SearchSpace | nn.Module, arch: Architecture, mode: str, seed: int) -> nn.Module:
    space = source.space if isinstance(source, SupernetOwner) else source
    supernet = source.supernet if isinstance(source, SupernetOwner) else source
    if mode == "scratch" and isinstance(space, SearchSpace) and not isinstance(space, SupernetSpace):
        with seeded(seed):
            return space.build(arch)
    if isinstance(supernet, SupernetSpace):
        supernet = supernet.module
    if not isinstance(supernet, nn.Module):
        raise ValueError(f"retrain mode {mode!r} needs a supernet module, got {type(source).__name__}")
    model = freeze(supernet, arch)
    if mode == "scratch":
        with seeded(seed):
            _reinitialise(model)
    return model
