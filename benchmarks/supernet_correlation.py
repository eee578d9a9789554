"""How well do inherited supernet weights rank architectures? (rank correlation vs stand-alone training)

1. Train a weight-sharing supernet on scikit-learn digits with :class:`SupernetModule`
   (a reduced ``EfficientConvNetSpace``: 8x8 input only, so it fits a 2-core CPU budget;
   the toy test space if that space is missing, or with ``--space toy``).
2. Score ``--num-archs`` architectures spread over the size range (evenly spaced parameter-count
   quantiles of 300 random ones) with :class:`SupernetEvaluator`
   (inherited weights, BN recalibrated) and measure its throughput on ``--rate-archs`` more.
3. Train the same architectures stand-alone from scratch with :class:`TrainEvaluator`.
4. Print Kendall's tau and Spearman's rho between the two sets of validation accuracies
   (a 25% validation split: 360 images, so one image is 0.28 points of accuracy).

Defaults finish in well under 10 minutes on 2 CPU cores::

    python benchmarks/supernet_correlation.py
    python benchmarks/supernet_correlation.py --sampling sandwich --supernet-epochs 12
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from scipy import stats
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators.supernet import SupernetEvaluator
from lightning_nas.evaluators.train import TrainEvaluator, seeded
from lightning_nas.nn import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, LayerChoice, Repeat, ValueChoice
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.operators import sample_unseen
from lightning_nas.strategies.supernet import SupernetModule

log = logging.getLogger("supernet_correlation")


class ToySpace(SearchSpace):
    """The test suite's toy space: width, kernel, depth and a per-block op (96 architectures)."""

    name = "toy"

    def construct(self) -> nn.Module:
        width = ValueChoice([16, 32], label="width")
        kernel = ValueChoice([3, 5], label="kernel")

        def block(i: int) -> nn.Module:
            return nn.Sequential(LayerChoice({"conv": lambda: ElasticConv2d(width, width, kernel),
                                              "skip": nn.Identity}, label=f"block{i}/op"),
                                 ElasticBatchNorm2d(width), nn.ReLU())

        return nn.Sequential(ElasticConv2d(self.input_shape[0], width, 3), Repeat(block, [1, 2, 3], label="depth"),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), ElasticLinear(width, self.num_classes))


def make_space(name: str, input_shape: tuple[int, int, int], num_classes: int) -> SearchSpace:
    """The reduced efficient_convnet space (~1.8e7 architectures), or the toy space."""
    if name == "efficient_convnet":
        try:
            from lightning_nas.spaces import EfficientConvNetSpace
        except ImportError:
            log.warning("EfficientConvNetSpace is not available: using the toy space")
        else:
            return EfficientConvNetSpace(input_shape, num_classes, resolutions=(8,), width_multipliers=(0.5, 0.75, 1.0),
                                         depth_multipliers=(0.5, 1.0), kernel_sizes=(3, 5), expansions=(1, 3, 6),
                                         head_channels=128)
    return ToySpace(input_shape, num_classes)


def train_supernet(space: SearchSpace, datamodule: L.LightningDataModule, args: argparse.Namespace) -> SupernetModule:
    with seeded(args.seed):
        module = SupernetModule(space, sampling=args.sampling, num_random_paths=args.num_random_paths,
                                optimizer="sgd", lr=args.lr, seed=args.seed)
        trainer = L.Trainer(max_epochs=args.supernet_epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0)
        trainer.fit(module, datamodule=datamodule)
    return module


def distinct_archs(space: SearchSpace, count: int, seed: int, exclude: set[Architecture]) -> list[Architecture]:
    """``count`` distinct random architectures not in ``exclude``."""
    rng = np.random.default_rng(seed)
    seen = set(exclude)
    archs = []
    for _ in range(count):
        archs.append(sample_unseen(space, rng, seen))
        seen.add(archs[-1])
    return archs


def param_count(space: SearchSpace, arch: Architecture) -> int:
    with torch.device("meta"):  # shapes only: no weights allocated
        return sum(p.numel() for p in space.build(arch).parameters())


