"""Speed-up of the process and Ray executors over the local one: 8 candidates trained on digits.

Each executor evaluates the same 8 architectures of a small ``efficient_convnet`` space with a
:class:`TrainEvaluator` on tiny budgets; the wall time of ``map_evaluate`` (worker start-up
included, then a second, warm batch) is printed with the ratio ``local / executor``::

    python benchmarks/executor_speedup.py --workers 2
    python benchmarks/executor_speedup.py --executors local,process --epochs 2

On N cores the ideal ratio is N; worker start-up (importing torch and Lightning) is paid once per
worker and shows in the cold column only.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators import TrainEvaluator
from lightning_nas.executors import Executor, LocalExecutor, ProcessExecutor
from lightning_nas.spaces import EfficientConvNetSpace

log = logging.getLogger("executor_speedup")


def _executors(workers: int) -> dict[str, Callable[[], Executor]]:
    def ray() -> Executor:
        from lightning_nas.executors import RayExecutor

        return RayExecutor(num_cpus=workers)

    return {"local": LocalExecutor, "process": lambda: ProcessExecutor(max_workers=workers), "ray": ray}


def _time_batches(make: Callable[[], Executor], evaluator: Any, space: Any, archs: list[Any]) -> tuple[float, float]:
    """Seconds for a cold batch (workers starting) and a warm one, on one executor."""
    with make() as executor:
        started = time.perf_counter()
        cold = executor.map_evaluate(evaluator, space, archs)
        middle = time.perf_counter()
        warm = executor.map_evaluate(evaluator, space, archs)
        ended = time.perf_counter()
    failed = [r.error for r in [*cold, *warm] if not r.ok]
    if failed:
        log.warning("%d failed evaluations: %s", len(failed), failed[:2])
    return middle - started, ended - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--executors", default="local,process,ray")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    datamodule = DigitsDataModule(batch_size=64, max_train_samples=512, max_val_samples=256)
    space = EfficientConvNetSpace(input_shape=(1, 8, 8), num_classes=10, stage_channels=[8, 16],
                                  stage_depths=[1, 1], stage_strides=[1, 2], head_channels=32)
    evaluator = TrainEvaluator(datamodule, max_epochs=args.epochs, latency_repeats=2, deterministic=False)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.candidates)]
    available = _executors(args.workers)
    times: dict[str, tuple[float, float]] = {}
    for name in args.executors.split(","):
        try:
            times[name] = _time_batches(available[name], evaluator, space, archs)
        except (ImportError, ValueError) as error:
            log.warning("skipping %s: %s", name, error)
    base = times.get("local")
    print(f"{args.candidates} candidates, {args.workers} workers, {args.epochs} epoch(s) each")
    print(f"{'executor':<10}{'cold s':>10}{'warm s':>10}{'cold x':>9}{'warm x':>9}")
    for name, (cold, warm) in times.items():
        ratios = ("-", "-") if base is None else (f"{base[0] / cold:.2f}", f"{base[1] / warm:.2f}")
        print(f"{name:<10}{cold:>10.1f}{warm:>10.1f}{ratios[0]:>9}{ratios[1]:>9}")


if __name__ == "__main__":
    main()
