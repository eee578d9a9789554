"""ExecuTorch latency of the flagship's networks, side by side: the searched network against the baselines.

The flagship's latency target compares the searched network with the 2-conv CNN, and one full run measures
each ``.pte`` once. This script exports each ``--model`` (a baseline's name, ``resnet_small:W1,W2,...[/P]`` or an
``arch.json`` of the preset's space, as in ``seed_spread.py``) to ExecuTorch with XNNPACK, then times every
``.pte`` at batch 1 on one thread, ``--rounds`` times in turn (so that a busy moment of the machine hits each
network alike), and prints each one's median over the rounds' medians. Latency does not depend on the
weights, so the networks are freshly initialised. With ``--output FILE`` the figures also go to a JSON file.

Usage::

    python benchmarks/flagship_latency.py    # the latest flagship choice and the three baselines
    python benchmarks/flagship_latency.py --models two_conv_cnn outputs/<run>/best/arch.json --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from lightning_nas.config import build_node
from lightning_nas.export import export_model
from lightning_nas.export.profiler import profile_pte
from lightning_nas.results import strict_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_spread import build_model, compose_config  # a sibling script

DEFAULT_MODELS = [str(Path(__file__).resolve().parent / "fashion_mnist_archs" / "flagship_b2a0e835c9e7.json"),
                  "two_conv_cnn", "resnet_small", "mobilenet_v3_small"]


def measure(models: list[str], cfg: Any, rounds: int, repeats: int) -> dict[str, list[float]]:
    """Each model's median latency (ms) in every round, the models timed in turn within a round."""
    datamodule = build_node(cfg, "data")  # the preset's input shape and classes, known before any data loads
    shape, classes = tuple(int(s) for s in datamodule.input_shape), int(datamodule.num_classes)
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for name in models:
            model = build_model(name, cfg, shape, classes).eval()
            files[name] = export_model(model, torch.zeros(1, *shape), Path(folder) / f"{len(files)}.pte").path
        medians: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, path in files.items():
                medians[name].append(profile_pte(path, shape, repeats=repeats, warmup=3, threads=1).median_ms)
    return medians


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="baseline names, resnet_small:... or "
                        "arch.json files of the preset's space (default: the latest flagship choice and the baselines)")
    parser.add_argument("--preset", default="fashion_mnist", help="experiment preset giving the search space")
    parser.add_argument("--rounds", type=int, default=5, help="times each .pte is timed, in turn with the others")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per round")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the preset")
    args = parser.parse_args(argv)
    for key in ("rounds", "repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be a positive integer, got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    cfg = compose_config(args.preset, False, args.overrides)
    medians = measure(args.models, cfg, args.rounds, args.repeats)
    result: dict[str, Any] = {"preset": args.preset, "rounds": args.rounds, "repeats": args.repeats, "models": {}}
    for name, values in medians.items():
        result["models"][name] = {"median_ms": statistics.median(values), "rounds_ms": values}
        print(f"{name}: {statistics.median(values):.3f} ms (rounds {min(values):.3f}-{max(values):.3f})", flush=True)
    if args.output is not None:
        args.output.write_text(strict_json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
