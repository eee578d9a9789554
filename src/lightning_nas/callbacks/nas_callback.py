"""``NASCallback``: weight-sharing NAS for any LightningModule whose network contains choice modules."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import lightning as L

from lightning_nas.arch import Architecture
from lightning_nas.callbacks.evolution_controller import SearchController, find_supernet
from lightning_nas.evaluators.supernet import ValScore
from lightning_nas.nn import activate
from lightning_nas.objectives.score import Objective, ScoreFn
from lightning_nas.strategies.base import Strategy
from lightning_nas.strategies.supernet import SAMPLING_RULES, PathSampler, SupernetModule, broadcast_paths

__all__ = ["NASCallback"]


class NASCallback(SearchController):
    """Supernet training inside your own ``training_step``, then a search for the best subnet.

    Add it to the Trainer of a LightningModule whose network contains ``lightning_nas.nn``
    choices (``LayerChoice``, ``ValueChoice``, ``Repeat``, elastic layers); the
    ``training_step`` stays unchanged. The network searched is :func:`find_supernet`: the
    module's one direct child holding every decision (e.g. ``self.net``), else the module itself.

    * Before every training batch, a path is drawn from the callback's seeded generator
      (rank zero's under DDP, which needs ``strategy="ddp_find_unused_parameters_true"``) and
      activated, so the batch trains that path only. ``"uniform"`` draws uniformly;
      ``"sandwich"`` cycles largest, smallest and ``num_random_paths`` random paths over
      consecutive batches: with ``accumulate_grad_batches=2 + num_random_paths`` each
      optimizer step is the sandwich rule (without distillation; use ``SupernetModule`` for it).
    * Validation runs on the largest path (unordered decisions: their first candidate), so your
      own ``validation_step`` metrics describe that one path. After each validation epoch the
      callback logs ``search/best_path_val_acc``: the validation score of the path it would hand
      over now (the best found so far, else the largest), frozen with BN recalibrated; use it as
      ``ModelCheckpoint(monitor="search/best_path_val_acc", mode="max")``.
    * At the end of fit (and every ``search_every_n_epochs``), ``strategy`` searches the
      subnets, as in :class:`SearchController`; afterwards the best path is left active.
      :meth:`best_model` returns it as a plain ``nn.Module`` with recalibrated BatchNorm, ready to use.

    What the search assumes: batches are ``(x, y)`` tuples (extra items ignored); the network maps
    ``x`` to class logits and ``y`` holds class indices; subnets are scored on the first validation
    loader (``max_val_batches`` of it) after re-estimating BatchNorm on ``calibration_batches``
    training batches. For another task pass ``val_score`` (your score of a frozen subnet on those
    batches) and, to weigh costs, ``objective`` (a callable of the result's metrics).

    Args:
        strategy: the search algorithm (default: ``EvolutionStrategy(population_size=20, generations=5)``).
        objective: what to maximise: an ``Objective``, a weights mapping, a callable, or None (accuracy).
        search_every_n_epochs: also search after every n training epochs (None: only at fit end).
        sampling: ``"uniform"`` or ``"sandwich"``.
        calibration_batches: training batches for BN recalibration of each subnet.
        output_dir: folder for ``history.jsonl``, ``best/arch.json``... (rank zero), or None.
        seed: seed of the path generator (and of the default strategy).
        num_random_paths: random paths per sandwich cycle.
        max_val_batches: cap on the validation batches per subnet.
        measure_hardware: measure MACs, memory and latency; None decides from the objective.
        latency_repeats: timed forward passes per latency measurement.
        progress: show the search's progress bar.
        val_score: your validation score of a frozen subnet: ``(subnet, [(x, y), ...]) -> float``,
            higher is better (default: top-1 accuracy).
        monitor_every_epoch: log ``search/best_path_val_acc`` after every validation epoch.

    Example:
        >>> callback = NASCallback(strategy=EvolutionStrategy(population_size=10, generations=3))
        >>> checkpoint = ModelCheckpoint(monitor="search/best_path_val_acc", mode="max")
        >>> trainer = L.Trainer(max_epochs=10, callbacks=[callback, checkpoint])
        >>> trainer.fit(MyLitModel(), datamodule=dm)  # doctest: +SKIP
        >>> model = callback.best_model(dm)  # doctest: +SKIP
        >>> callback.best_arch  # doctest: +SKIP
        Architecture({'op': 'conv3', 'width': 32})
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        objective: Mapping[str, float] | Objective | ScoreFn | None = None,
        search_every_n_epochs: int | None = None,
        sampling: str = "uniform",
        calibration_batches: int = 5,
        output_dir: str | PathLike[str] | None = None,
        seed: int = 0,
        *,
        num_random_paths: int = 2,
        max_val_batches: int | None = None,
        measure_hardware: bool | None = None,
        latency_repeats: int = 10,
        progress: bool = False,
        val_score: ValScore | None = None,
        monitor_every_epoch: bool = True,
    ) -> None:
        if sampling not in SAMPLING_RULES:
            raise ValueError(f"sampling must be one of {list(SAMPLING_RULES)}, got {sampling!r}")
        count = num_random_paths
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"num_random_paths must be an int >= 0, got {num_random_paths!r}")
        super().__init__(strategy, objective, search_every_n_epochs, calibration_batches, max_val_batches,
                         measure_hardware, latency_repeats, output_dir, seed, progress, val_score)
        self.sampling, self.num_random_paths = sampling, num_random_paths
        self.monitor_every_epoch = bool(monitor_every_epoch)
        self.sampler: PathSampler | None = None
        self.last_arch: Architecture | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if isinstance(pl_module, SupernetModule):
            raise ValueError("SupernetModule samples its own paths: use SearchController with it, "
                             "not NASCallback")
        super().setup(trainer, pl_module, stage)
        self.sampler = PathSampler(find_supernet(pl_module), self.rng)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._activate_next(trainer, batch_idx)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.sampler is not None and self.supernet is not None:
            activate(self.supernet, self.sampler.largest(random_fill=False))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor_every_epoch and not trainer.sanity_checking:
            self._log_monitor(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        if self.best_arch is not None and self.supernet is not None:
            activate(self.supernet, self.best_arch)

    def _log_monitor(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log ``search/best_path_val_acc``: the score of the best path so far (else the largest), BN recalibrated."""
        if self.sampler is None or self.supernet is None:
            return
        arch = self.best_arch if self.best_arch is not None else self.sampler.largest(random_fill=False)
        train, val = self._loaders(trainer)
        evaluator = self._evaluator(pl_module, self.supernet, train, val, measure_hardware=False)
        result = evaluator.evaluate(evaluator.space(), arch)
        value = result.metrics.get("search/val_acc", float("nan"))
        pl_module.log("search/best_path_val_acc", float(value), on_step=False, on_epoch=True, prog_bar=True)
        activate(self.supernet, self.sampler.largest(random_fill=False))

    def _activate_next(self, trainer: L.Trainer, batch_idx: int) -> None:
        if self.sampler is None or self.supernet is None:
            raise RuntimeError("NASCallback.setup() did not run: pass the callback to the Trainer before fit")
        if self.sampling == "sandwich":
            path = self.sampler.scheduled(batch_idx, self.num_random_paths)
        else:
            path = self.sampler.uniform()
        self.last_arch = broadcast_paths(trainer, [path])[0]
        activate(self.supernet, self.last_arch)
