"""Ranking fidelity: Kendall tau between the search's cheap candidate scores and N-epoch stand-alone accuracy.

Samples ``--archs`` architectures of a preset's search space (seeded; only those within the
preset's MAC and parameter budgets), scores each with every ``--proxy`` (the search's
``TrainEvaluator`` with that proxy's overrides: what a candidate costs during the search), then
trains each alone for ``--epochs`` epochs with the final recipe and takes its validation
accuracy. Prints, per proxy, Kendall tau (``scipy.stats.kendalltau``) against that reference and
the CPU seconds it spent; writes ``ranking_fidelity.json`` to ``--output``. An architecture whose fit
fails has no score: each distinct reason is logged and printed with how many architectures it hit, and
the tau of a ranking with a missing score is reported as not computed (null in the JSON).

    python benchmarks/ranking_fidelity.py                       # the full figure: 12 archs, 10 epochs
    python benchmarks/ranking_fidelity.py --reference-train-samples 13500   # reference on a quarter of the images
    python benchmarks/ranking_fidelity.py --archs 12 --epochs 1 --max-train-samples 3000   # a smoke figure

``--jobs N`` trains N architectures at a time, each in a one-thread worker process (default: one
per core); the scores do not depend on it (every fit is seeded by its architecture).

A proxy is ``NAME=override,override`` (Hydra overrides of the preset), e.g.
``--proxy "1x30%=evaluator.max_epochs=1,evaluator.limit_train_batches=0.3"``. An item ``rungs=1/3``
scores like the multi-fidelity search's top rung instead: the candidate is trained to 1 epoch, then
continued from that checkpoint to 3 (:class:`TrainMultiFidelity`, what ASHA/Hyperband promotions do).

``--reference FILE`` reuses the reference of an earlier run's ``ranking_fidelity.json`` (the same
architectures, epochs and training subset; checked), so new proxies cost only their own training.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from scipy.stats import kendalltau

from lightning_nas.arch import Architecture
from lightning_nas.config import build_node, register_configs
from lightning_nas.evaluators.multi_fidelity import TrainMultiFidelity
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed
from lightning_nas.executors.lifetime import exit_with_parent
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.planner import cpu_seconds
from lightning_nas.results import strict_json
from lightning_nas.spaces.base import SearchSpace

log = logging.getLogger("ranking_fidelity")

DEFAULT_PROXIES = {
    "2 epochs x 15%": ["evaluator.max_epochs=2", "evaluator.limit_train_batches=0.15"],
    "1 epoch x 30% (the preset's)": ["evaluator.max_epochs=1", "evaluator.limit_train_batches=0.3"],
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


def score_one(preset: str, overrides: list[str], arch_json: str,
              epochs: int | None) -> tuple[float, float, str | None]:
    """One architecture's score, CPU seconds and why it has no score (None when scored): the search's
    validation accuracy (``epochs`` None; at the last of ``rungs=a/b/...`` when the overrides hold it) or
    the validation accuracy after ``epochs`` stand-alone epochs with the final recipe."""
    rungs = [int(r) for o in overrides if o.startswith("rungs=") for r in o.removeprefix("rungs=").split("/")]
    cfg = compose_preset(preset, [o for o in overrides if not o.startswith("rungs=")])
    data = build_node(cfg, "data")
    space = build_node(cfg, "search_space", input_shape=list(data.input_shape), num_classes=data.num_classes)
    evaluator: TrainEvaluator = build_node(cfg, "evaluator", datamodule=data)
    arch = Architecture.from_json(arch_json)
    started = cpu_seconds()
    if epochs is None:
        if rungs:
            fidelity, state = TrainMultiFidelity(evaluator), None
            for rung in rungs:
                result, state = fidelity.evaluate_at(space, arch, rung, state)
                if not result.ok:
                    break
        else:
            result = evaluator.evaluate(space, arch)
        score = float(result.metrics.get("search/val_acc", float("nan")))
        reason = result.error if not result.ok else _missing_score(result.metrics)
        return (float("nan") if reason else score), cpu_seconds() - started, reason
    module = evaluator.fit_model(evaluator.build(space, arch), epochs, num_classes=space.num_classes,
                                 seed=derive_seed(evaluator.seed, arch.digest(), "train"),
                                 limit_train_batches=evaluator.final_limit_train_batches, final=True)
    score = float(evaluator.validate_model(module)["val/acc"])
    return score, cpu_seconds() - started, None if np.isfinite(score) else f"validation accuracy is {score}"


def _missing_score(metrics: dict[str, float]) -> str | None:
    """Why an evaluation that did not fail still has no finite ``search/val_acc`` (None when it has one)."""
    if metrics.get("search/screened"):
        return "screened out by the preset's screen constraints (not trained)"
    score = metrics.get("search/val_acc")
    return None if score is not None and np.isfinite(score) else f"search/val_acc is {score}"


def score_or_reason(preset: str, overrides: list[str], arch_json: str,
                    epochs: int | None) -> tuple[float, float, str | None]:
    """:func:`score_one`, with an exception it raises as the reason (``Type: message``) of a nan score."""
    try:
        return score_one(preset, overrides, arch_json, epochs)
    except Exception as error:  # one architecture's failure must not lose the others' scores
        log.debug("%s failed", arch_json, exc_info=True)
        return float("nan"), 0.0, f"{type(error).__name__}: {error}"


def _one_thread() -> None:
    torch.set_num_threads(1)
    exit_with_parent()  # a killed run leaves no worker training on


def score_all(preset: str, overrides: list[str], archs: list[Architecture], epochs: int | None, jobs: int,
              label: str) -> tuple[list[float], float, dict[str, int]]:
    """:func:`score_or_reason` for every architecture, ``jobs`` at a time (one-thread workers when ``jobs`` > 1):
    the scores, their CPU seconds, and how many architectures each distinct failure reason left unscored
    (logged once per reason)."""
    arguments = [(preset, overrides, arch.to_json(), epochs) for arch in archs]
    if jobs <= 1:
        results = [score_or_reason(*a) for a in arguments]
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            results = list(pool.map(score_or_reason, *zip(*arguments, strict=True)))
    failures: dict[str, int] = {}
    for arch, (score, cpu, reason) in zip(archs, results, strict=True):
        log.info("%s %s: %.4f (%.0f CPU s)", label, arch.digest(), score, cpu)
        if reason is not None:
            failures[reason] = failures.get(reason, 0) + 1
    for reason, count in failures.items():
        log.warning("%s: %d of %d architectures have no score: %s", label, count, len(archs), reason)
    return [score for score, _, _ in results], sum(cpu for _, cpu, _ in results), failures


def parse_proxy(text: str) -> tuple[str, list[str]]:
    """``NAME=override,override`` -> (NAME, overrides); a ``rungs=`` item must be increasing epochs ``a/b/...``."""
    name, _, overrides = text.partition("=")
    items = [o for o in overrides.split(",") if o]
    for item in items:
        if item.startswith("rungs="):
            parts = item.removeprefix("rungs=").split("/")
            epochs = [int(p) for p in parts] if all(p.isdigit() for p in parts) else []
            if not epochs or epochs[0] < 1 or epochs != sorted(set(epochs)):
                raise SystemExit(f"--proxy {name!r}: rungs must be increasing epochs like rungs=1/3, got {item!r}")
    return name, items


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10, help="stand-alone epochs of the reference ranking")
    parser.add_argument("--proxy", action="append", default=None, help="NAME=override,override (repeatable)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="a training subset (smoke runs)")
    parser.add_argument("--max-val-samples", type=int, default=None)
    parser.add_argument("--reference-train-samples", type=int, default=None,
                        help="a training subset for the stand-alone reference only (the proxies see the search's data)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="architectures trained at once, one thread each (default: one per core)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="an earlier ranking_fidelity.json whose reference ranking is reused (same archs)")
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
    reference_overrides = [*common] + ([f"data.max_train_samples={args.reference_train_samples}"]
                                       if args.reference_train_samples else [])
    if args.reference is not None:
        reference, reference_cpu, reference_failures = load_reference(
            args.reference, args.preset, archs, args.epochs, args.reference_train_samples or args.max_train_samples,
            args.max_train_samples)
    else:
        reference, reference_cpu, reference_failures = score_all(
            args.preset, reference_overrides, archs, args.epochs, args.jobs, f"reference ({args.epochs} epochs)")
    results: dict[str, Any] = {"preset": args.preset, "archs": [a.digest() for a in archs], "epochs": args.epochs,
                               "max_train_samples": args.max_train_samples,
                               "reference_train_samples": args.reference_train_samples or args.max_train_samples,
                               "reference": reference, "reference_cpu_s": reference_cpu,
                               "reference_failures": reference_failures, "jobs": args.jobs, "proxies": {}}
    for name, overrides in proxies.items():
        scores, cpu, failures = score_all(args.preset, [*common, *overrides], archs, None, args.jobs,
                                          f"proxy {name}")
        why_not = tau_not_computed(scores, reference)
        tau = kendalltau(scores, reference) if why_not is None else None
        results["proxies"][name] = {"overrides": overrides, "scores": scores,
                                    "kendall_tau": None if tau is None else float(tau.statistic),
                                    "p_value": None if tau is None else float(tau.pvalue),
                                    "cpu_s": cpu, "cpu_s_per_arch": cpu / len(archs),
                                    "failures": failures, "tau_not_computed": why_not}
    results["wall_s"] = time.perf_counter() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ranking_fidelity.json").write_text(strict_json.dumps(results, indent=2) + "\n")
    subset = results["reference_train_samples"]
    print(f"\n{len(archs)} architectures, reference: {args.epochs}-epoch stand-alone validation accuracy"
          f"{f' on {subset} training images' if subset else ''}")
    print("| ranking | Kendall tau | p | CPU s per arch |\n|---|---|---|---|")
    for name, row in results["proxies"].items():
        tau, p = ((f"{row['kendall_tau']:.3f}", f"{row['p_value']:.3f}") if row["tau_not_computed"] is None
                  else (f"not computed: {row['tau_not_computed']}", "-"))
        print(f"| {name} | {tau} | {p} | {row['cpu_s_per_arch']:.1f} |")
    for label, failures in [("reference", reference_failures),
                            *((f"proxy {name}", row["failures"]) for name, row in results["proxies"].items())]:
        for reason, count in failures.items():
            print(f"{label}: {count} of {len(archs)} architectures have no score: {reason}")
    return results


def tau_not_computed(scores: list[float], reference: list[float]) -> str | None:
    """Why Kendall tau of ``scores`` against ``reference`` cannot be computed (None when it can)."""
    reasons = [f"{failed} of {len(values)} {what} failed" for what, values in (("scores", scores),
                                                                                ("reference scores", reference))
               if (failed := sum(not np.isfinite(v) for v in values))]
    return "; ".join(reasons) or None


def load_reference(path: Path, preset: str, archs: list[Architecture], epochs: int, train_samples: int | None,
                   max_train_samples: int | None) -> tuple[list[float], float, dict[str, int]]:
    """The reference scores, CPU seconds and failure reasons of an earlier run, after checking it ranked the
    same thing."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"--reference {path}: cannot read it ({error})") from error
    expected = {"preset": preset, "archs": [a.digest() for a in archs], "epochs": epochs,
                "reference_train_samples": train_samples, "max_train_samples": max_train_samples}
    for key, value in expected.items():
        if saved.get(key) != value:
            raise SystemExit(f"--reference {path}: its {key} is {saved.get(key)!r}, this run's is {value!r}")
    log.info("reference (%d epochs) reused from %s", epochs, path)
    return ([math.nan if v is None else float(v) for v in saved["reference"]], float(saved["reference_cpu_s"]),
            dict(saved.get("reference_failures") or {}))


def _number(value: Any) -> float | None:
    """``3.5M`` / ``25K`` / a number -> float (None for None)."""
    if value is None:
        return None
    text = str(value).strip().upper()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


if __name__ == "__main__":
    main()
