"""Multi-fidelity evaluation: train a candidate to a number of epochs, continuing from its checkpoint."""

from __future__ import annotations

import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.classifier import RecalibrateBatchNorm
from lightning_nas.evaluators.train import (
    BN_RECALIBRATION_BATCHES,
    TrainEvaluator,
    _quiet_lightning,
    derive_seed,
    seeded,
)
from lightning_nas.spaces.base import SearchSpace

__all__ = ["TrainMultiFidelity"]


class TrainMultiFidelity(Evaluator):
    """A :class:`TrainEvaluator` at a fidelity: each promotion continues the candidate's checkpoint.

    Each evaluation saves a Lightning checkpoint ``<folder>/<arch digest>-e<epochs>.ckpt`` and
    returns its path as the state; a promotion fits the same initial network from that
    checkpoint (weights, optimizer, scheduler, epoch counter) up to the new epoch count.
    ``train/epochs_run`` holds the epochs a job trained (its share of the candidate's cost). A
    candidate whose model metrics break one of the evaluator's ``screen_constraints`` is not
    trained (``search/screened`` = 1, no state), as in :meth:`TrainEvaluator.evaluate`.

    Args:
        evaluator: the train evaluator whose recipe, data and seeds are used.
        folder: where checkpoints go (default: a new temporary folder).

    Example:
        >>> fidelity = TrainMultiFidelity(TrainEvaluator(dm), folder="runs/ckpt")  # doctest: +SKIP
        >>> result, ckpt = fidelity.evaluate_at(space, arch, 1, None)  # doctest: +SKIP
        >>> result, ckpt = fidelity.evaluate_at(space, arch, 3, ckpt)  # doctest: +SKIP
    """

    def __init__(self, evaluator: TrainEvaluator, folder: str | None = None) -> None:
        self.evaluator = evaluator
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="hyperband-"))
        self._profiles: dict[Architecture, dict[str, float]] = {}

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """The wrapped evaluator's full-budget evaluation."""
        return self.evaluator.evaluate(space, arch)

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        return self.evaluator.test(space, arch)

    def evaluate_at(
        self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None
    ) -> tuple[EvalResult, Any]:
        """Train ``arch`` to ``epochs`` total epochs (from ``resume_from`` if given); never raises."""
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics: dict[str, float] = {}
        try:
            with _quiet_lightning():
                path = self._fit(space, arch, epochs, resume_from, metrics)
            metrics["train/cpu_s"] = time.process_time() - cpu_started
        except Exception as error:  # a bad candidate must not end the search
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - started), None
        return EvalResult("ok", metrics, duration_s=time.perf_counter() - started), path

    def _fit(self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None,
             metrics: dict[str, float]) -> str | None:
        ev = self.evaluator
        model = ev.build(space, arch)
        if arch not in self._profiles:
            profile: dict[str, float] = {}
            ev._measure_into(profile, model, space, arch)
            self._profiles[arch] = profile
        metrics.update(self._profiles[arch])
        if ev.screened(arch, metrics):
            return None
        module = ev._wrap(model, space.num_classes)
        ev._setup("fit")
        trainer = ev._trainer(epochs, [RecalibrateBatchNorm(BN_RECALIBRATION_BATCHES)])
        with seeded(derive_seed(ev.seed, arch.digest(), "train", str(epochs)), ev.deterministic):
            trainer.fit(module, train_dataloaders=ev.datamodule.train_dataloader(),
                        ckpt_path=None if resume_from is None else str(resume_from), weights_only=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{arch.digest()}-e{epochs}.ckpt"
        trainer.save_checkpoint(path)
        metrics.update(module.fit_metrics)
        scores = ev.validate_model(module)
        metrics["search/val_acc"], metrics["search/val_loss"] = scores["val/acc"], scores["val/loss"]
        metrics["train/epochs_budget"] = float(epochs)
        metrics["train/epochs_run"] = float(epochs - _checkpoint_epochs(resume_from))
        if not math.isfinite(scores["val/loss"]):
            raise FloatingPointError(f"validation loss is {scores['val/loss']}")
        return str(path)


def _checkpoint_epochs(path: Any | None) -> int:
    """The epochs a checkpoint of this class holds (its name ends in ``-e<epochs>.ckpt``); 0 for none."""
    if path is None:
        return 0
    match = re.search(r"-e(\d+)\.ckpt$", str(path))
    return int(match.group(1)) if match else 0
