"""``run(cfg)``: build the objects a composed config names and run one search. Orchestration only."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from lightning_nas.arch import Architecture
from lightning_nas.baselines import BASELINES, build_baseline
from lightning_nas.callbacks.pareto_logger import ParetoFrontLogger
from lightning_nas.callbacks.study_reports import EfficiencyReport, RobustnessReport, TransferReport
from lightning_nas.callbacks.wandb_logger import arch_columns, run_names
from lightning_nas.config import ConfigError, build_node
from lightning_nas.evaluators.hardware import HardwareEvaluator
from lightning_nas.evaluators.precision import recorded_precision
from lightning_nas.evaluators.train import TrainEvaluator
from lightning_nas.export.package import DataInfo, package_architecture
from lightning_nas.hardware.base import HardwareTarget
from lightning_nas.hardware.profile import iter_profile
from lightning_nas.hardware.targets import XnnpackTarget
from lightning_nas.objectives.front import front_objectives, front_records
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.objectives.reference import parse_reference, resolve_reference_bounds
from lightning_nas.planner import TimeBudget, cpu_seconds, time_budget_from_config, train_evaluator
from lightning_nas.preflight import (
    blame_budget,
    check_accelerator,
    check_budget,
    check_counts,
    check_one_batch,
    check_output_dir,
    check_resume,
)
from lightning_nas.results import strict_json
from lightning_nas.results.failures import best_or_fail
from lightning_nas.results.final_model import load_final_weights, save_final_model
from lightning_nas.results.fingerprint import run_fingerprint
from lightning_nas.results.history import History, Record
from lightning_nas.results.report import constraint_report, format_constraints, summary_table, top_records
from lightning_nas.search import run_search
from lightning_nas.strategies.base import SearchContext, SearchMethod, Strategy

__all__ = ["check", "resolve_output_dir", "run", "strategy_choice"]

log = logging.getLogger(__name__)


def strategy_choice(cfg: DictConfig) -> str:
    """The strategy's name: Hydra's choice (``strategy=nsga2``) when known, else its class name."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("strategy")
        if choice:
            return str(choice)
    return str(cfg.strategy.get("_target_", "strategy")).rsplit(".", 1)[-1]


def resolve_output_dir(cfg: DictConfig) -> Path:
    """``output_dir`` when set, else Hydra's run folder (a dated folder under ``outputs/``)."""
    if cfg.get("output_dir"):
        return Path(str(cfg.output_dir))
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise ConfigError("output_dir: set output_dir=<folder> when running outside the Hydra app")


def _quiet_libraries() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    os.environ.setdefault("WANDB_SILENT", "true")


def check(cfg: DictConfig, output_dir: Path | None) -> tuple[Any, Any, SearchMethod, Any, Any]:
    """Build ``(datamodule, space, method, evaluator, objective)`` and run the preflight, writing nothing.

    Raises:
        ConfigError: one line naming the key, for the first problem found (see :mod:`lightning_nas.preflight`).
    """
    check_counts(cfg)
    try:
        time_budget_from_config(cfg.budget, time.perf_counter(), int(cfg.export.top_k))  # budget.time parses
    except ValueError as error:
        raise ConfigError(str(error)) from error
    check_accelerator(str(cfg.trainer.accelerator))
    if output_dir is not None:
        check_output_dir(output_dir)
        check_resume(output_dir / "history.jsonl", bool(cfg.resume), run_fingerprint(cfg))
    datamodule = build_node(cfg, "data")
    space = build_node(cfg, "search_space", input_shape=list(datamodule.input_shape),
                       num_classes=datamodule.num_classes)
    try:
        method = build_node(cfg, "strategy", space=space, output_dir=str((output_dir or Path(".")) / "darts"))
    except ConfigError as error:
        raise ConfigError(blame_budget(cfg, str(error))) from error.__cause__
    evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
    method = method.resolve(space, evaluator)  # strategy=auto: chosen from the space, budget and evaluator's cost
    target = build_node(cfg, "hardware") if cfg.get("hardware") is not None else None
    trainer = train_evaluator(evaluator)
    if target is not None and trainer is not None:
        trainer.hardware = target  # measured before training, so its latency can screen a candidate
    elif target is not None:
        evaluator = HardwareEvaluator(evaluator, target)
    if target is not None and getattr(target, "reference", None) is not None:
        _calibrate(target, datamodule)
    constraints = _reference_bounds(cfg, datamodule, trainer, target)
    objective = build_node(cfg, "objective", **({} if constraints is None else {"constraints": constraints}))
    if cfg.get("executor") is not None:
        build_node(cfg, "executor")  # constructing one starts nothing; its settings are checked here
    check_one_batch(datamodule)
    check_budget(space, getattr(objective, "constraints", []))
    return datamodule, space, method, evaluator, objective


