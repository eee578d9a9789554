"""Latency predictors on efficient_convnet: rank quality on held-out architectures and speed.

Measures ``--archs`` distinct random architectures on the ``cpu`` hardware target (batch 1,
one thread; each latency is the minimum over ``--rounds`` interleaved passes of the median of
``--repeats`` forwards), fits the ``lut`` predictor and both ``learned`` regressors on the first
``--train`` of them and reports Spearman, Kendall, MAPE and RMSE on the rest, plus cold
predictions per second (a freshly loaded predictor: build, one hooked forward, regress) next to
the time one measurement takes.

Usage:
    python benchmarks/latency_predictor.py                       # 100 archs, 60 train / 40 test
    python benchmarks/latency_predictor.py --clock wall --rounds 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lightning_nas.arch import Architecture
from lightning_nas.hardware.predictor import LatencyPredictor
from lightning_nas.hardware.targets import CpuTarget
from lightning_nas.spaces import EfficientConvNetSpace
from lightning_nas.spaces.base import SearchSpace


def sample_distinct(space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    archs: list[Architecture] = []
    seen: set[Architecture] = set()
    while len(archs) < count:
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


def measure(space: SearchSpace, archs: list[Architecture], target: CpuTarget, rounds: int) -> tuple[np.ndarray, float]:
    """Minimum over interleaved rounds of each architecture's median latency, and seconds per arch."""
    with torch.random.fork_rng(devices=[]):
        models = [space.build(arch) for arch in archs]
    started = time.perf_counter()
    table = [[target.latency(model, space.input_shape) for model in models] for _ in range(rounds)]
    return np.min(table, axis=0), (time.perf_counter() - started) / len(archs)


def cold_rate(predictor: LatencyPredictor, space: SearchSpace, archs: list[Architecture]) -> float:
    """Predictions per second of a freshly loaded copy (no cached features)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = LatencyPredictor.load(predictor.save(Path(tmp) / "p.json"))
    started = time.perf_counter()
    fresh.predict(space, archs)
    return len(archs) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=100, help="architectures to measure")
    parser.add_argument("--train", type=int, default=60, help="of which the predictors are fitted on")
    parser.add_argument("--input-shape", type=int, nargs=3, default=[1, 16, 16], metavar=("C", "H", "W"))
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (minimum kept)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                        help="cpu: thread CPU time, stable on a shared machine; wall: what a user sees")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 3 <= args.train <= args.archs - 3:
        parser.error("--train must leave at least 3 architectures on each side")
    torch.set_num_threads(1)
    space = EfficientConvNetSpace(tuple(args.input_shape), 10)
    archs = sample_distinct(space, args.archs, args.seed)
    target = CpuTarget(threads=1, repeats=args.repeats, warmup=1, clock=args.clock)
    latency, seconds = measure(space, archs, target, args.rounds)
    print(f"efficient_convnet {tuple(args.input_shape)}: {args.archs} archs, latency {latency.min():.2f}-"
          f"{latency.max():.2f} ms (median {np.median(latency):.2f}), clock={args.clock}, "
          f"{1e3 * seconds:.0f} ms of measuring per arch ({args.rounds} x {args.repeats + 1} forwards)")
    train, test = archs[: args.train], archs[args.train :]
    predictors = {
        "lut": LatencyPredictor("lut", target=CpuTarget(threads=1, repeats=20, warmup=2, clock=args.clock)),
        "learned/linear": LatencyPredictor("learned", "linear"),
        "learned/gbr": LatencyPredictor("learned", "gbr", seed=args.seed),
    }
    print(f"{'predictor':<16}{'fit s':>7}{'spearman':>10}{'kendall':>9}{'MAPE %':>8}{'RMSE ms':>9}{'pred/s':>8}")
    for name, predictor in predictors.items():
        started = time.perf_counter()
        predictor.fit(space, train, latency[: args.train])
        fit_seconds = time.perf_counter() - started
        figures = predictor.evaluate(space, test, latency[args.train :])
        rate = cold_rate(predictor, space, test)
        print(f"{name:<16}{fit_seconds:>7.1f}{figures['spearman']:>10.3f}{figures['kendall']:>9.3f}"
              f"{figures['mape']:>8.1f}{figures['rmse']:>9.3f}{rate:>8.0f}")


if __name__ == "__main__":
    main()