def spread_archs(space: SearchSpace, count: int, seed: int, pool: int = 300) -> list[Architecture]:
    """``count`` architectures at evenly spaced parameter-count quantiles of ``pool`` random ones."""
    candidates = distinct_archs(space, pool, seed, set())
    order = np.argsort([param_count(space, arch) for arch in candidates], kind="stable")
    picks = np.linspace(0, len(order) - 1, count).round().astype(int)
    return [candidates[int(order[i])] for i in picks]


def score(evaluator: Any, space: SearchSpace, archs: list[Architecture]) -> list[float]:
    results = [evaluator.evaluate(space, arch) for arch in archs]
    for arch, result in zip(archs, results, strict=True):
        if not result.ok:
            raise RuntimeError(f"{arch.to_json()} failed: {result.error}")
    return [r.metrics["search/val_acc"] for r in results]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=["efficient_convnet", "toy"], default="efficient_convnet")
    parser.add_argument("--sampling", choices=["uniform", "sandwich"], default="uniform")
    parser.add_argument("--num-random-paths", type=int, default=1)
    parser.add_argument("--supernet-epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05, help="supernet SGD learning rate")
    parser.add_argument("--num-archs", type=int, default=16, help="architectures trained stand-alone (>= 10)")
    parser.add_argument("--standalone-epochs", type=int, default=5)
    parser.add_argument("--rate-archs", type=int, default=50, help="extra subnets scored to measure subnets/s")
    parser.add_argument("--calibration-batches", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (8x8 images: 1 is fastest)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    datamodule = DigitsDataModule(batch_size=64, val_fraction=0.25, seed=args.seed)
    space = make_space(args.space, datamodule.input_shape, datamodule.num_classes)
    print(f"space: {space!r}, {len(space.decisions)} decisions, {space.cardinality:.3g} architectures")

    module = train_supernet(space, datamodule, args)
    supernet_s = time.perf_counter() - started
    print(f"supernet ({args.sampling}, {args.supernet_epochs} epochs) trained in {supernet_s:.0f}s")

    evaluator = SupernetEvaluator(module, datamodule, calibration_batches=args.calibration_batches,
                                  measure_hardware=False)
    archs = spread_archs(space, args.num_archs, args.seed)
    inherited = score(evaluator, space, archs)
    evaluator.num_evaluated, evaluator.seconds = 0, 0.0
    score(evaluator, space, distinct_archs(space, args.rate_archs, args.seed + 1, set(archs)))
    rate = evaluator.subnets_per_second

    standalone_evaluator = TrainEvaluator(datamodule, max_epochs=args.standalone_epochs, optimizer="adamw",
                                          lr=3e-3, latency_repeats=1, seed=args.seed)
    begin = time.perf_counter()
    standalone = score(standalone_evaluator, space, archs)
    standalone_s = time.perf_counter() - begin

    print(f"\n{'inherited':>9} {'stand-alone':>11} {'params':>7}  architecture")
    for arch, a, b in sorted(zip(archs, inherited, standalone, strict=True), key=lambda t: -t[2]):
        print(f"{a:9.4f} {b:11.4f} {param_count(space, arch):7d}  {arch.digest()}")
    tau = stats.kendalltau(inherited, standalone)
    rho = stats.spearmanr(inherited, standalone)
    print(f"\nKendall tau = {tau.statistic:.3f} (p={tau.pvalue:.3f}), "
          f"Spearman rho = {rho.statistic:.3f} (p={rho.pvalue:.3f}) over {len(archs)} architectures")
    sizes = [param_count(space, arch) for arch in archs]
    baseline = stats.kendalltau(sizes, standalone)
    print(f"baseline, parameter count alone: Kendall tau = {baseline.statistic:.3f}, "
          f"Spearman rho = {stats.spearmanr(sizes, standalone).statistic:.3f}")
    print(f"supernet evaluator: {rate:.1f} subnets/s ({args.rate_archs} subnets, "
          f"{args.calibration_batches} calibration batches, full validation split)")
    print(f"stand-alone training: {standalone_s / len(archs):.1f}s per architecture "
          f"({args.standalone_epochs} epochs)")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
