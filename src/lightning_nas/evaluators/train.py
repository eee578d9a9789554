"""``TrainEvaluator``: score a candidate by training it from scratch with a Lightning ``Trainer``."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.classifier import ClassificationModule, RecalibrateBatchNorm, validate_recipe
from lightning_nas.evaluators.ema import EMAWeights
from lightning_nas.evaluators.precision import choose_precision, validate_precision
from lightning_nas.hardware.profile import iter_profile
from lightning_nas.spaces.base import SearchSpace

if TYPE_CHECKING:
    from lightning_nas.hardware.base import HardwareTarget

__all__ = ["SCREENED", "TrainEvaluator", "derive_seed", "seeded"]

log = logging.getLogger(__name__)

BN_RECALIBRATION_BATCHES = 20
"""Training batches used to re-estimate BatchNorm statistics after each fit."""
SCREENED = "search/screened"
"""Metric set (1.0) on a candidate not trained because its model metrics break a constraint."""
_ADVISORY_WARNINGS = (r".*(does not have many workers|GPU available but not used"
                      r"|defined a `validation_step` but have no|number of training batches)")
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


def derive_seed(seed: int, *parts: str) -> int:
    """A stable 63-bit seed from a base seed and labels (an architecture digest, a purpose).

    Args:
        seed: the run's base seed.
        parts: strings mixed into the seed.
    """
    text = ":".join([str(seed), *parts]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") % 2**63


@contextmanager
def seeded(seed: int, deterministic: bool = False) -> Iterator[None]:
    """Run a block with torch, numpy and ``random`` seeded, restoring all their global state after.

    Args:
        seed: seed for the block.
        deterministic: also enable ``torch.use_deterministic_algorithms`` (warn-only) in the block.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    det_flags = (torch.are_deterministic_algorithms_enabled(),
                 torch.is_deterministic_algorithms_warn_only_enabled())
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    fill_memory = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    with torch.random.fork_rng():
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            if deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True, warn_only=True)
                # NaN-filling every new tensor costs ~20% of a CPU step and changes no result
                torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.use_deterministic_algorithms(det_flags[0], warn_only=det_flags[1])
            torch.utils.deterministic.fill_uninitialized_memory = fill_memory  # type: ignore[attr-defined]
            if cublas is None:
                os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info logs and its advisory warnings for one block."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    loggers = [logger for logger in loggers if logger.level < logging.WARNING]  # not quiet already
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ADVISORY_WARNINGS)
            warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)  # torch 2.14
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class TrainEvaluator(Evaluator):
    """Scores a candidate by its validation accuracy after a short training run from scratch.

    The candidate's weights are initialised, and its training shuffled, from seeds derived from
    ``(seed, arch.digest())``, inside an RNG fork: the same run re-scores an architecture exactly
    and no global RNG state changes. Model metrics (``model/params``, ``model/macs``,
    ``hw/latency_ms``, ``hw/latency_p90_ms``, ``hw/memory_mb``) are measured on the untrained
    network before training. ``evaluate`` reads only the train and validation splits;
    ``test`` alone reads the test split. ``max_steps`` bounds every fit, the final one included;
    ``limit_train_batches`` bounds the search's fits and, unless ``final_limit_train_batches``
    is set, the final one too. After each fit, BatchNorm running statistics are re-estimated
    with the final weights on up to ``BN_RECALIBRATION_BATCHES`` training batches: after short
    budgets the stale running averages otherwise put eval-mode accuracy near chance.

    Args:
        datamodule: a LightningDataModule with train/val/test dataloaders (``setup`` is called
            once per stage and reused for every candidate).
        max_epochs: training epochs per candidate during the search.
        max_steps: optimizer-step limit per fit (``-1``: none).
        limit_train_batches: fraction (float) or number (int) of training batches per epoch.
        optimizer: ``"adamw"`` or ``"sgd"``.
        lr: peak learning rate (cosine-decayed per step).
        weight_decay: weight decay.
        momentum: SGD momentum.
        label_smoothing: cross-entropy label smoothing during training.
        warmup_epochs: linear learning-rate warm-up epochs.
        final_max_epochs: epochs for the final retraining in :meth:`test` (``None``: ``max_epochs``).
        final_limit_train_batches: training batches per epoch of the final retraining (``None``:
            ``limit_train_batches``); lets a search score candidates on part of each epoch and
            still train the chosen one on all of it.
        ema_decay: decay of an exponential moving average of the weights in final fits (the
            averaged weights are kept); 0 turns it off.
        channels_last: train in the channels-last memory format (faster convolutions on CPUs).
        precision: ``"32"``; ``"bf16-mixed"`` (bfloat16 autocast; weights, optimizer and BatchNorm in
            float32); or ``"auto"``: on the CPU, each network trains in the faster of the two, timed on a
            few steps (:func:`~lightning_nas.evaluators.precision.choose_precision`; on other
            accelerators ``"32"``). Validation and test always run in float32.
        final_warmup_epochs: warm-up epochs of final fits (``None``: ``warmup_epochs``).
        latency_repeats: timed forward passes for the latency metrics.
        latency_threads: CPU threads for the latency metrics.
        seed: base seed.
        accelerator: Lightning accelerator for training (``"cpu"``, ``"gpu"``, ``"auto"``...);
            hardware metrics are measured on the CPU.
        deterministic: use deterministic algorithms (warn-only) while training.
        final_progress: show a progress bar (epochs, batches, loss) during the final retraining in
            :meth:`test`; the search's short fits never show one.

    Example:
        >>> evaluator = TrainEvaluator(datamodule, max_epochs=1)  # doctest: +SKIP
        >>> evaluator.evaluate(space, arch).metrics["search/val_acc"]  # doctest: +SKIP
        0.93
    """

    def __init__(
        self,
        datamodule: L.LightningDataModule,
        max_epochs: int = 3,
        max_steps: int = -1,
        limit_train_batches: float = 1.0,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        warmup_epochs: int = 0,
        final_max_epochs: int | None = None,
        final_limit_train_batches: float | None = None,
        ema_decay: float = 0.0,
        channels_last: bool = False,
        final_warmup_epochs: float | None = None,
        latency_repeats: int = 20,
        precision: str = "32",
        latency_threads: int = 1,
        seed: int = 0,
        accelerator: str = "cpu",
        deterministic: bool = True,
        final_progress: bool = False,
    ) -> None:
        validate_recipe("evaluator.", max_epochs=max_epochs, max_steps=max_steps,
                        limit_train_batches=limit_train_batches, optimizer=optimizer, lr=lr,
                        weight_decay=weight_decay, momentum=momentum, label_smoothing=label_smoothing,
                        warmup_epochs=warmup_epochs, final_max_epochs=final_max_epochs)
        if final_limit_train_batches is not None:
            validate_recipe("evaluator.final_", limit_train_batches=final_limit_train_batches)
        ints = {"latency_repeats": latency_repeats, "latency_threads": latency_threads, "seed": seed}
        for key, value in ints.items():
            low = 0 if key == "seed" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"evaluator.{key} must be an int >= {low}, got {value!r}")
        if final_warmup_epochs is not None:
            validate_recipe("evaluator.final_", warmup_epochs=final_warmup_epochs)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, int | float) or not 0 <= ema_decay < 1:
            raise ValueError(f"evaluator.ema_decay must be in [0, 1), got {ema_decay!r}")
        if not isinstance(accelerator, str) or not accelerator:
            raise ValueError(f"evaluator.accelerator must be an accelerator name, got {accelerator!r}")
        self.precision = validate_precision(precision)
        self._precision_choices: dict[str, str] = {}
        self.datamodule = datamodule
        self.max_epochs, self.max_steps, self.limit_train_batches = max_epochs, max_steps, limit_train_batches
        self.recipe: dict[str, Any] = {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay,
                                       "momentum": momentum, "label_smoothing": label_smoothing,
                                       "warmup_epochs": warmup_epochs, "channels_last": bool(channels_last)}
        self.ema_decay = float(ema_decay)
        self.final_warmup_epochs = warmup_epochs if final_warmup_epochs is None else final_warmup_epochs
        self.final_callbacks: list[L.Callback] = []
        """Extra callbacks of final fits (a time budget's deadline, say)."""
        self.screen_constraints: list[Any] = []
        """Constraints (:class:`~lightning_nas.objectives.constraints.Constraint`) checked on the metrics
        measured before training (``model/params``, ``model/macs``, ``hw/*``): a candidate that breaks
        one is not trained (``search/screened`` = 1); its constraint violation alone scores it. The app
        sets the objective's constraints here."""
        self.hardware: HardwareTarget | None = None
        """A hardware target (``hardware=xnnpack``, say) that measures each candidate before it is
        trained, once its size passes :attr:`screen_constraints`: its latency can then screen the
        candidate too. Its figures replace the eager ones under the same names. The app sets it."""
        self.final_max_epochs = max_epochs if final_max_epochs is None else final_max_epochs
        self.final_limit_train_batches = (limit_train_batches if final_limit_train_batches is None
                                          else final_limit_train_batches)
        self.trained_models: dict[Architecture, nn.Module] = {}
        """The networks :meth:`test` trained, by architecture (the app exports them)."""
        self.latency_repeats, self.latency_threads = latency_repeats, latency_threads
        self.seed, self.accelerator, self.deterministic = seed, accelerator, bool(deterministic)
        self.final_progress = bool(final_progress)
        self._stages: set[str] = set()

    # --- the Evaluator interface --------------------------------------------------------------
    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """Train ``arch`` for ``max_epochs`` and score it on the validation split; never raises.

        Metrics: ``search/val_acc``, ``search/val_loss``, ``train/epochs``, ``train/steps``,
        ``train/loss``, ``train/acc``, ``train/cpu_s`` (this process's CPU seconds for the candidate:
        its cost whatever else shares the cores) and the model metrics. A failure (an exception, a
        non-finite loss) gives ``EvalResult.failed`` with the metrics measured before it. A candidate
        whose model metrics break one of :attr:`screen_constraints` is not trained: its result holds
        the model metrics and ``search/screened`` = 1.
        """
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics: dict[str, float] = {}
        try:
            with _quiet_lightning():
                self._score_candidate(space, arch, metrics)
            metrics["train/cpu_s"] = time.process_time() - cpu_start
        except Exception as error:  # a bad candidate must not end the search
            log.debug("candidate %s failed", arch.digest(), exc_info=True)
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - start)
        duration = time.perf_counter() - start
        log.debug("candidate %s: val_acc=%.4f in %.2fs", arch.digest(), metrics.get("search/val_acc", math.nan),
                  duration)
        return EvalResult("ok", metrics, duration_s=duration)

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Retrain ``arch`` from scratch for ``final_max_epochs``; report test and validation scores.

        Returns ``test/acc``, ``test/loss``, ``val/acc``, ``val/loss``, the ``train/*`` fit
        metrics and the model metrics. Errors propagate (this is the final report).
        """
        metrics: dict[str, float] = {}
        model = self.build(space, arch)
        self._profile_into(metrics, model, space)
        if self.hardware is not None:
            metrics.update(self._hardware_figures(space, arch))
        module = self.fit_model(model, self.final_max_epochs, num_classes=space.num_classes,
                                seed=self._seed(arch, "train"), limit_train_batches=self.final_limit_train_batches,
                                progress=self.final_progress, final=True)
        metrics.update(module.fit_metrics)
        metrics.update(self.validate_model(module))
        metrics.update(self.test_model(module))
        self.trained_models[arch] = module.model
        return metrics

    # --- reusable pieces ---------------------------------------------------------------------
    def build(self, space: SearchSpace, arch: Architecture) -> nn.Module:
        """``space.build(arch)`` with weights from the seed derived from ``(seed, arch.digest())``."""
        self._check_space(space)
        with seeded(self._seed(arch, "init")):
            return space.build(arch)

    def fit_model(
        self, model: nn.Module, max_epochs: int | None = None, *, num_classes: int | None = None,
        seed: int | None = None, limit_train_batches: float | None = None, progress: bool = False,
        final: bool = False,
    ) -> ClassificationModule:
        """Train ``model`` (in place) on the training split with this evaluator's recipe.

        Args:
            model: a plain network, or a ready :class:`ClassificationModule`.
            max_epochs: epochs (``None``: the evaluator's ``max_epochs``).
            num_classes: logits count (``None``: the datamodule's ``num_classes``).
            seed: seed of the training run (``None``: the evaluator's ``seed``).
            limit_train_batches: batches per epoch (``None``: the evaluator's ``limit_train_batches``).
            progress: show Lightning's progress bar.
            final: a final training (of the chosen network or a baseline): adds the weight average
                (``ema_decay``) and :attr:`final_callbacks`.

        Returns:
            The trained module (BatchNorm statistics recalibrated); its ``fit_metrics`` hold
            ``train/epochs``, ``train/steps``, ``train/loss``, ``train/acc`` and, unless :attr:`precision` is
            ``"32"``, ``train/bf16`` (1 when it trained under bfloat16 autocast).
        """
        epochs = self.max_epochs if max_epochs is None else max_epochs
        limit = self.limit_train_batches if limit_train_batches is None else limit_train_batches
        validate_recipe("fit_model: ", max_epochs=epochs, limit_train_batches=limit)
        module = self._wrap(model, num_classes, final)
        self._setup("fit")
        callbacks: list[L.Callback] = []
        if final:
            callbacks += [*self.final_callbacks, *([EMAWeights(self.ema_decay)] if self.ema_decay else [])]
        precision = self.training_precision(module.model)
        trainer = self._trainer(epochs, [*callbacks, RecalibrateBatchNorm(BN_RECALIBRATION_BATCHES)], limit,
                                progress, precision)
        with seeded(self.seed if seed is None else seed, self.deterministic), _quiet_lightning():
            trainer.fit(module, train_dataloaders=self.datamodule.train_dataloader())
        if self.precision != "32":
            module.fit_metrics["train/bf16"] = float(precision == "bf16-mixed")
        return module

    def training_precision(self, model: nn.Module) -> str:
        """The precision ``model`` trains in: :attr:`precision`, or with ``"auto"`` the faster one on this
        CPU, timed once per network structure (the same architecture is not timed again)."""
        if self.precision != "auto":
            return self.precision
        shape = getattr(self.datamodule, "input_shape", None)
        if self.accelerator != "cpu" or shape is None:
            return "32"
        key = repr(model)
        if key not in self._precision_choices:
            batch_size = int(getattr(self.datamodule, "batch_size", 64))
            classes = int(getattr(self.datamodule, "num_classes", 0) or 2)
            choice, _ = choose_precision(model, tuple(int(v) for v in shape), classes, batch_size,
                                         channels_last=bool(self.recipe["channels_last"]))
            self._precision_choices[key] = choice
            log.debug("trains in precision %s (timed)", choice)
        return self._precision_choices[key]

    def remember_precision(self, model: nn.Module, precision: str) -> None:
        """With ``"auto"``, train ``model``'s structure in ``precision`` from now on, without timing it: a
        choice made elsewhere (the search's fit of the same network in another process, or a benchmark's
        planning), so that every fit of a network trains in the same precision. Ignored otherwise."""
        choice = validate_precision(precision, "precision")
        if choice == "auto":
            raise ValueError("remember_precision needs '32' or 'bf16-mixed', got 'auto'")
        if self.precision == "auto":
            self._precision_choices[repr(model)] = choice

    def validate_model(self, model: nn.Module, *, num_classes: int | None = None) -> dict[str, float]:
        """``val/acc`` and ``val/loss`` of ``model`` (plain or :class:`ClassificationModule`), as is."""
        self._setup("fit")
        return self._score(model, num_classes, "validate")

    def test_model(self, model: nn.Module, *, num_classes: int | None = None) -> dict[str, float]:
        """``test/acc`` and ``test/loss`` of ``model`` (plain or :class:`ClassificationModule`), as is."""
        self._setup("test")
        return self._score(model, num_classes, "test")

    # --- internals ---------------------------------------------------------------------------
    def _seed(self, arch: Architecture, purpose: str) -> int:
        return derive_seed(self.seed, arch.digest(), purpose)

    def _score_candidate(self, space: SearchSpace, arch: Architecture, metrics: dict[str, float]) -> None:
        """The body of :meth:`evaluate`: fills ``metrics`` step by step (kept if a later step raises)."""
        model = self.build(space, arch)
        self._measure_into(metrics, model, space, arch)
        if self.screened(arch, metrics):
            return
        module = self.fit_model(model, num_classes=space.num_classes, seed=self._seed(arch, "train"))
        metrics.update(module.fit_metrics)
        scores = self.validate_model(module)
        metrics["search/val_acc"], metrics["search/val_loss"] = scores["val/acc"], scores["val/loss"]
        if not math.isfinite(scores["val/loss"]):
            raise FloatingPointError(f"validation loss is {scores['val/loss']}")

    def screened(self, arch: Architecture, metrics: dict[str, float]) -> bool:
        """Whether the model metrics measured so far break one of :attr:`screen_constraints`; if so,
        ``metrics`` gets ``search/screened`` = 1 (the candidate is not to be trained)."""
        broken = self._broken(metrics)
        if broken:
            log.debug("candidate %s breaks %s: not trained", arch.digest(), ", ".join(map(str, broken)))
            metrics[SCREENED] = 1.0
        return bool(broken)

    def _broken(self, metrics: dict[str, float]) -> list[Any]:
        return [c for c in self.screen_constraints if c.key in metrics and c.violation(metrics) > 0]

    def _profile_into(self, metrics: dict[str, float], model: nn.Module, space: SearchSpace,
                      size_only: bool = False) -> None:
        for name, value in iter_profile(model, space.input_shape, self.latency_repeats, self.latency_threads,
                                        size_only):
            metrics[name] = value

    def _measure_into(self, metrics: dict[str, float], model: nn.Module, space: SearchSpace,
                      arch: Architecture) -> None:
        """The model metrics, then the :attr:`hardware` target's figures unless the size already
        breaks a screen constraint (an export costs seconds; a screened candidate needs none). With
        a target, the eager ``hw/*`` figures are not measured: the target's replace them, and a
        latency bound must not screen on the eager latency first."""
        self._profile_into(metrics, model, space, size_only=self.hardware is not None)
        if self.hardware is not None and not self._broken(metrics):
            metrics.update(self._hardware_figures(space, arch))

    def _hardware_figures(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        assert self.hardware is not None
        try:
            return self.hardware.measure_candidate(space, arch)
        except Exception as error:
            raise RuntimeError(f"hardware.{self.hardware.name}: {type(error).__name__}: {error}") from error

    def _check_space(self, space: SearchSpace) -> None:
        for key in ("input_shape", "num_classes"):
            expected = getattr(self.datamodule, key, None)
            got = getattr(space, key)
            if expected is not None and tuple(np.atleast_1d(expected)) != tuple(np.atleast_1d(got)):
                raise ValueError(f"search space {key}={got!r} does not match the datamodule's {expected!r}")

    def _setup(self, stage: str) -> None:
        if stage not in self._stages:
            if not self._stages:
                self.datamodule.prepare_data()
            self.datamodule.setup(stage)
            self._stages.add(stage)

    def _wrap(self, model: nn.Module, num_classes: int | None, final: bool = False) -> ClassificationModule:
        if isinstance(model, ClassificationModule):
            return model
        classes = num_classes if num_classes is not None else getattr(self.datamodule, "num_classes", None)
        if classes is None:
            raise ValueError("num_classes is needed: pass it or give the datamodule a num_classes attribute")
        recipe = {**self.recipe, "warmup_epochs": self.final_warmup_epochs} if final else self.recipe
        return ClassificationModule(model, int(classes), **recipe)

    def _trainer(self, max_epochs: int, callbacks: list[L.Callback] | None = None,
                 limit_train_batches: float | None = None, progress: bool = False,
                 precision: str = "32") -> L.Trainer:
        with _quiet_lightning():
            return L.Trainer(
                callbacks=callbacks,
                accelerator=self.accelerator, devices=1, max_epochs=max_epochs, max_steps=self.max_steps,
                precision=precision,  # type: ignore[arg-type]
                limit_train_batches=self.limit_train_batches if limit_train_batches is None else limit_train_batches,
                logger=False, enable_checkpointing=False,
                enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            )

    def _score(self, model: nn.Module, num_classes: int | None, stage: str) -> dict[str, float]:
        module = self._wrap(model, num_classes)
        trainer = self._trainer(1)
        with seeded(self.seed, self.deterministic), _quiet_lightning():
            if stage == "validate":
                results = trainer.validate(module, self.datamodule.val_dataloader(), verbose=False)
            else:
                results = trainer.test(module, self.datamodule.test_dataloader(), verbose=False)
        return {k: float(v) for k, v in results[0].items()}
