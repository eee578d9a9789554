"""Training throughput (images/s) of one Fashion-MNIST candidate under each loader / memory-format setting.

Each round fits the same network (same seed) for ``--batches`` batches once per setting, in an
interleaved order, so a change in machine load hits every setting alike; the table gives the
median over rounds of images per CPU second (this process's CPU time, so other work on a shared
machine does not count; on one thread it is the img/s of a quiet core) of
``TrainEvaluator.fit_model`` (Lightning, metrics, BatchNorm recalibration included).

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --rounds 3 --batches 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.evaluators.train import TrainEvaluator, seeded
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace

SETTINGS = {  # name -> (data.batched, evaluator.channels_last)
    "per-image loader": (False, False),
    "batched loader": (True, False),
    "batched + channels_last": (True, True),
}


def flagship_space() -> SearchSpace:
    """The flagship experiment's MBConv space (conf/experiment/fashion_mnist.yaml)."""
    return EfficientConvNetSpace((1, 28, 28), 10, width_multipliers=[0.75], depth_multipliers=[1.0],
                                 kernel_sizes=[3], expansions=[3], se_ratios=[0.0], resolutions=[28],
                                 stem_stride=2, stem_channels=16, stage_channels=[16, 24, 48, 96],
                                 stage_depths=[1, 2, 2, 1], stage_strides=[1, 2, 2, 1], head_channels=128,
                                 dropout=0.1)


def images_per_second(batched: bool, channels_last: bool, batches: int, batch_size: int) -> float:
    data = FashionMNISTDataModule(batch_size=batch_size, val_fraction=0.1, augment=True, batched=batched,
                                  random_erasing=0.25 if batched else 0.0)
    evaluator = TrainEvaluator(data, max_epochs=1, limit_train_batches=batches, channels_last=channels_last,
                               latency_repeats=1)
    space = flagship_space()
    arch = space.sample(np.random.default_rng(0))
    data.setup("fit")
    with seeded(0):
        model = space.build(arch)
    started = time.process_time()
    evaluator.fit_model(model, 1, num_classes=10, limit_train_batches=batches)
    return batches * batch_size / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    speeds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (batched, channels_last) in SETTINGS.items():
            speeds[name].append(images_per_second(batched, channels_last, args.batches, args.batch_size))
    print(f"threads={torch.get_num_threads()} batches={args.batches} batch_size={args.batch_size} "
          f"rounds={args.rounds}")
    print("| setting | img per CPU s (median) | all rounds |\n|---|---|---|")
    for name, values in speeds.items():
        print(f"| {name} | {statistics.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} |")


if __name__ == "__main__":
    main()
