"""``strategy=supernet`` for the app: train a weight-sharing supernet, search its subnets, retrain the best."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.supernet import SupernetEvaluator, retrain
from lightning_nas.safe_load import load_state_dict_file
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import SearchContext, SearchMethod
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.supernet import SupernetModule

__all__ = ["SupernetSearch"]

log = logging.getLogger(__name__)

_RETRAIN = ("scratch", "finetune")


class SupernetSearch(SearchMethod):
    """Single-path one-shot search: the three stages the app runs for ``strategy=supernet``.

    1. :meth:`train_supernet` trains a :class:`SupernetModule` (uniform single paths, or the sandwich
       rule with in-place distillation) and checkpoints it, so a resumed run does not train it again.
    2. :meth:`evaluator` scores subnets with inherited weights (BN recalibrated); the app runs the
       evolutionary search of :meth:`search_strategy` over them, recorded in ``history.jsonl``.
    3. The best subnet is retrained from scratch (``retrain="scratch"``) or fine-tuned from its
       inherited weights (``retrain="finetune"``) and reported on the test split.

    Args:
        epochs: supernet training epochs.
        sampling: ``uniform`` or ``sandwich``.
        num_random_paths: random paths per batch besides the largest and smallest (sandwich only).
        distill: in-place distillation from the largest path (sandwich only).
        optimizer: ``sgd`` or ``adamw`` for the supernet.
        lr: supernet learning rate.
        calibration_batches: training batches used to re-estimate BN statistics per subnet.
        scoring_workers: processes scoring subnets at once (forked, sharing the supernet; see
            :class:`SupernetEvaluator` ``workers``): the search asks that many candidates per batch.
        fold_bn: fold BatchNorm into the convolutions for each subnet's validation pass (faster; the same
            scores up to float rounding).
        num_samples, mode, population_size, generations, mutation_rate, crossover_rate, tournament_size,
            elitism: the evolutionary search over subnets (see :class:`EvolutionStrategy`).
        retrain: ``scratch`` or ``finetune`` for the final model.
        retrain_epochs: epochs of the final training (default: the evaluator's ``final_max_epochs``).
        seed: seeds path sampling and the search.

    Example:
        >>> search = SupernetSearch(epochs=5, sampling="sandwich", population_size=10, generations=3)
    """

    def __init__(self, epochs: int = 10, sampling: str = "uniform", num_random_paths: int = 2, distill: bool = True,
                 optimizer: str = "sgd", lr: float = 0.05, calibration_batches: int = 5, scoring_workers: int = 1,
                 fold_bn: bool = False,
                 num_samples: int | None = None, mode: str = "ga", population_size: int = 20, generations: int = 5,
                 mutation_rate: float = 0.1, crossover_rate: float = 0.8, tournament_size: int = 5,
                 elitism: int = 2, retrain: str = "scratch", retrain_epochs: int | None = None, seed: int = 0) -> None:
        if epochs < 1:
            raise ValueError(f"strategy.epochs must be at least 1, got {epochs}")
        if retrain not in _RETRAIN:
            raise ValueError(f"strategy.retrain must be one of {list(_RETRAIN)}, got {retrain!r}")
        if retrain_epochs is not None and retrain_epochs < 1:
            raise ValueError(f"strategy.retrain_epochs must be at least 1, got {retrain_epochs}")
        if calibration_batches < 0:
            raise ValueError(f"strategy.calibration_batches must be >= 0, got {calibration_batches}")
        if not isinstance(scoring_workers, int) or isinstance(scoring_workers, bool) or scoring_workers < 1:
            raise ValueError(f"strategy.scoring_workers must be an int >= 1, got {scoring_workers!r}")
        if not isinstance(fold_bn, bool):
            raise ValueError(f"strategy.fold_bn must be a bool, got {fold_bn!r}")
        self.scoring_workers, self.fold_bn = scoring_workers, fold_bn
        self.epochs, self.retrain, self.retrain_epochs = epochs, retrain, retrain_epochs
        self.calibration_batches, self.seed = calibration_batches, seed
        self.module_kwargs: dict[str, Any] = {
            "sampling": sampling, "num_random_paths": num_random_paths, "distill": distill,
            "optimizer": optimizer, "lr": lr, "seed": seed,
        }
        self.search = EvolutionStrategy(num_samples=num_samples, seed=seed, mode=mode, population_size=population_size,
                                        generations=generations, mutation_rate=mutation_rate,
                                        crossover_rate=crossover_rate, tournament_size=tournament_size,
                                        elitism=elitism)
        self.supernet: SupernetModule | None = None
        """The trained supernet (set by :meth:`run`)."""

    def run(self, context: SearchContext) -> None:
        """Train (or reload) the supernet, then run the evolutionary search over its subnets in the one loop."""
        self.supernet = self.train_supernet(context.space, context.datamodule, context.output_dir, context.accelerator,
                                            context.progress)
        context.search(self.search, self.evaluator(self.supernet, context.datamodule))

    def final_training(self, context: SearchContext, arch: Architecture) -> tuple[dict[str, float], Any]:
        """Retrain the best subnet from scratch, or fine-tune it from the supernet, and test it once."""
        epochs = self.retrain_epochs or int(getattr(context.evaluator, "final_max_epochs", 10))
        log.info("retraining the best subnet %s (%s) for %d epochs", arch.digest(), self.retrain, epochs)
        source = self.supernet if self.retrain == "finetune" and self.supernet is not None else context.space
        models: dict[Architecture, Any] = {}
        metrics = retrain(source, arch, context.datamodule, mode=self.retrain, max_epochs=epochs, seed=self.seed,
                          models=models, final_progress=context.progress)
        return metrics, models.get(arch)

    def search_strategy(self) -> EvolutionStrategy:
        return self.search

    def train_supernet(self, space: SearchSpace, datamodule: L.LightningDataModule, output_dir: Path,
                       accelerator: str = "cpu", progress: bool = True) -> SupernetModule:
        """Train (or, when ``output_dir/supernet.pt`` exists, reload) the supernet of ``space``."""
        module = SupernetModule(space, **self.module_kwargs)
        checkpoint = output_dir / "supernet.pt"
        if checkpoint.exists():
            log.info("reusing the trained supernet in %s", checkpoint)
            module.load_state_dict(load_state_dict_file(checkpoint, "resume", "delete it to train the supernet again"))
            return module
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            trainer = L.Trainer(max_epochs=self.epochs, accelerator=accelerator, devices=1, logger=False,
                                enable_checkpointing=False, enable_model_summary=False,
                                enable_progress_bar=progress, num_sanity_val_steps=0)
            trainer.fit(module, datamodule=datamodule)
        torch.save(module.state_dict(), checkpoint)
        return module

    def evaluator(self, module: SupernetModule, datamodule: L.LightningDataModule) -> SupernetEvaluator:
        return SupernetEvaluator(module, datamodule, calibration_batches=self.calibration_batches,
                                 fold_bn=self.fold_bn, workers=self.scoring_workers)
