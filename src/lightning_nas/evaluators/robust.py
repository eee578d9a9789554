"""``RobustnessEvaluator``: train a candidate like :class:`TrainEvaluator`, then add robustness metrics."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded
from lightning_nas.hardware.profile import iter_profile
from lightning_nas.objectives.robustness import CORRUPTIONS, robustness_report
from lightning_nas.spaces.base import SearchSpace

__all__ = ["RobustnessEvaluator"]

log = logging.getLogger(__name__)


def _inner_evaluator(inner: Any, datamodule: L.LightningDataModule | None) -> TrainEvaluator:
    """``inner`` itself, or a :class:`TrainEvaluator` built from its mapping of arguments."""
    if isinstance(inner, TrainEvaluator):
        return inner
    if not isinstance(inner, Mapping):
        raise TypeError(f"evaluator.inner must be a TrainEvaluator or its arguments, got {type(inner).__name__}")
    kwargs = {str(k): v for k, v in inner.items() if k != "_target_"}
    target = str(inner.get("_target_", "TrainEvaluator"))
    if target.rsplit(".", 1)[-1] != "TrainEvaluator":
        raise ValueError(f"evaluator.inner._target_ must name TrainEvaluator, got {target!r}")
    if datamodule is None:
        raise ValueError("evaluator.inner given as arguments needs a datamodule")
    return TrainEvaluator(datamodule, **kwargs)


class RobustnessEvaluator(Evaluator):
    """Scores a candidate like ``inner`` (a :class:`TrainEvaluator`) plus ``robust/*`` metrics.

    The trained network is evaluated on the validation split by
    :func:`~lightning_nas.objectives.robustness.robustness_report`; its normalisation comes from
    the datamodule's ``mean``/``std`` when it normalises. Weights and training seeds match
    ``inner.evaluate``, so ``search/val_acc`` is the same number. Use ``robustness``
    (``robust/adv_ratio``) or any ``robust/...`` metric as an objective.

    Args:
        inner: the training evaluator, or its keyword arguments as a mapping (a Hydra node; a
            ``_target_`` key, if any, must name ``TrainEvaluator``), built with ``datamodule``.
        datamodule: the data when ``inner`` is a mapping (ignored otherwise).
        noise_levels: Gaussian noise stds (pixel units).
        corruptions: corruption names (``gaussian_noise``, ``shot_noise``, ``impulse_noise``).
        severity: corruption severity 1..5.
        eps: L-inf attack radius (pixel units).
        pgd_steps: PGD steps.
        max_batches: validation batches used for the robustness metrics (``None``: all).

    Example:
        >>> evaluator = RobustnessEvaluator(TrainEvaluator(datamodule, max_epochs=1))  # doctest: +SKIP
        >>> evaluator.evaluate(space, arch).metrics["robust/adv_ratio"]  # doctest: +SKIP
        0.41
    """

    def __init__(
        self,
        inner: TrainEvaluator | Mapping[str, Any],
        datamodule: L.LightningDataModule | None = None,
        noise_levels: Sequence[float] = (0.1, 0.2, 0.3),
        corruptions: Sequence[str] = ("gaussian_noise", "shot_noise", "impulse_noise"),
        severity: int = 3,
        eps: float = 8 / 255,
        pgd_steps: int = 10,
        max_batches: int | None = 4,
    ) -> None:
        inner = _inner_evaluator(inner, datamodule)
        unknown = [c for c in corruptions if c not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"evaluator.corruptions: unknown {unknown}; known: {sorted(CORRUPTIONS)}")
        if any(not math.isfinite(n) or n < 0 for n in noise_levels):
            raise ValueError(f"evaluator.noise_levels must be non-negative numbers, got {list(noise_levels)}")
        if not 0 <= eps <= 1 or pgd_steps < 1 or not 1 <= severity <= 5:
            raise ValueError(f"evaluator: need 0 <= eps <= 1, pgd_steps >= 1 and severity in 1..5, got "
                             f"eps={eps!r}, pgd_steps={pgd_steps!r}, severity={severity!r}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"evaluator.max_batches must be positive or None, got {max_batches!r}")
        self.inner = inner
        self.noise_levels, self.corruptions = tuple(float(n) for n in noise_levels), tuple(corruptions)
        self.severity, self.eps, self.pgd_steps, self.max_batches = severity, float(eps), pgd_steps, max_batches

    @property
    def trained_models(self) -> dict[Architecture, nn.Module]:
        """The networks the final :meth:`test` trained (the inner evaluator's)."""
        return self.inner.trained_models

    @property
    def final_max_epochs(self) -> int:
        return self.inner.final_max_epochs

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """Train, validate and attack ``arch``; never raises (a failure gives ``EvalResult.failed``)."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            self._score(space, arch, metrics)
        except Exception as error:  # a bad candidate must not end the search
            log.debug("candidate %s failed", arch.digest(), exc_info=True)
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - start)
        return EvalResult("ok", metrics, duration_s=time.perf_counter() - start)

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """The inner evaluator's final report (see :meth:`TrainEvaluator.test`)."""
        return self.inner.test(space, arch)

    def _score(self, space: SearchSpace, arch: Architecture, metrics: dict[str, float]) -> None:
        inner = self.inner
        model = inner.build(space, arch)
        for name, value in iter_profile(model, space.input_shape, inner.latency_repeats, inner.latency_threads):
            metrics[name] = value
        module = inner.fit_model(model, num_classes=space.num_classes,
                                 seed=derive_seed(inner.seed, arch.digest(), "train"))
        metrics.update(module.fit_metrics)
        scores = inner.validate_model(module)
        metrics["search/val_acc"], metrics["search/val_loss"] = scores["val/acc"], scores["val/loss"]
        if not math.isfinite(scores["val/loss"]):
            raise FloatingPointError(f"validation loss is {scores['val/loss']}")
        data = inner.datamodule
        normalised = bool(getattr(data, "normalize", False))
        mean = tuple(data.mean) if normalised else None  # type: ignore[attr-defined]
        std = tuple(data.std) if normalised else None  # type: ignore[attr-defined]
        with seeded(derive_seed(inner.seed, arch.digest(), "robust")):
            metrics.update(robustness_report(
                module.model, data.val_dataloader(), mean, std, self.noise_levels, self.corruptions,
                self.severity, self.eps, self.pgd_steps, self.max_batches,
                seed=derive_seed(inner.seed, arch.digest(), "noise") % 2**31,
            ))