def _calibrate(target: Any, datamodule: Any) -> None:
    """Time ``hardware.reference`` alone, before the search's workers start (see ``XnnpackTarget.calibrate``)."""
    if target.reference not in BASELINES:
        raise ConfigError(f"hardware.reference must name a baseline ({', '.join(sorted(BASELINES))}), "
                          f"got {target.reference!r}")
    shape = tuple(int(s) for s in datamodule.input_shape)
    with torch.random.fork_rng(devices=[]):  # weights do not matter; keep the global RNG
        model = build_baseline(str(target.reference), shape, int(datamodule.num_classes))
    try:
        target.calibrate(model, shape)
    except Exception as error:
        raise ConfigError(f"hardware.reference={target.reference!r}: timing it failed: "
                          f"{type(error).__name__}: {error}") from error


def _reference_bounds(cfg: DictConfig, datamodule: Any, trainer: TrainEvaluator | None,
                      target: HardwareTarget | None) -> dict[str, object] | None:
    """The objective's constraints with bounds that name a baseline (``0.95x two_conv_cnn``) measured
    like a candidate (model metrics, then the hardware target's); ``None`` when no bound names one.
    A bound naming ``hardware.reference`` takes its calibrated figures instead: a candidate then meets
    it by its speed relative to the reference timed beside it, with no second draw of the reference."""
    node = cfg.objective.get("constraints")
    raw = OmegaConf.to_container(node, resolve=True) if node is not None else None
    if not isinstance(raw, dict) or not any(parse_reference(value) for value in raw.values()):
        return None
    shape = tuple(int(s) for s in datamodule.input_shape)

    def measure(name: str) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):  # weights do not matter; keep the global RNG
            model = build_baseline(name, shape, int(datamodule.num_classes))
        repeats, threads = (trainer.latency_repeats, trainer.latency_threads) if trainer is not None else (20, 1)
        figures = dict(iter_profile(model, shape, repeats, threads, size_only=target is not None))
        if isinstance(target, XnnpackTarget) and name == target.reference:
            figures.update(target.reference_figures())  # calibrated: the unit each candidate's ratio is scaled to
        elif target is not None:
            figures.update(target.measure(model, shape))
        return figures

    try:
        return resolve_reference_bounds({str(k): v for k, v in raw.items()}, measure, BASELINES)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def _export_top(cfg: DictConfig, space: Any, datamodule: Any, history: History, objective: Any, evaluator: Any,
                output_dir: Path, final: tuple[Architecture, Any] | None = None) -> list[dict[str, Any]]:
    """Deploy and code packages for the ``export.top_k`` best architectures, each with its trained weights.

    An architecture without trained weights (only the final model is trained) is skipped unless
    ``export.untrained`` is set; its packages then say that they hold an untrained network.
    """
    data = DataInfo.from_datamodule(datamodule)
    trained: dict[Architecture, Any] = dict(getattr(evaluator, "trained_models", {}))
    if final is not None and final[1] is not None:
        trained[final[0]] = final[1]  # the final model itself (a fine-tuned supernet path keeps its own layout)
    exported = []
    for rank, record in enumerate(top_records(history, objective, int(cfg.export.top_k)), start=1):
        state = load_final_weights(output_dir / "best", record.arch)
        model = trained.get(record.arch)
        if model is None:
            model = space.build(record.arch)
            if state is not None:
                model.load_state_dict(state)
        is_trained = state is not None or record.arch in trained
        if not is_trained and not cfg.export.get("untrained", False):
            log.warning("not exporting rank %d (%s): it has no trained weights (only the final model is trained); "
                        "export.untrained=true exports it untrained", rank, record.arch.digest())
            continue
        target = output_dir / "export" / f"rank{rank}_{record.arch.digest()}"
        log.info("exporting architecture %s to %s", record.arch.digest(), target)
        outcome = package_architecture(model, record.arch, target, data, trained=is_trained,
                                       quantize=bool(cfg.export.quantize), deploy=bool(cfg.export.deploy),
                                       codegen=bool(cfg.export.codegen))
        exported.append({"rank": rank, "arch_id": record.arch.digest(), "trained_weights": is_trained,
                         **outcome.to_dict()})
    return exported


