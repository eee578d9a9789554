"""ExecuTorch latency of the flagship's networks, side by side: the searched network against the baselines.

The flagship's latency target compares the searched network with the 2-conv CNN, and one full run measures
each ``.pte`` once. This script exports each ``--model`` (a baseline's name, ``resnet_small:W1,W2,...[/P]`` or an
``arch.json`` of the preset's space, as in ``seed_spread.py``) to ExecuTorch with XNNPACK, then times every
``.pte`` at batch 1 on one thread, ``--rounds`` times in turn (so that a busy moment of the machine hits each
network alike), and prints each one's median over the rounds' medians with its parameters and MACs, fastest
first. ``--space`` adds every architecture of the preset's search space: which of them could meet a latency
bound at all. Latency does not depend on the weights, so the networks are freshly initialised. With
``--output FILE`` the figures also go to a JSON file.

Usage::

    python benchmarks/flagship_latency.py    # the latest flagship choice and the three baselines
    python benchmarks/flagship_latency.py --models two_conv_cnn outputs/<run>/best/arch.json --rounds 9
    python benchmarks/flagship_latency.py --models two_conv_cnn --space --rounds 3   # the whole space
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.config import build_node
from lightning_nas.export import export_model
from lightning_nas.export.profiler import rounds_in_turn
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.results import strict_json
from lightning_nas.spaces.base import SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import all_architectures  # sibling scripts
from seed_spread import build_model, compose_config

DEFAULT_MODELS = [str(Path(__file__).resolve().parent / "fashion_mnist_archs" / "flagship_b2a0e835c9e7.json"),
                  "two_conv_cnn", "resnet_small", "mobilenet_v3_small"]


def space_architectures(space: SearchSpace, limit: int) -> list[Architecture]:
    """Every distinct architecture of ``space`` (choices a network does not use, such as an MBConv kernel in a
    plain-conv stage, make no new one); SystemExit when there are more than ``limit``."""
    if space.cardinality > 50 * limit:  # the walk below goes through every combination of the choices
        raise SystemExit(f"--space: the preset's space has {space.cardinality} combinations of choices, too many "
                         f"for --max-archs {limit}")
    found: dict[tuple[tuple[str, Any], ...], Architecture] = {}
    for arch in all_architectures(space):
        active = space.active_labels(arch)
        found.setdefault(tuple((label, value) for label, value in arch.items() if label in active), arch)
        if len(found) > limit:
            raise SystemExit(f"--space: the preset's space holds more than --max-archs {limit} architectures")
    return list(found.values())


def networks(models: list[str], cfg: Any, shape: tuple[int, ...], classes: int,
             space: SearchSpace | None, limit: int) -> dict[str, nn.Module]:
    """The networks to time by name: each ``--model``, then (with ``space``) every architecture of it, named
    ``<digest>: <its decisions>``."""
    built = {name: build_model(name, cfg, shape, classes) for name in models}
    if space is not None:
        for arch in space_architectures(space, limit):
            built.setdefault(f"{arch.digest()}: {space.describe(arch)}", space.build(arch))
    return built


def measure(models: dict[str, nn.Module], shape: tuple[int, ...], rounds: int, repeats: int) -> dict[str, list[float]]:
    """Each model's median latency (ms) in every round, the models timed in turn within a round
    (``rounds_in_turn``: one thread, wall clock, 3 warm-up calls per round, every other round reversed)."""
    with tempfile.TemporaryDirectory() as folder:
        files = [export_model(model.eval(), torch.zeros(1, *shape), Path(folder) / f"{i}.pte").path
                 for i, model in enumerate(models.values())]
        by_round = rounds_in_turn(files, shape, rounds=rounds, repeats=repeats, warmup=3, threads=1)
    return {name: [statistics.median(round_) for round_ in program] for name, program in zip(models, by_round,
                                                                                            strict=True)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="baseline names, resnet_small:... or "
                        "arch.json files of the preset's space (default: the latest flagship choice and the baselines)")
    parser.add_argument("--preset", default="fashion_mnist", help="experiment preset giving the search space")
    parser.add_argument("--rounds", type=int, default=5, help="times each .pte is timed, in turn with the others")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per round")
    parser.add_argument("--space", action="store_true", help="also time every architecture of the preset's space")
    parser.add_argument("--max-archs", type=int, default=100, help="the most architectures --space may time")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the preset")
    args = parser.parse_args(argv)
    for key in ("rounds", "repeats", "max_archs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    cfg = compose_config(args.preset, False, args.overrides)
    datamodule = build_node(cfg, "data")  # the preset's input shape and classes, known before any data loads
    shape, classes = tuple(int(s) for s in datamodule.input_shape), int(datamodule.num_classes)
    space = build_node(cfg, "search_space", input_shape=shape, num_classes=classes) if args.space else None
    models = networks(args.models, cfg, shape, classes, space, args.max_archs)
    medians = measure(models, shape, args.rounds, args.repeats)
    result: dict[str, Any] = {"preset": args.preset, "rounds": args.rounds, "repeats": args.repeats, "models": {}}
    for name, values in sorted(medians.items(), key=lambda item: statistics.median(item[1])):
        model = models[name]
        figures = {"median_ms": statistics.median(values), "rounds_ms": values, "params": count_params(model),
                   "macs": count_macs(model, shape)}
        result["models"][name] = figures
        print(f"{figures['median_ms']:.3f} ms (rounds {min(values):.3f}-{max(values):.3f})  "
              f"{figures['params'] / 1e3:7.1f}K params  {figures['macs'] / 1e6:6.2f}M MACs  {name}", flush=True)
    if args.output is not None:
        args.output.write_text(strict_json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
