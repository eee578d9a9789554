"""``SearchController``: search the subnets of a supernet from inside a Lightning training run.

After supernet training (and optionally every ``search_every_n_epochs``), a sample-based
strategy (evolution by default; any :class:`~lightning_nas.strategies.Strategy`) searches the
paths of the supernet, each scored with inherited weights by
:class:`~lightning_nas.evaluators.supernet.SupernetEvaluator` on the trainer's data.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.supernet import SupernetEvaluator, ValScore
from lightning_nas.nn import decisions, has_choices
from lightning_nas.objectives.front import front_records
from lightning_nas.objectives.score import Objective, ScoreFn, default_score, metric_key
from lightning_nas.results.history import History, Record
from lightning_nas.search import best_record, run_search
from lightning_nas.strategies.base import Strategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.supernet import SupernetModule

__all__ = ["FRONT_METRICS", "SearchController", "find_supernet", "pareto_front"]

log = logging.getLogger(__name__)

FRONT_METRICS: tuple[tuple[str, bool], ...] = (
    ("search/val_acc", True), ("model/params", False), ("hw/latency_ms", False))
"""Metrics of the Pareto front and whether each is maximised; a metric missing anywhere is skipped."""

_NO_HARDWARE_NEEDED = {"search/val_acc", "model/params"}


def find_supernet(pl_module: nn.Module) -> nn.Module:
    """The supernet inside ``pl_module``: its one direct child that holds every decision, else itself.

    Args:
        pl_module: a LightningModule (or any module) whose network contains ``lightning_nas.nn`` choices.

    Example:
        >>> find_supernet(lit_model) is lit_model.net  # doctest: +SKIP
        True
    """
    if not has_choices(pl_module):
        raise ValueError(f"{type(pl_module).__name__} contains no lightning_nas choice modules "
                         "(LayerChoice, ValueChoice, Repeat, elastic layers): there is nothing to search")
    labels = set(decisions(pl_module))
    holders = [child for child in pl_module.children() if has_choices(child)]
    if len(holders) == 1 and set(decisions(holders[0])) == labels:
        return holders[0]
    return pl_module


def pareto_front(
    records: Sequence[Record], metrics: Sequence[tuple[str, bool]] = FRONT_METRICS
) -> list[Record]:
    """The successful records no other successful record dominates, best accuracy first.

    The same front as :func:`lightning_nas.objectives.front.front_records` over ``metrics``.

    Args:
        records: evaluated candidates.
        metrics: ``(metric, maximise)`` pairs; a metric some record lacks (or has non-finite) is ignored.
    """
    return front_records(records, objectives=[(name, "max" if up else "min") for name, up in metrics])


def _as_score(objective: Objective | ScoreFn | Mapping[str, float] | None) -> ScoreFn:
    if objective is None:
        return default_score
    if isinstance(objective, Mapping):
        return Objective(objective)
    if callable(objective):
        return objective
    raise ValueError(f"objective must be None, an Objective, a weights mapping or a callable, "
                     f"got {objective!r}")


def _needs_hardware(score: ScoreFn) -> bool:
    if score is default_score:
        return False
    if isinstance(score, Objective):
        return any(metric_key(name) not in _NO_HARDWARE_NEEDED for name in score.weights)
    return True  # an opaque callable may read any metric


def _check_int(key: str, value: object, low: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key} must be {'None or ' if optional else ''}an int >= {low}, got {value!r}")


def _first(loaders: Any) -> Any:
    if isinstance(loaders, Mapping):
        return next(iter(loaders.values()), None)
    if isinstance(loaders, list | tuple):
        return loaders[0] if loaders else None
    return loaders


class SearchController(Callback):
    """Runs a strategy over the subnets of the module's supernet at the end of fit (and every n epochs).

    The supernet is :func:`find_supernet` of the LightningModule. Each search starts from a
    fresh copy of ``strategy`` and a new in-memory :class:`History`; subnets are scored by a
    :class:`SupernetEvaluator` on the trainer's training (BN calibration) and first validation
    loader, falling back to the datamodule. Rank zero searches and broadcasts the result.
    Results: :attr:`history`, :attr:`best_arch`, :attr:`best_score`, :attr:`front`; logged as
    ``search/*`` metrics (``self.log`` during training, the trainer's loggers at fit end) and,
    with ``output_dir`` (rank zero), written as ``history.jsonl``, ``best/arch.json``,
    ``best/metrics.json`` and ``front.json`` (periodic searches under ``epoch=N/``).

    Args:
        strategy: the search algorithm (default: ``EvolutionStrategy(population_size=20, generations=5)``).
        objective: what to maximise: an ``Objective``, a weights mapping, a callable, or None (accuracy).
        search_every_n_epochs: also search after every n training epochs (None: only at fit end).
        calibration_batches: training batches for BN recalibration of each subnet.
        max_val_batches: cap on the validation batches per subnet (None: all).
        measure_hardware: measure MACs, memory and latency; None decides from the objective.
        latency_repeats: timed forward passes per latency measurement.
        output_dir: folder for the result files, or None.
        seed: seed of the default strategy and of the callback's generator.
        progress: show the search's progress bar.
        val_score: a subnet's validation score (frozen subnet, cached ``(x, y)`` batches -> float), stored
            as ``search/val_acc``; default: top-1 accuracy of the network's logits against class indices.

    Example:
        >>> controller = SearchController(EvolutionStrategy(num_samples=200))
        >>> trainer = L.Trainer(max_epochs=20, callbacks=[controller])
        >>> trainer.fit(SupernetModule(space, sampling="sandwich"), datamodule=dm)  # doctest: +SKIP
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        objective: Mapping[str, float] | Objective | ScoreFn | None = None,
        search_every_n_epochs: int | None = None,
        calibration_batches: int = 5,
        max_val_batches: int | None = None,
        measure_hardware: bool | None = None,
        latency_repeats: int = 10,
        output_dir: str | PathLike[str] | None = None,
        seed: int = 0,
        progress: bool = False,
        val_score: ValScore | None = None,
    ) -> None:
        if strategy is not None and not isinstance(strategy, Strategy):
            raise ValueError(f"strategy must be a lightning_nas Strategy, got {strategy!r}")
        _check_int("search_every_n_epochs", search_every_n_epochs, 1, optional=True)
        _check_int("calibration_batches", calibration_batches, 0)
        _check_int("max_val_batches", max_val_batches, 1, optional=True)
        _check_int("latency_repeats", latency_repeats, 1)
        _check_int("seed", seed, 0)
        if output_dir is not None and not isinstance(output_dir, str | PathLike):
            raise ValueError(f"output_dir must be a path or None, got {output_dir!r}")
        self.score: ScoreFn = _as_score(objective)
        needs = _needs_hardware(self.score)
        if measure_hardware is False and needs:
            raise ValueError("the objective reads hardware metrics (MACs, latency or memory): "
                             "set measure_hardware=True or None")
        self.measure_hardware = needs if measure_hardware is None else bool(measure_hardware)
        self._template = strategy if strategy is not None else EvolutionStrategy(
            population_size=20, generations=5, seed=seed)
        self.strategy: Strategy = copy.deepcopy(self._template)
        self.search_every_n_epochs, self.calibration_batches = search_every_n_epochs, calibration_batches
        self.max_val_batches, self.latency_repeats = max_val_batches, latency_repeats
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.seed, self.progress = seed, progress
        if val_score is not None and not callable(val_score):
            raise ValueError(f"val_score must be a callable (subnet, batches) -> float, got {val_score!r}")
        self.val_score = val_score
        self._train_loader: Any = None
        self.rng = np.random.default_rng(seed)
        self.history: History | None = None
        self.best_arch: Architecture | None = None
        self.best_score = -math.inf
        self.front: list[Record] = []
        self.num_searches = 0
        self.subnets_per_second = 0.0
        self.supernet: nn.Module | None = None
        self._searched_at: int | None = None

    # --- Lightning hooks: thin, each hands off to one private method ---------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.supernet = find_supernet(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self.search_every_n_epochs
        if every is not None and (trainer.current_epoch + 1) % every == 0:
            self._search(trainer, pl_module, final=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._search(trainer, pl_module, final=True)

    def state_dict(self) -> dict[str, Any]:
        """Generator state, the strategy's state (population included) and the last search's history."""
        return {
            "rng": self.rng.bit_generator.state,
            "strategy": self.strategy.state_dict(),
            "history": None if self.history is None else [r.to_json() for r in self.history],
            "num_searches": self.num_searches,
            "searched_at": self._searched_at,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state_dict["rng"]
        self.strategy = copy.deepcopy(self._template)
        self.strategy.load_state_dict(state_dict["strategy"])
        self.strategy.score = self.score
        self.num_searches = int(state_dict["num_searches"])
        self._searched_at = state_dict["searched_at"]
        self.history = None
        if state_dict["history"] is not None:
            self._set_history([Record.from_json(line) for line in state_dict["history"]])

    # --- the work ----------------------------------------------------------------------------
    def _search(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        if trainer.sanity_checking:
            return
        if self._searched_at != trainer.global_step or self.history is None:
            local = self._run_search(trainer, pl_module) if trainer.is_global_zero else None
            payload = local[0] if local is not None else None
            if trainer.world_size > 1:
                payload = trainer.strategy.broadcast(payload, src=0)
            self._apply(payload, None if local is None else local[1])
            self._searched_at = trainer.global_step
        self._report(trainer, pl_module, final)

    def _loaders(self, trainer: L.Trainer) -> tuple[Any, Any]:
        """The trainer's (training, first validation) loaders, falling back to its datamodule."""
        train, val = _first(trainer.train_dataloader), _first(trainer.val_dataloaders)
        datamodule = getattr(trainer, "datamodule", None)
        if val is None and datamodule is not None:
            val = _first(datamodule.val_dataloader())
        if train is None and datamodule is not None:
            train = _first(datamodule.train_dataloader())
        if val is None or (train is None and self.calibration_batches):
            raise RuntimeError("the NAS search needs validation data (and training data for BN calibration): "
                               "pass val_dataloaders to fit() or use a datamodule with val_dataloader()")
        return train, val

    def _evaluator(self, pl_module: L.LightningModule, supernet: nn.Module, train: Any, val: Any,
                   measure_hardware: bool | None = None) -> SupernetEvaluator:
        self._train_loader = train
        return SupernetEvaluator(
            pl_module if isinstance(pl_module, SupernetModule) else supernet,
            calibration_batches=self.calibration_batches, max_val_batches=self.max_val_batches,
            latency_repeats=self.latency_repeats,
            measure_hardware=self.measure_hardware if measure_hardware is None else measure_hardware,
            train_dataloader=train if train is not None else [], val_dataloader=val, val_score=self.val_score,
        )

    def best_model(self, datamodule: L.LightningDataModule | None = None,
                   calibration_batches: int | None = None) -> nn.Module:
        """The best subnet as a plain ``nn.Module`` in eval mode, ready to use.

        The path is frozen out of the supernet with its shared weights, and its BatchNorm running
        statistics are re-estimated on training batches (the supernet's statistics mix every path,
        so without this the frozen subnet scores far below :attr:`best_score`).

        Args:
            datamodule: training batches for the recalibration (default: the loader the search used).
            calibration_batches: how many (default: the callback's ``calibration_batches``).
        """
        if self.best_arch is None or self.supernet is None:
            raise RuntimeError("no search has run: call trainer.fit() with this callback first")
        train = self._train_loader
        if datamodule is not None:
            datamodule.setup("fit")
            train = datamodule.train_dataloader()
        count = self.calibration_batches if calibration_batches is None else calibration_batches
        if train is None and count:
            raise RuntimeError("best_model needs training batches for BN recalibration: pass a datamodule")
        evaluator = SupernetEvaluator(self.supernet, calibration_batches=count, measure_hardware=False,
                                      train_dataloader=train if train is not None else [], val_dataloader=[])
        return evaluator.subnet(self.best_arch)

    def _run_search(self, trainer: L.Trainer,
                    pl_module: L.LightningModule) -> tuple[dict[str, Any], Strategy]:
        supernet = self.supernet if self.supernet is not None else find_supernet(pl_module)
        train, val = self._loaders(trainer)
        evaluator = self._evaluator(pl_module, supernet, train, val)
        strategy = copy.deepcopy(self._template)
        history = run_search(evaluator.space(), strategy, evaluator, History(), score=self.score,
                             progress=self.progress)
        log.info("searched %d subnets at %.1f subnets/s", len(history), evaluator.subnets_per_second)
        payload = {"records": [r.to_json() for r in history], "strategy": strategy.state_dict(),
                   "rate": evaluator.subnets_per_second}
        return payload, strategy

    def _apply(self, payload: dict[str, Any] | None, strategy: Strategy | None) -> None:
        if payload is None:
            raise RuntimeError("rank zero sent no search result")
        if strategy is None:
            strategy = copy.deepcopy(self._template)
            strategy.load_state_dict(payload["strategy"])
            strategy.score = self.score
        self.strategy = strategy
        self.subnets_per_second = float(payload["rate"])
        self.num_searches += 1
        self._set_history([Record.from_json(line) for line in payload["records"]])

    def _set_history(self, records: list[Record]) -> None:
        self.history = History()
        self.history.records = records
        self.front = front_records(records, self.score)
        try:
            best = best_record(self.history, self.score)
        except RuntimeError:
            log.warning("every one of %d subnets failed; no best architecture", len(records))
            self.best_arch, self.best_score = None, -math.inf
            return
        self.best_arch, self.best_score = best.arch, self.score(best.result)

    def _summary(self) -> dict[str, float]:
        best = self._best_result()
        return {
            "search/best_score": self.best_score,
            "search/best_val_acc": best.metrics.get("search/val_acc", math.nan) if best else math.nan,
            "search/front_size": float(len(self.front)),
            "search/num_evaluated": float(len(self.history or ())),
            "search/subnets_per_s": self.subnets_per_second,
        }

    def _best_result(self) -> EvalResult | None:
        for record in self.history or ():
            if record.arch == self.best_arch:
                return record.result
        return None

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        metrics = {k: v for k, v in self._summary().items() if math.isfinite(v)}
        if final:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
                _log_front_table(logger, self.front)
        else:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True)
        if self.best_arch is not None:
            log.info("best subnet (score %.4f): %s", self.best_score, self.best_arch.to_json())
        if trainer.is_global_zero and self.output_dir is not None:
            folder = self.output_dir if final else self.output_dir / f"epoch={trainer.current_epoch}"
            self._write(folder)

    def _write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "history.jsonl").write_text("".join(r.to_json() + "\n" for r in self.history or ()))
        front = [{"arch": r.arch.to_dict(), "metrics": r.result.to_dict()["metrics"]} for r in self.front]
        (folder / "front.json").write_text(json.dumps(front, indent=2, sort_keys=True) + "\n")
        best = self._best_result()
        if self.best_arch is not None and best is not None:
            self.best_arch.save(folder / "best" / "arch.json")
            metrics = {"score": self.best_score, **best.to_dict()["metrics"]}
            text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
            (folder / "best" / "metrics.json").write_text(text)


def _log_front_table(logger: Any, front: list[Record]) -> None:
    """A table of the front on loggers that have one (``WandbLogger.log_table``)."""
    table: Callable[..., Any] | None = getattr(logger, "log_table", None)
    if table is None or not front:
        return
    names = sorted({name for r in front for name in r.result.metrics})
    rows = [[r.arch.to_json(), *(r.result.metrics.get(n) for n in names)] for r in front]
    table(key="search/front", columns=["arch", *names], data=rows)