def _listeners(cfg: DictConfig, method: SearchMethod, objective: Any, logger: Any, output_dir: Path) -> list[object]:
    """The W&B logger first (it starts the run the others log to), then the Pareto front and study reports."""
    listeners: list[object] = [logger]
    if isinstance(objective, MultiObjective):
        cost = next((n for n, d in zip(objective.names, objective.directions, strict=True) if d == "min"), "latency")
        listeners.append(ParetoFrontLogger(objective, output_dir=str(output_dir), x_metric=cost, wandb_run=logger))
    budgets = {c.key: c.bound for c in getattr(objective, "constraints", []) if c.kind == "max"}
    listeners.append(RobustnessReport(output_dir))
    listeners.append(EfficiencyReport(output_dir, max_params=budgets.get("model/params"),
                                      max_latency_ms=budgets.get("hw/latency_ms"),
                                      constraints=getattr(objective, "constraints", []), score=objective))
    transfer = method.transfer()
    if transfer is not None:
        listeners.append(TransferReport(output_dir, **transfer))
    return listeners


def _build(cfg: DictConfig, output_dir: Path, executor: Any,
           time_budget: TimeBudget | None) -> tuple[SearchMethod, SearchContext]:
    """The search method ``cfg.strategy`` names and the context it runs in (every other object built)."""
    datamodule, space, method, evaluator, objective = check(cfg, output_dir)
    trainer = train_evaluator(evaluator)
    if trainer is not None:  # a candidate whose size breaks a constraint is not trained
        trainer.screen_constraints = list(getattr(objective, "constraints", []))
    if time_budget is not None:  # with fixed final epochs, each new best's final epoch is timed
        time_budget.score = objective
    output_dir.mkdir(parents=True, exist_ok=True)  # written only now that every check passed
    history = History(output_dir / "history.jsonl", fingerprint=run_fingerprint(cfg))
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    names = {k: v for k, v in run_names(str(cfg.name), strategy_choice(cfg), int(cfg.seed)).items()
             if cfg.logger.get(k) is None}  # the config's own run_name / group win
    logger = build_node(cfg, "logger", output_dir=str(output_dir), run_config=OmegaConf.to_container(cfg, resolve=True),
                        **names)
    listeners = _listeners(cfg, method, objective, logger, output_dir)
    log.info("search space %s: %d decisions, %.3g architectures", space, len(space.decisions), space.cardinality)

    workers = int((cfg.get("executor") or {}).get("max_workers", 1))

    def search(strategy: Strategy, evaluator: Any) -> History:
        planned = time_budget is not None and time_budget.plan_search(space, evaluator, strategy, workers)
        return run_search(space, strategy, evaluator, history, score=objective, progress=bool(cfg.progress),
                          listeners=[*listeners, time_budget] if planned else listeners,  # budget.time: deadline
                          executor=executor)

    return method, SearchContext(space, datamodule, evaluator, history, objective, listeners, output_dir, search,
                                 accelerator=str(cfg.trainer.accelerator), progress=bool(cfg.progress), logger=logger)


def _summary(cfg: DictConfig, context: SearchContext, test_metrics: dict[str, float],
             seconds: dict[str, float]) -> dict[str, Any]:
    history, objective = context.history, context.score
    best = best_or_fail(history, objective)
    front = front_records(history.records, objective)
    return {
        "name": cfg.name,
        "output_dir": str(context.output_dir),
        "best": {"index": best.index, "arch_id": best.arch.digest(), "arch": best.arch.to_dict(),
                 "score": objective(best.result), "metrics": best.result.metrics},
        "test": test_metrics,
        "front": [{"index": r.index, "arch_id": r.arch.digest(), **r.result.metrics} for r in front],
        "front_objectives": [{"metric": key, "direction": way} for key, way in front_objectives(objective)],
        "constraints": constraint_report(history, getattr(objective, "constraints", []), best),
        "evaluations": len(history),
        "failed": sum(not r.result.ok for r in history),
        **{key: round(value, 2) for key, value in seconds.items()},
    }


