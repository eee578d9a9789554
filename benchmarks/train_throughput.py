"""Training throughput (images/s) of Fashion-MNIST networks under each loader / memory-format / precision setting.

Each round fits every network (same seed) for ``--batches`` batches once per setting, in an
interleaved order, so a change in machine load hits every setting alike; the table gives the
median over rounds of images per CPU second (this process's CPU time, so other work on a shared
machine does not count; on one thread it is the img/s of a quiet core) of
``TrainEvaluator.fit_model`` (Lightning, metrics, BatchNorm recalibration included).

``--models``: ``mbconv_86k`` (the 86.6K-parameter MBConv candidate of the flagship's first preset, the
default), a baseline's name (``two_conv_cnn``, ``resnet_small``, ``mobilenet_v3_small``) or an
``arch.json`` of the ``fashion_mnist`` preset's space.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --rounds 3 --batches 60
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --models two_conv_cnn mobilenet_v3_small \\
        benchmarks/fashion_mnist_archs/flagship_74c98ed3ceaf.json --settings "batched + channels_last" \\
        "batched + channels_last + bf16 autocast"
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.evaluators.train import TrainEvaluator, seeded
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_spread import build_model, compose_config

SETTINGS = {  # name -> (data.batched, evaluator.channels_last, evaluator.precision)
    "per-image loader": (False, False, "32"),
    "batched loader": (True, False, "32"),
    "batched + channels_last": (True, True, "32"),
    "batched + channels_last + bf16 autocast": (True, True, "bf16-mixed"),
}
DEFAULT_MODEL = "mbconv_86k"


def flagship_space() -> SearchSpace:
    """The flagship experiment's first MBConv space, cut to the issue's 86.6K-parameter candidate."""
    return EfficientConvNetSpace((1, 28, 28), 10, width_multipliers=[0.75], depth_multipliers=[1.0],
                                 kernel_sizes=[3], expansions=[3], se_ratios=[0.0], resolutions=[28],
                                 stem_stride=2, stem_channels=16, stage_channels=[16, 24, 48, 96],
                                 stage_depths=[1, 2, 2, 1], stage_strides=[1, 2, 2, 1], head_channels=128,
                                 dropout=0.1)


def build_network(name: str) -> nn.Module:
    """``--models`` entry ``name`` as a freshly initialised network (seed 0)."""
    with seeded(0):
        if name == DEFAULT_MODEL:
            space = flagship_space()
            return space.build(space.sample(np.random.default_rng(0)))
        return build_model(name, compose_config("fashion_mnist", False, []), (1, 28, 28), 10)


def images_per_second(name: str, batched: bool, channels_last: bool, precision: str, batches: int,
                      batch_size: int, data_dir: str | None = None) -> float:
    data = FashionMNISTDataModule(**({"data_dir": data_dir} if data_dir else {}), batch_size=batch_size,
                                  val_fraction=0.1, augment=True, batched=batched,
                                  random_erasing=0.25 if batched else 0.0)
    evaluator = TrainEvaluator(data, max_epochs=1, limit_train_batches=batches, channels_last=channels_last,
                               latency_repeats=1, precision=precision)
    data.setup("fit")
    model = build_network(name)
    started = time.process_time()
    evaluator.fit_model(model, 1, num_classes=10, limit_train_batches=batches)
    return batches * batch_size / (time.process_time() - started)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST files (default: the data module's)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING",
                        help=f"settings to compare (default: all): {', '.join(repr(s) for s in SETTINGS)}")
    args = parser.parse_args(argv)
    for name in args.models:
        build_network(name)  # a bad name ends here, before any timing
    speeds = {model: {setting: [] for setting in args.settings} for model in args.models}
    for _ in range(args.rounds):
        for model in args.models:
            for setting in args.settings:
                batched, channels_last, precision = SETTINGS[setting]
                speeds[model][setting].append(images_per_second(model, batched, channels_last, precision,
                                                                args.batches, args.batch_size, args.data_dir))
    print(f"threads={torch.get_num_threads()} batches={args.batches} batch_size={args.batch_size} "
          f"rounds={args.rounds}")
    print("| network | setting | img per CPU s (median) | all rounds |\n|---|---|---|---|")
    for model, by_setting in speeds.items():
        for setting, values in by_setting.items():
            rounds = ", ".join(f"{v:.0f}" for v in values)
            print(f"| {model} | {setting} | {statistics.median(values):.0f} | {rounds} |")
    return speeds


if __name__ == "__main__":
    main()
