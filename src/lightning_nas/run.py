"""``run(cfg)``: build the objects a composed config names and run one search. Orchestration only."""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from lightning_nas.arch import Architecture
from lightning_nas.callbacks.pareto_logger import ParetoFrontLogger
from lightning_nas.callbacks.study_reports import EfficiencyReport, RobustnessReport, TransferReport
from lightning_nas.callbacks.wandb_logger import arch_columns, run_names
from lightning_nas.config import ConfigError
from lightning_nas.evaluators.supernet import retrain
from lightning_nas.evaluators.tabular import TabularEvaluator
from lightning_nas.executors import LocalExecutor, run_search_parallel
from lightning_nas.export.package import DataInfo, package_architecture
from lightning_nas.hardware.targets import HardwareEvaluator
from lightning_nas.objectives.front import front_objectives, front_records
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.planner import cpu_seconds, time_budget_from_config
from lightning_nas.preflight import (
    blame_budget,
    check_accelerator,
    check_budget,
    check_counts,
    check_one_batch,
    check_output_dir,
    check_resume,
)
from lightning_nas.results.failures import best_or_fail
from lightning_nas.results.final_model import load_final_weights, save_final_model
from lightning_nas.results.fingerprint import run_fingerprint
from lightning_nas.results.history import History
from lightning_nas.results.report import constraint_report, format_constraints, summary_table, top_records
from lightning_nas.search import notify, run_search
from lightning_nas.strategies.auto import AutoStrategy
from lightning_nas.strategies.darts import BilevelDataModule, DartsModule
from lightning_nas.strategies.hyperband import HyperbandSearch, TrainMultiFidelity
from lightning_nas.strategies.supernet_search import SupernetSearch
from lightning_nas.strategies.transfer import WarmStartEvolution

__all__ = ["ConfigError", "build_node", "check", "resolve_output_dir", "run", "strategy_choice"]

log = logging.getLogger(__name__)


def build_node(cfg: DictConfig, group: str, **runtime: Any) -> Any:
    """Instantiate ``cfg[group]``; a constructor's ValueError comes back as a one-line ConfigError."""
    node = cfg[group]
    try:
        accepted = inspect.signature(get_class(str(node._target_))).parameters
        runtime = {k: v for k, v in runtime.items() if k in accepted}
        return instantiate(node, **runtime, _convert_="all", _recursive_=False)
    except InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if not message.startswith(f"{group}."):
            message = f"{_file_key(node, group, cause)}: {message}"
        raise ConfigError(blame_budget(cfg, message) if group == "strategy" else message) from cause


def _file_key(node: DictConfig, group: str, cause: BaseException) -> str:
    """``group.key`` when ``cause`` is about a file that one of the node's settings names, else ``group``."""
    filename = getattr(cause, "filename", None)
    if filename is not None:
        for key, value in node.items():
            if isinstance(value, str) and value and str(filename) in (value, str(Path(value).expanduser())):
                return f"{group}.{key!s}"
    return group


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