def _write_summary(summary: dict[str, Any], output_dir: Path) -> None:
    (output_dir / "summary.json").write_text(strict_json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _report(cfg: DictConfig, context: SearchContext, summary: dict[str, Any]) -> None:
    """Log the final scores, close the logger and print the summary table (the run's result at the terminal)."""
    history, objective, test_metrics = context.history, context.score, summary["test"]
    best = best_or_fail(history, objective)
    front = front_records(history.records, objective)
    context.logger.log_images("search/efficiency", [p for p in [context.output_dir / "efficiency.png"] if p.is_file()])
    context.logger.log_summary({**best.result.metrics, **arch_columns(best.arch), **test_metrics,
                                "best/index": best.index, "best/arch_id": best.arch.digest(),
                                "best/score": objective(best.result), "search/front_size": len(front)})
    context.logger.finish()
    table = summary_table(top_records(history, objective, int(cfg.top_k)), context.space, best, test_metrics,
                          context.output_dir, front, test_source=context.evaluator.test_source, score=objective)
    table += ("\n" + format_constraints(summary["constraints"])) if summary["constraints"] else ""
    print(table, flush=True)  # the run's result for the person at the terminal


def keep_search_precision(context: Any, best: Record) -> None:
    """The final training of ``best`` trains in the precision its search fit trained in (recorded as
    ``train/bf16`` with ``evaluator.precision=auto``), not in one timed again in this process."""
    trainer = train_evaluator(context.evaluator)
    metrics = best.result.metrics
    if trainer is None or trainer.precision != "auto" or "train/bf16" not in metrics:
        return
    trainer.remember_precision(trainer.build(context.space, best.arch), recorded_precision(metrics))


def run(cfg: DictConfig, final_callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Run the search ``cfg`` describes; write history, best architecture and summary; return the summary.

    ``final_callbacks`` join the final training's Lightning callbacks (the search's fits keep theirs).
    """
    _quiet_libraries()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    output_dir = resolve_output_dir(cfg)
    try:
        time_budget = time_budget_from_config(cfg.budget, started, int(cfg.export.top_k))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    with build_node(cfg, "executor") as executor:
        method, context = _build(cfg, output_dir, executor, time_budget)
        method.run(context)
    search_seconds, search_cpu_seconds = time.perf_counter() - started, cpu_seconds() - cpu_started
    best = best_or_fail(context.history, context.score)
    best.arch.save(output_dir / "best" / "arch.json")
    final_cpu_started, final_epochs = time.process_time(), None
    if cfg.final_training:
        keep_search_precision(context, best)
    if cfg.final_training and time_budget is not None:  # final epochs from the chosen network's throughput
        final_epochs = time_budget.plan_final(context.space, best.arch, context.evaluator)
    if final_callbacks:
        trainer = train_evaluator(context.evaluator)
        if trainer is None:
            raise ConfigError(f"final_callbacks need a training evaluator; {type(context.evaluator).__name__} "
                              "runs no final fit")
        trainer.final_callbacks = [*trainer.final_callbacks, *final_callbacks]
    test_metrics, final_model = method.final_training(context, best.arch) if cfg.final_training else ({}, None)
    if final_model is not None:
        save_final_model(final_model, best.arch, output_dir / "best", test_metrics)
    seconds = {"search_seconds": search_seconds, "search_cpu_seconds": search_cpu_seconds,  # with worker processes
               "final_training_seconds": time.perf_counter() - started - search_seconds,
               "final_training_cpu_seconds": time.process_time() - final_cpu_started,  # all threads of this process
               "total_seconds": time.perf_counter() - started}
    summary = _summary(cfg, context, test_metrics, seconds)
    if final_epochs is not None:  # planned by budget.time
        summary["final_epochs"] = final_epochs
        planned_trainer = train_evaluator(context.evaluator)
        deadline = time_budget.deadline_callback if time_budget is not None else None
        if planned_trainer is not None:  # the plan may have shortened each epoch to fit the deadline
            summary["final_limit_train_batches"] = planned_trainer.final_limit_train_batches
            if deadline is not None and deadline.rescaled and deadline.mean_share is not None:
                summary["final_limit_train_batches"] = deadline.mean_share  # re-planned on the way: the mean
                summary["final_batches_per_epoch"] = deadline.batches_per_epoch
        if deadline is not None and test_metrics:  # what the final training did: all epochs, or fewer
            summary["final_epochs_trained"] = deadline.epochs_trained
            summary["final_stopped_by_deadline"] = deadline.stopped_early
    _write_summary(summary, output_dir)
    if int(cfg.export.top_k) > 0:
        export_started = time.perf_counter()
        summary["exported"] = _export_top(cfg, context.space, context.datamodule, context.history, context.score,
                                          context.evaluator, output_dir, (best.arch, final_model))
        summary["export_seconds"] = round(time.perf_counter() - export_started, 2)
        summary["total_seconds"] = round(time.perf_counter() - started, 2)
        _write_summary(summary, output_dir)
    _report(cfg, context, summary)
    return summary
