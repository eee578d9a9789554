"""Seed-to-seed spread of the flagship's final training: one network trained with several seeds.

Reading the flagship table needs it: two networks whose test accuracies differ by less than this
spread are not told apart by one run each. The script trains ``--model`` (a baseline's name, or an
``arch.json`` of the preset's search space) with the preset's final-training recipe for ``--epochs``
epochs, once per seed ``0 .. --seeds - 1`` (initialisation and data order both follow the seed),
``--jobs`` at a time in worker processes of one thread each, and prints each test accuracy, their
mean, standard deviation and range. With ``--output FILE`` the figures also go to a JSON file.

Usage::

    python benchmarks/seed_spread.py --model resnet_small --seeds 4 --epochs 15 --jobs 2
    python benchmarks/seed_spread.py --model resnet_small:16,32,56,68 --seeds 2   # the ResNet at half the params
    python benchmarks/seed_spread.py --model resnet_small:24,48,72/4 --seeds 2   # three blocks, 4x4 flattened
    python benchmarks/seed_spread.py --model outputs/fm_full/best/arch.json --seeds 4 --epochs 15
    python benchmarks/seed_spread.py --model two_conv_cnn --quick      # CI-sized: a few hundred images
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lightning_nas.arch import Architecture
from lightning_nas.baselines import BASELINES, build_baseline, resnet_small
from lightning_nas.cli_errors import compose_or_fail
from lightning_nas.config import ConfigError, build_node
from lightning_nas.evaluators.train import derive_seed, seeded
from lightning_nas.executors.lifetime import exit_with_parent
from lightning_nas.planner import torch_threads
from lightning_nas.results import strict_json

QUICK_OVERRIDES = ["data.max_train_samples=600", "data.max_val_samples=200", "data.max_test_samples=200",
                   "data.batch_size=64"]


@dataclass
class SeedRun:
    seed: int
    test_acc: float
    seconds: float
    cpu_seconds: float


def compose_config(preset: str, quick: bool, overrides: list[str]) -> DictConfig:
    """The preset's config (its data, space and final-training recipe) with any overrides, composed as
    the app composes it; a bad override ends the script with the app's one-line error naming it."""
    try:
        return compose_or_fail("lightning_nas.conf", "config",
                               [f"experiment={preset}", *(QUICK_OVERRIDES if quick else []), *overrides])
    except ConfigError as error:
        raise SystemExit(f"seed_spread: {error}") from error


