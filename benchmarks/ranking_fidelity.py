"""Ranking fidelity: Kendall tau between the search's cheap candidate scores and N-epoch stand-alone accuracy.

Samples ``--archs`` architectures of a preset's search space (seeded; only those within the
preset's MAC and parameter budgets), scores each with every ``--proxy`` (the search's
``TrainEvaluator`` with that proxy's overrides: what a candidate costs during the search), then
trains each alone for ``--epochs`` epochs with the final recipe and takes its validation
accuracy. Prints, per proxy, Kendall tau (``scipy.stats.kendalltau``) against that reference and
the CPU seconds it spent; writes ``ranking_fidelity.json`` to ``--output``.

    python benchmarks/ranking_fidelity.py                       # the full figure: 12 archs, 10 epochs
    python benchmarks/ranking_fidelity.py --archs 12 --epochs 1 --max-train-samples 3000   # a smoke figure

A proxy is ``NAME=override,override`` (Hydra overrides of the preset), e.g.
``--proxy "1x30%=evaluator.max_epochs=1,evaluator.limit_train_batches=0.3"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from scipy.stats import kendalltau

from lightning_nas.arch import Architecture
from lightning_nas.config import build_node, register_configs
from lightning_nas.evaluators.train import TrainEvaluator
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.planner import cpu_seconds
from lightning_nas.spaces.base import SearchSpace

log = logging.getLogger("ranking_fidelity")

DEFAULT_PROXIES = {
    "2 epochs x 15% (before)": ["evaluator.max_epochs=2", "evaluator.limit_train_batches=0.15"],
    "1 epoch x 30%": ["evaluator.max_epochs=1", "evaluator.limit_train_batches=0.3"],
}


def compose_preset(preset: str, overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={preset}", "budget.time=null", *overrides])


def sample_archs(space: SearchSpace, count: int, seed: int, max_macs: float | None,
                 max_params: float | None) -> list[Architecture]:
    """``count`` distinct architectures within the budgets, drawn in a seeded order."""
    rng, archs, seen = np.random.default_rng(seed), [], set()
    for _ in range(200 * count):
        arch = space.sample(rng)
        if arch in seen:
            continue
        seen.add(arch)
        model = space.build(arch)
        if (max_macs and count_macs(model, space.input_shape) > max_macs) or \
                (max_params and count_params(model) > max_params):
            continue
        archs.append(arch)
        if len(archs) == count:
            return archs
    raise RuntimeError(f"found only {len(archs)} architectures within the budgets")


def proxy_scores(cfg: DictConfig, space: SearchSpace, archs: list[Architecture]) -> tuple[list[float], float]:
    """The search's validation accuracy for each architecture, and the CPU seconds spent."""
    evaluator = build_node(cfg, "evaluator", datamodule=build_node(cfg, "data"))
    started = cpu_seconds()
    scores = []
    for arch in archs:
        result = evaluator.evaluate(space, arch)
        scores.append(float(result.metrics.get("search/val_acc", float("nan"))))
        log.info("proxy %s: %.4f", arch.digest(), scores[-1])
    return scores, cpu_seconds() - started


def reference_scores(cfg: DictConfig, space: SearchSpace, archs: list[Architecture],
                     epochs: int) -> tuple[list[float], float]:
    """Validation accuracy after ``epochs`` stand-alone epochs with the final recipe, and the CPU seconds."""
    evaluator: TrainEvaluator = build_node(cfg, "evaluator", datamodule=build_node(cfg, "data"))
    started = cpu_seconds()
    scores = []
    for arch in archs:
        module = evaluator.fit_model(evaluator.build(space, arch), epochs, num_classes=space.num_classes,
                                     limit_train_batches=evaluator.final_limit_train_batches, final=True)
        scores.append(float(evaluator.validate_model(module)["val/acc"]))
        log.info("reference %s (%d epochs): %.4f", arch.digest(), epochs, scores[-1])
    return scores, cpu_seconds() - started


def parse_proxy(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    return name, [o for o in overrides.split(",") if o]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10, help="stand-alone epochs of the reference ranking")
    parser.add_argument("--proxy", action="append", default=None, help="NAME=override,override (repeatable)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="a training subset (smoke runs)")
    parser.add_argument("--max-val-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmarks/ranking_fidelity"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the preset, after --")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    common = list(args.overrides)
    common += [f"data.max_train_samples={args.max_train_samples}"] if args.max_train_samples else []
    common += [f"data.max_val_samples={args.max_val_samples}"] if args.max_val_samples else []
    proxies = dict(parse_proxy(p) for p in args.proxy) if args.proxy else DEFAULT_PROXIES
    base = compose_preset(args.preset, common)
    data = build_node(base, "data")
    space = build_node(base, "search_space", input_shape=list(data.input_shape), num_classes=data.num_classes)
    constraints = dict(base.objective.get("constraints") or {})
    budget = {k: _number(constraints.get(k)) for k in ("max_macs", "max_params")}
    archs = sample_archs(space, args.archs, args.seed, budget["max_macs"], budget["max_params"])
    started = time.perf_counter()
    reference, reference_cpu = reference_scores(base, space, archs, args.epochs)
    results: dict[str, Any] = {"preset": args.preset, "archs": [a.digest() for a in archs], "epochs": args.epochs,
                               "max_train_samples": args.max_train_samples, "reference": reference,
                               "reference_cpu_s": reference_cpu, "proxies": {}}
    for name, overrides in proxies.items():
        scores, cpu = proxy_scores(compose_preset(args.preset, [*common, *overrides]), space, archs)
        tau = kendalltau(scores, reference)
        results["proxies"][name] = {"overrides": overrides, "scores": scores, "kendall_tau": float(tau.statistic),
                                    "p_value": float(tau.pvalue), "cpu_s": cpu, "cpu_s_per_arch": cpu / len(archs)}
    results["wall_s"] = time.perf_counter() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ranking_fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{len(archs)} architectures, reference: {args.epochs}-epoch stand-alone validation accuracy"
          f"{f' on {args.max_train_samples} training images' if args.max_train_samples else ''}")
    print("| ranking | Kendall tau | p | CPU s per arch |\n|---|---|---|---|")
    for name, row in results["proxies"].items():
        print(f"| {name} | {row['kendall_tau']:.3f} | {row['p_value']:.3f} | {row['cpu_s_per_arch']:.1f} |")
    return results


def _number(value: Any) -> float | None:
    """``3.5M`` / ``25K`` / a number -> float (None for None)."""
    if value is None:
        return None
    text = str(value).strip().upper()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


if __name__ == "__main__":
    main()