def check(cfg: DictConfig, output_dir: Path | None) -> tuple[Any, Any, Any, Any, Any]:
    """Build ``(datamodule, space, strategy, evaluator, objective)`` and run the preflight, writing nothing.

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
    strategy = build_node(cfg, "strategy", space=space, output_dir=str((output_dir or Path(".")) / "darts"))
    evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
    if isinstance(strategy, AutoStrategy):  # chosen from the space, the budget and the evaluator's cost
        strategy = strategy.build(space, evaluator)
    if cfg.get("hardware") is not None:
        evaluator = HardwareEvaluator(evaluator, build_node(cfg, "hardware"))
    objective = build_node(cfg, "objective")
    if cfg.get("executor") is not None:
        build_node(cfg, "executor")  # constructing one starts nothing; its settings are checked here
    check_one_batch(datamodule)
    check_budget(space, getattr(objective, "constraints", []))
    return datamodule, space, strategy, evaluator, objective


def _run_darts(module: DartsModule, space: Any, datamodule: Any, evaluator: Any, history: History, logger: Any,
               cfg: DictConfig) -> None:
    """Search with DARTS (skipped when resuming a finished search), then score the derived genotype."""
    if len(history):
        log.info("resumed: the DARTS genotype %s is already evaluated", history[0].arch.digest())
        return
    trainer = L.Trainer(max_epochs=module.epochs or 10, accelerator=str(cfg.trainer.accelerator), devices=1,
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=bool(cfg.progress), num_sanity_val_steps=0)
    trainer.fit(module, datamodule=BilevelDataModule(datamodule))
    arch = module.derive_genotype()
    logger.log_images("darts/alphas", sorted((module.output_dir / "alphas").glob("*.png")))
    log.info("DARTS genotype %s: %s", arch.digest(), space.describe(arch))
    history.append(arch, evaluator.evaluate(space, arch), source="darts")


def _final_training(strategy: Any, supernet: Any, evaluator: Any, space: Any, datamodule: Any, arch: Architecture,
                    progress: bool) -> tuple[dict[str, float], Any]:
    """Retrain the chosen architecture (from scratch, or fine-tuned from the supernet) and test it once.

    Returns the test metrics and the trained network (``None`` when the evaluator trains none, e.g. tabular).
    """
    if isinstance(strategy, SupernetSearch):
        epochs = strategy.retrain_epochs or int(getattr(evaluator, "final_max_epochs", 10))
        log.info("retraining the best subnet %s (%s) for %d epochs", arch.digest(), strategy.retrain, epochs)
        source = supernet if strategy.retrain == "finetune" else space
        models: dict[Architecture, Any] = {}
        metrics = retrain(source, arch, datamodule, mode=strategy.retrain, max_epochs=epochs, seed=strategy.seed,
                          models=models, final_progress=progress)
        return metrics, models.get(arch)
    if isinstance(evaluator, TabularEvaluator):
        log.info("looking up the test metrics of the best architecture %s in the table", arch.digest())
    else:
        log.info("retraining the best architecture %s from scratch for the test report", arch.digest())
    metrics = dict(evaluator.test(space, arch))
    return metrics, getattr(evaluator, "trained_models", {}).get(arch)


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


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the search ``cfg`` describes; write history, best architecture and summary; return the summary."""
    _quiet_libraries()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    output_dir = resolve_output_dir(cfg)
    try:
        time_budget = time_budget_from_config(cfg.budget, started, int(cfg.export.top_k))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    datamodule, space, strategy, evaluator, objective = check(cfg, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)  # written only now that every check passed
    history = History(output_dir / "history.jsonl", fingerprint=run_fingerprint(cfg))
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    names = {k: v for k, v in run_names(str(cfg.name), strategy_choice(cfg), int(cfg.seed)).items()
             if cfg.logger.get(k) is None}  # the config's own run_name / group win
    logger = build_node(cfg, "logger", output_dir=str(output_dir),
                        run_config=OmegaConf.to_container(cfg, resolve=True), **names)
    listeners: list[object] = [logger]  # the W&B logger first: it starts the run the others log to
    if isinstance(objective, MultiObjective):
        cost = next((n for n, d in zip(objective.names, objective.directions, strict=True) if d == "min"), "latency")
        listeners.append(ParetoFrontLogger(objective, output_dir=str(output_dir), x_metric=cost, wandb_run=logger))
    budgets = {c.key: c.bound for c in getattr(objective, "constraints", []) if c.kind == "max"}
    listeners.append(RobustnessReport(output_dir))
    listeners.append(EfficiencyReport(output_dir, max_params=budgets.get("model/params"),
                                      max_latency_ms=budgets.get("hw/latency_ms"),
                                      constraints=getattr(objective, "constraints", []), score=objective))
    if isinstance(strategy, WarmStartEvolution):
        listeners.append(TransferReport(output_dir, source=strategy.source, scratch=strategy.scratch,
                                        predictor_fit=lambda: strategy.predictor_fit))
    log.info("search space %s: %d decisions, %.3g architectures", space, len(space.decisions), space.cardinality)

    search_strategy, search_evaluator, supernet = strategy, evaluator, None
    if isinstance(strategy, SupernetSearch):
        supernet = strategy.train_supernet(space, datamodule, output_dir, str(cfg.trainer.accelerator),
                                           bool(cfg.progress))
        search_strategy, search_evaluator = strategy.search_strategy(), strategy.evaluator(supernet, datamodule)
    workers = int((cfg.get("executor") or {}).get("max_workers", 1))
    if time_budget is not None and time_budget.plan_search(space, evaluator, search_strategy, workers):
        listeners.append(time_budget)  # budget.time: the search stops at its deadline
    if isinstance(strategy, DartsModule):  # weight-sharing bilevel search, then the genotype is trained alone
        notify(listeners, "on_search_start", space, history)
        _run_darts(strategy, space, datamodule, evaluator, history, logger, cfg)
        notify(listeners, "on_search_end", history)
    elif isinstance(strategy, HyperbandSearch):  # multi-fidelity: its own driver, rungs continue from checkpoints
        notify(listeners, "on_search_start", space, history)
        fidelity = evaluator if isinstance(evaluator, TabularEvaluator) else TrainMultiFidelity(
            evaluator, folder=str(output_dir / "checkpoints"))  # a table has its fidelities as columns
        strategy.run(space, fidelity, history, objective)
        notify(listeners, "on_search_end", history)
    else:
        with build_node(cfg, "executor") as executor:
            if isinstance(executor, LocalExecutor):
                run_search(space, search_strategy, search_evaluator, history, score=objective, listeners=listeners,
                           progress=bool(cfg.progress))
            else:  # candidates evaluated in parallel; the history is the sequential one (see executors.parallel)
                run_search_parallel(space, search_strategy, search_evaluator, history, executor, score=objective,
                                    listeners=listeners, progress=bool(cfg.progress))
    search_seconds, search_cpu_seconds = time.perf_counter() - started, cpu_seconds() - cpu_started

    best = best_or_fail(history, objective)
    best.arch.save(output_dir / "best" / "arch.json")
    test_metrics: dict[str, float] = {}
    final_model: Any = None
    final_cpu_started = time.process_time()
    if cfg.final_training:
        if time_budget is not None:  # final epochs from the chosen network's throughput and the time left
            time_budget.plan_final(space, best.arch, evaluator)
        test_metrics, final_model = _final_training(strategy, supernet, evaluator, space, datamodule, best.arch,
                                                    bool(cfg.progress))
        if final_model is not None:
            save_final_model(final_model, best.arch, output_dir / "best", test_metrics)
    final_seconds = time.perf_counter() - started - search_seconds
    final_cpu_seconds = time.process_time() - final_cpu_started
    front = front_records(history.records, objective)
    summary = {
        "name": cfg.name,
        "output_dir": str(output_dir),
        "best": {"index": best.index, "arch_id": best.arch.digest(), "arch": best.arch.to_dict(),
                 "score": objective(best.result), "metrics": best.result.metrics},
        "test": test_metrics,
        "front": [{"index": r.index, "arch_id": r.arch.digest(), **r.result.metrics} for r in front],
        "front_objectives": [{"metric": key, "direction": way} for key, way in front_objectives(objective)],
        "constraints": constraint_report(history, getattr(objective, "constraints", []), best),
        "evaluations": len(history),
        "failed": sum(not r.result.ok for r in history),
        "search_seconds": round(search_seconds, 2),
        "search_cpu_seconds": round(search_cpu_seconds, 2),  # this process and its worker processes
        "final_training_seconds": round(final_seconds, 2),
        "final_training_cpu_seconds": round(final_cpu_seconds, 2),  # all threads of this process
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if int(cfg.export.top_k) > 0:
        export_started = time.perf_counter()
        summary["exported"] = _export_top(cfg, space, datamodule, history, objective, evaluator, output_dir,
                                          (best.arch, final_model))
        summary["export_seconds"] = round(time.perf_counter() - export_started, 2)
        summary["total_seconds"] = round(time.perf_counter() - started, 2)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    logger.log_images("search/efficiency", [p for p in [output_dir / "efficiency.png"] if p.is_file()])
    logger.log_summary({**best.result.metrics, **arch_columns(best.arch), **test_metrics, "best/index": best.index,
                        "best/arch_id": best.arch.digest(), "best/score": objective(best.result),
                        "search/front_size": len(front)})
    logger.finish()
    source = "looked up in the table" if isinstance(evaluator, TabularEvaluator) else "retrained from scratch"
    table = summary_table(top_records(history, objective, int(cfg.top_k)), space, best, test_metrics, output_dir,
                          front, test_source=source, score=objective)
    table += ("\n" + format_constraints(summary["constraints"])) if summary["constraints"] else ""
    print(table, flush=True)  # the run's result for the person at the terminal
    return summary