def build_model(model: str, cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """A baseline by name, ``resnet_small:W1,W2,...[/P]`` (the ResNet baseline with these block widths,
    pooled to P x P before the classifier), or the
    network of an ``arch.json`` in the preset's search space."""
    if model in BASELINES:
        return build_baseline(model, input_shape, num_classes)
    if model.startswith("resnet_small:"):
        spec, _, pool = model.split(":", 1)[1].partition("/")
        try:
            widths = [int(w) for w in spec.split(",")]
            pool_size = int(pool) if pool else 1
        except ValueError:
            widths, pool_size = [], 0
        if not widths or min(widths) < 1 or pool_size < 1:
            raise SystemExit(f"--model {model!r}: resnet_small:W1,W2,...[/P] takes positive integer block widths "
                             "(and a positive pool size P)")
        return resnet_small(input_shape, num_classes, widths=widths, pool_size=pool_size)
    path = Path(model)
    if not path.is_file():
        names = ", ".join(sorted(BASELINES))
        raise SystemExit(f"--model {model!r}: neither a baseline ({names}), resnet_small:W1,W2,...[/P] nor an "
                         "arch.json file")
    space = build_node(cfg, "search_space", input_shape=input_shape, num_classes=num_classes)
    try:
        return space.build(space.validate(Architecture.load(path)))
    except (ValueError, KeyError) as error:
        raise SystemExit(f"--model {model}: not an architecture of the preset's search space: {error}") from error


def train_one(model: str, config_file: str, seed: int, epochs: int, seed_key: str | None = None) -> SeedRun:
    """Worker: train ``model`` with the final recipe and ``seed`` on one thread, and test it. The run's seed
    derives from ``seed`` and ``seed_key`` (``model`` itself by default; a key of its own keeps the figures
    the same where ``model`` is a file at a temporary path)."""
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    cfg = OmegaConf.load(config_file)
    assert isinstance(cfg, DictConfig)
    datamodule = build_node(cfg, "data")
    evaluator = build_node(cfg, "evaluator", datamodule=datamodule)
    run_seed = derive_seed(seed, "seed_spread", model if seed_key is None else seed_key)
    with seeded(run_seed):
        network = build_model(model, cfg, tuple(datamodule.input_shape), int(datamodule.num_classes))
    started, cpu_started = time.perf_counter(), time.process_time()
    module = evaluator.fit_model(network, epochs, num_classes=int(datamodule.num_classes), seed=run_seed,
                                 limit_train_batches=evaluator.final_limit_train_batches, final=True)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return SeedRun(seed, float(evaluator.test_model(module)["test/acc"]), seconds, cpu_seconds)


def run_jobs(jobs: list[tuple[Any, ...]], workers: int) -> Iterator[SeedRun]:
    """``train_one(*job)`` for each job, yielded in order as each ends: in ``workers`` worker processes, or in
    this process with 1."""
    if workers == 1:
        with torch_threads(1):  # train_one's one thread, this process's own restored after
            for job in jobs:
                yield train_one(*job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=exit_with_parent) as pool:
        futures = [pool.submit(train_one, *job) for job in jobs]
        for future in futures:
            yield future.result()


def _train_all(args: argparse.Namespace, config_file: str) -> Iterator[SeedRun]:
    """Every seed's run, in seed order."""
    return run_jobs([(args.model, config_file, seed, args.epochs) for seed in seed_range(args)], args.jobs)


def seed_range(args: argparse.Namespace) -> range:
    """The seeds to train: ``--seeds`` of them from ``--first-seed`` on."""
    return range(args.first_seed, args.first_seed + args.seeds)


def summarise(runs: list[SeedRun]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one run) and range of the test accuracies."""
    accs = [r.test_acc for r in runs]
    return {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs), "max": max(accs)}


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--output`` and the preset's overrides, as the scripts training with its recipe take them."""
    parser.add_argument("--quick", action="store_true", help="CI-sized: a few hundred images")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the preset")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a baseline name, resnet_small:W1,W2,...[/P] (the ResNet "
                        "baseline with these block widths, pooled to PxP before the classifier), or an arch.json of "
                        "the preset's space")
    parser.add_argument("--preset", default="fashion_mnist", help="experiment preset giving data and recipe")
    parser.add_argument("--seeds", type=int, default=4, help="how many seeds: S .. S+N-1 (S: --first-seed)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (more seeds for an earlier run)")
    parser.add_argument("--epochs", type=int, default=15, help="final-training epochs per seed")
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once (one thread each)")
    add_shared_arguments(parser)
    args = parser.parse_args(argv)
    for key in ("seeds", "epochs", "jobs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be a positive integer, got {getattr(args, key)}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be 0 or more, got {args.first_seed}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    cfg = compose_config(args.preset, args.quick, args.overrides)
    datamodule = build_node(cfg, "data")
    build_model(args.model, cfg, tuple(datamodule.input_shape), int(datamodule.num_classes))  # fail fast
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        config_file = str(Path(folder) / "config.yaml")
        OmegaConf.save(cfg, config_file)
        runs = []
        for run in _train_all(args, config_file):
            runs.append(run)
            print(f"seed {run.seed}: test accuracy {run.test_acc:.4f} ({run.seconds:.0f} s, "
                  f"{run.cpu_seconds:.0f} CPU s)", flush=True)
    summary = summarise(runs)
    seeds = f"seeds {args.first_seed}-{args.first_seed + args.seeds - 1}"
    print(f"{args.model}, {args.epochs} epochs, {seeds} ({args.preset} final recipe): test accuracy "
          f"mean {summary['mean']:.4f}, std {summary['std']:.4f}, range {summary['min']:.4f}-{summary['max']:.4f}; "
          f"{time.perf_counter() - started:.0f} s in all")
    result = {"model": args.model, "preset": args.preset, "epochs": args.epochs, "first_seed": args.first_seed,
              "quick": args.quick, "overrides": args.overrides, "runs": [asdict(r) for r in runs], **summary}
    if args.output is not None:
        args.output.write_text(strict_json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
