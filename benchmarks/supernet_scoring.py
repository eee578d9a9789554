"""Supernet scoring speed (subnets/s, BN recalibration included) and ranking stability (Kendall tau).

1. Train a weight-sharing supernet on scikit-learn digits with :class:`SupernetModule` (the reduced
   ``EfficientConvNetSpace`` of ``supernet_correlation.py``), seeded and single-threaded, so the same
   code trains the same weights.
2. Score ``--num-archs`` distinct random architectures with :class:`SupernetEvaluator` at batch
   ``--batch-size`` (``freeze`` + BN recalibration on ``--calibration-batches`` cached training
   batches + accuracy on the whole validation split) and report subnets/s (the median of
   ``--repeats`` passes over the same architectures), side by side, passes interleaved: the NCHW
   memory format (the scoring path before channels_last), channels_last (the default), channels_last
   with ``--fewer-calibration-batches`` (faster, other scores), channels_last with BatchNorm folded into
   the convolutions for the validation pass (``fold_bn``), that in ``--workers`` forked processes
   (``workers``, through ``evaluate_many``), and that with the fewer calibration batches.
3. With ``--record FILE`` write the (NCHW) scores; otherwise compare each variant's with the recorded ones
   (``benchmarks/supernet_scores_baseline.json``, recorded before the scoring path was changed):
   Kendall tau over the architectures, and the largest absolute difference. Only when the run's
   settings that decide the scores (all recorded ones but ``repeats``, ``workers`` and
   ``fewer_calibration_batches``) and its architectures are the recorded ones: otherwise one line names
   what differs and the comparison is reported as not comparable.

Usage::

    python benchmarks/supernet_scoring.py
    python benchmarks/supernet_scoring.py --record benchmarks/supernet_scores_baseline.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from scipy import stats

from lightning_nas.arch import Architecture
from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators.supernet import SupernetEvaluator
from lightning_nas.evaluators.train import seeded
from lightning_nas.nn import freeze
from lightning_nas.spaces import EfficientConvNetSpace
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.supernet import SupernetModule

BASELINE = Path(__file__).with_name("supernet_scores_baseline.json")


def make_space(input_shape: tuple[int, int, int], num_classes: int) -> SearchSpace:
    """The reduced efficient_convnet space of ``supernet_correlation.py`` (8x8 input only)."""
    return EfficientConvNetSpace(input_shape, num_classes, resolutions=(8,), width_multipliers=(0.5, 0.75, 1.0),
                                 depth_multipliers=(0.5, 1.0), kernel_sizes=(3, 5), expansions=(1, 3, 6),
                                 head_channels=128)


def train_supernet(space: SearchSpace, args: argparse.Namespace) -> SupernetModule:
    datamodule = DigitsDataModule(batch_size=64, val_fraction=0.25, seed=args.seed)
    with seeded(args.seed):
        module = SupernetModule(space, optimizer="sgd", lr=0.05, seed=args.seed)
        trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, datamodule=datamodule)
    return module


def architectures(space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    """``count`` distinct architectures drawn with ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    found: dict[Architecture, None] = {}
    while len(found) < count:
        found.setdefault(space.sample(rng))
    return list(found)


def score_all(evaluator: SupernetEvaluator, space: SearchSpace,
              archs: list[Architecture]) -> tuple[list[float], float, float]:
    """Validation accuracies of ``archs``, and the wall and process CPU time of scoring them all (the
    worker processes' CPU time not included)."""
    start, cpu = time.perf_counter(), time.process_time()
    results = evaluator.evaluate_many(space, archs)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} subnets failed, first: {failed[0]}")
    return [r.metrics["search/val_acc"] for r in results], elapsed, cpu


