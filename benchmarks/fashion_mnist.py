"""Flagship benchmark: search, train and deploy a Fashion-MNIST classifier on a laptop CPU.

Runs ``experiment=fashion_mnist`` (search, final training, ExecuTorch export of the best model),
then trains the hand-designed baselines (``lightning_nas.baselines``: a 2-conv CNN and
MobileNetV3-Small adapted to 1x28x28) with the same recipe and epoch budget as the final model,
exports them the same way, and prints test accuracy, parameters, MACs, ExecuTorch latency and the
wall time of every stage, next to published Fashion-MNIST results. Results go to
``<output>/results.json`` and ``<output>/results.md``.

    python benchmarks/fashion_mnist.py                          # the full run (~70 min on 2 cores)
    python benchmarks/fashion_mnist.py --preset fashion_mnist_small   # search under max_params 25K
    python benchmarks/fashion_mnist.py --quick --data-dir DIR   # CI-sized: same code path, tiny budget

Extra Hydra overrides go after ``--``: ``python benchmarks/fashion_mnist.py -- seed=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from lightning_nas.baselines import BASELINES, build_baseline
from lightning_nas.config import register_configs
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded
from lightning_nas.export.exporter import export_model
from lightning_nas.export.profiler import profile_pte
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.run import build_node, run

log = logging.getLogger("fashion_mnist")

PUBLISHED = [  # test accuracy reported for Fashion-MNIST, with what it cost
    ("Google AutoML Vision", 0.939, "24 compute hours"),
    ("DENSER (evolutionary NAS)", 0.953, "GPU days"),
    ("2-conv CNN, <100K params", 0.925, "benchmark table"),
    ("MobileNet", 0.950, "benchmark table"),
]

QUICK_OVERRIDES = [  # a few hundred images, one epoch, three candidates: the CI-sized run
    "data.max_train_samples=256", "data.max_val_samples=64", "data.max_test_samples=64", "data.batch_size=64",
    "budget.evaluations=3", "budget.population_size=3", "evaluator.max_epochs=1", "evaluator.final_max_epochs=1",
    "evaluator.limit_train_batches=1.0", "evaluator.final_limit_train_batches=1.0", "evaluator.latency_repeats=2",
]


@dataclass
class ModelFigures:
    """One row of the results table."""

    name: str
    test_acc: float
    params: int
    macs: int
    executorch_ms: float | None
    train_seconds: float
    export_error: str = ""


def compose_config(preset: str, output_dir: Path, quick: bool, data_dir: str | None,
                   overrides: list[str]) -> DictConfig:
    """The experiment's config with the benchmark's output folder and any overrides."""
    register_configs()
    extra = [f"experiment={preset}", f"output_dir={output_dir}"]
    if quick:
        extra += QUICK_OVERRIDES
    if data_dir:
        extra.append(f"data.data_dir={data_dir}")
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*extra, *overrides])


def executorch_latency(model: torch.nn.Module, input_shape: tuple[int, ...], folder: Path,
                       repeats: int) -> tuple[float | None, str]:
    """Median ExecuTorch (XNNPACK) latency at batch 1 on one thread, or the export error."""
    try:
        report = export_model(model, torch.zeros(1, *input_shape), folder / "model.pte")
        return profile_pte(report.path, input_shape, repeats=repeats, warmup=3, threads=1).median_ms, ""
    except Exception as error:  # a failed export is reported, not fatal
        return None, f"{type(error).__name__}: {error}"


def train_baseline(name: str, evaluator: TrainEvaluator, input_shape: tuple[int, ...], num_classes: int,
                   folder: Path, repeats: int) -> ModelFigures:
    """Train baseline ``name`` with the final-training recipe of ``evaluator``; test and export it."""
    seed = derive_seed(evaluator.seed, "baseline", name)
    with seeded(seed):
        model = build_baseline(name, input_shape, num_classes)
    params, macs = count_params(model), count_macs(model, input_shape)
    log.info("baseline %s: %d params, %.2fM MACs; training %d epochs", name, params, macs / 1e6,
             evaluator.final_max_epochs)
    started = time.perf_counter()
    module = evaluator.fit_model(model, evaluator.final_max_epochs, num_classes=num_classes, seed=seed,
                                 limit_train_batches=evaluator.final_limit_train_batches)
    seconds = time.perf_counter() - started
    test = evaluator.test_model(module)
    latency, error = executorch_latency(module.model, input_shape, folder / name, repeats)
    return ModelFigures(name, float(test["test/acc"]), params, macs, latency, seconds, error)


def searched_figures(summary: dict[str, Any]) -> ModelFigures:
    """The searched model's row, from the run's summary and its deploy manifest."""
    metrics = {**summary["best"]["metrics"], **summary["test"]}
    latency, error = None, "not exported (export.top_k=0)"
    for item in summary.get("exported", []):
        manifest = Path(item["deploy"]) / "manifest.json" if item.get("deploy") else None
        if manifest is not None and manifest.is_file():
            latency, error = float(json.loads(manifest.read_text())["latency_ms"]["median"]), ""
        else:
            error = "; ".join(f"{k}: {v}" for k, v in item.get("errors", {}).items()) or "no deploy package"
        break
    return ModelFigures(f"searched ({summary['best']['arch_id']})", float(metrics.get("test/acc", float("nan"))),
                        int(metrics["model/params"]), int(metrics["model/macs"]), latency,
                        float(summary.get("final_training_seconds", float("nan"))), error)


def format_results(rows: list[ModelFigures], stages: dict[str, float], epochs: int) -> str:
    """Markdown tables: the models, the published figures and the wall time per stage."""
    lines = [f"| model | test acc | params | MACs | ExecuTorch ms | train s ({epochs} epochs) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        latency = f"{row.executorch_ms:.3f}" if row.executorch_ms is not None else f"failed: {row.export_error}"
        lines.append(f"| {row.name} | {row.test_acc:.4f} | {row.params / 1e3:.1f}K | {row.macs / 1e6:.2f}M "
                     f"| {latency} | {row.train_seconds:.0f} |")
    lines += ["", "| published | test acc | cost |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.3f} | {cost} |" for name, acc, cost in PUBLISHED]
    lines += ["", "| stage | wall s |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in stages.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist", help="experiment preset (fashion_mnist, "
                        "fashion_mnist_small)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default outputs/benchmarks/...)")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated baselines, or ''")
    parser.add_argument("--quick", action="store_true", help="CI-sized run: a few hundred images, one epoch")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--latency-repeats", type=int, default=50, help="timed ExecuTorch runs per model")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after --")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    output = args.output or Path("outputs") / "benchmarks" / f"{args.preset}_{stamp}"
    repeats = 3 if args.quick else args.latency_repeats
    started = time.perf_counter()
    cfg = compose_config(args.preset, output, args.quick, args.data_dir, list(args.overrides))
    if args.quick:
        cfg.export.top_k = 1
    summary = run(cfg)
    stages = {"search": float(summary["search_seconds"]), "final training": float(summary["final_training_seconds"]),
              "export (searched model)": float(summary.get("export_seconds", 0.0))}
    rows = [searched_figures(summary)]

    names = [n for n in args.baselines.split(",") if n]
    if names:
        datamodule = build_node(cfg, "data")
        evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
        shape, classes = tuple(datamodule.input_shape), int(datamodule.num_classes)
        for name in names:
            stage_started = time.perf_counter()
            rows.append(train_baseline(name, evaluator, shape, classes, output / "baselines", repeats))
            stages[f"baseline {name}"] = time.perf_counter() - stage_started
    stages["total"] = time.perf_counter() - started

    epochs = int(cfg.evaluator.final_max_epochs or cfg.evaluator.max_epochs)
    text = format_results(rows, stages, epochs)
    results = {"preset": args.preset, "quick": args.quick, "threads": torch.get_num_threads(),
               "cpu_count": os.cpu_count(), "models": [asdict(r) for r in rows], "stages_s": stages,
               "published": [{"name": n, "test_acc": a, "cost": c} for n, a, c in PUBLISHED],
               "summary": str(output / "summary.json")}
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "results.md").write_text(text + "\n")
    print(f"\nFashion-MNIST benchmark ({args.preset}{', quick' if args.quick else ''}) -> {output}\n{text}",
          flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