def freeze_times(supernet: torch.nn.Module, archs: list[Architecture]) -> dict[str, float]:
    """Milliseconds per subnet: ``freeze`` sharing weights, ``freeze`` copying the path, and a deep copy
    of the whole supernet (what ``freeze`` did first before it visited only the chosen path)."""
    runs = {"freeze(share_weights=True)": lambda a: freeze(supernet, a, share_weights=True),
            "freeze(share_weights=False)": lambda a: freeze(supernet, a),
            "copy.deepcopy(supernet)": lambda a: copy.deepcopy(supernet)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for arch in archs:  # interleaved
        for name, run in runs.items():
            start = time.process_time()
            run(arch)
            times[name].append(time.process_time() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


# recorded settings that do not change the recorded (NCHW) scores: timing passes, other variants' batches and workers
TIMING_ONLY = frozenset({"repeats", "fewer_calibration_batches", "workers"})


def baseline_mismatch(args: argparse.Namespace, archs: list[Architecture], baseline: dict[str, Any]) -> str | None:
    """Why the recorded scores are not comparable with this run's (None when they are): each recorded
    setting that decides the scores and differs, with both values; else different architectures."""
    run = vars(args)
    differing = [f"{key}: recorded {value!r}, this run {run.get(key)!r}"
                 for key, value in (baseline.get("settings") or {}).items()
                 if key not in TIMING_ONLY and run.get(key) != value]
    if differing:
        return "; ".join(differing)
    recorded = [json.dumps(a, sort_keys=True) for a in baseline.get("archs") or []]
    ours = [json.dumps(a.to_dict(), sort_keys=True) for a in archs]
    if recorded != ours:
        return (f"the recorded architectures are not this run's: {len(set(ours) & set(recorded))} of its "
                f"{len(ours)} are among the {len(recorded)} recorded")
    return None


def compare(archs: list[Architecture], scores: list[float], baseline: dict[str, Any]) -> str:
    """Kendall tau and the largest score difference against the recorded scores."""
    recorded = {json.dumps(a, sort_keys=True): s for a, s in zip(baseline["archs"], baseline["scores"], strict=True)}
    pairs = [(recorded[key], s) for arch, s in zip(archs, scores, strict=True)
             if (key := json.dumps(arch.to_dict(), sort_keys=True)) in recorded]
    if len(pairs) < 2:
        return "no recorded scores for these architectures (different settings?)"
    old, new = zip(*pairs, strict=True)
    tau = stats.kendalltau(old, new).statistic
    worst = max(abs(a - b) for a, b in pairs)
    return f"Kendall tau vs recorded scores = {tau:.4f} over {len(pairs)} subnets; max |difference| = {worst:.4f}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="supernet training epochs")
    parser.add_argument("--num-archs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of scoring")
    parser.add_argument("--calibration-batches", type=int, default=5)
    parser.add_argument("--fewer-calibration-batches", type=int, default=1,
                        help="the third variant's calibration batches (a lever that changes the scores)")
    parser.add_argument("--workers", type=int, default=2, help="processes of the variants scoring in workers")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the architectures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", type=Path, default=None, help="write the scores here instead of comparing")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Variant:
    """How one variant scores: memory format, calibration batches, folded BatchNorm, worker processes."""

    channels_last: bool = True
    fewer_batches: bool = False  # --fewer-calibration-batches instead of --calibration-batches
    fold_bn: bool = False
    workers: bool = False  # --workers processes instead of 1

    def name(self, args: argparse.Namespace) -> str:
        parts = ["channels_last" if self.channels_last else "NCHW (before channels_last)"]
        parts += ["fewer calibration batches"] * self.fewer_batches + ["BN folded"] * self.fold_bn
        parts += [f"{args.workers} workers"] * self.workers
        return ", ".join(parts) + (" (default)" if self == Variant() else "")


VARIANTS = (Variant(channels_last=False), Variant(), Variant(fewer_batches=True), Variant(fold_bn=True),
            Variant(fold_bn=True, workers=True), Variant(fewer_batches=True, fold_bn=True, workers=True))


def make_evaluators(module: SupernetModule, data: DigitsDataModule,
                    args: argparse.Namespace) -> dict[str, SupernetEvaluator]:
    """One evaluator per variant (those with fewer calibration batches only when that is fewer)."""
    evaluators = {}
    for variant in VARIANTS:
        batches = args.fewer_calibration_batches if variant.fewer_batches else args.calibration_batches
        if variant.fewer_batches and batches == args.calibration_batches:
            continue
        evaluators[variant.name(args)] = SupernetEvaluator(
            module, data, calibration_batches=batches, measure_hardware=False, channels_last=variant.channels_last,
            fold_bn=variant.fold_bn, workers=args.workers if variant.workers else 1)
    return evaluators


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    space = make_space((1, 8, 8), 10)
    module = train_supernet(space, args)
    data = DigitsDataModule(batch_size=args.batch_size, val_fraction=0.25, seed=args.seed)
    archs = architectures(space, args.num_archs, args.seed + 1)
    evaluators = make_evaluators(module, data, args)
    # warm-up pass (also caches the batches and forks the workers)
    scores = {name: score_all(evaluator, space, archs)[0] for name, evaluator in evaluators.items()}
    passes: dict[str, list[tuple[float, float]]] = {name: [] for name in evaluators}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every variant alike
        for name, evaluator in evaluators.items():
            passes[name].append(score_all(evaluator, space, archs)[1:])
    print(f"supernet scoring, median of {args.repeats} passes over {len(archs)} subnets; batch {args.batch_size}, "
          f"full validation split, {args.threads} thread(s):")
    baseline = json.loads(args.baseline.read_text()) if args.record is None and args.baseline.exists() else None
    mismatch = None if baseline is None else baseline_mismatch(args, archs, baseline)
    for name, evaluator in evaluators.items():
        rate = len(archs) / statistics.median(p[0] for p in passes[name])
        cpu_rate = len(archs) / statistics.median(p[1] for p in passes[name])
        cpu = f"{cpu_rate:5.1f} per CPU second" if evaluator.workers == 1 else "(CPU time in the workers)"
        print(f"  {name:<62} {evaluator.calibration_batches} calibration batches: {rate:5.1f} subnets/s "
              f"wall, {cpu}")
        if baseline is not None and mismatch is None:
            print(f"    {compare(archs, scores[name], baseline)}")
    if mismatch is not None:
        print(f"  Kendall tau vs {args.baseline}: not comparable ({mismatch})")
    for name, ms in freeze_times(module.supernet, archs[:20]).items():
        print(f"  {name:<28} {ms:8.2f} CPU ms per subnet")
    for evaluator in evaluators.values():
        evaluator.close()
    if args.record is not None:
        payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("record", "baseline")},
                   "archs": [a.to_dict() for a in archs], "scores": scores[VARIANTS[0].name(args)]}
        args.record.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"recorded {len(archs)} scores in {args.record}")
    elif baseline is None:
        print(f"no recorded scores at {args.baseline}")


if __name__ == "__main__":
    main()
