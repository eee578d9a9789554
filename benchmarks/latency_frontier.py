"""Accuracy against ExecuTorch latency near a latency bound: what the networks a bound admits reach when trained.

A search ranks candidates on a short proxy; this script measures what its choice is read against. It exports
every network to ExecuTorch (XNNPACK) and times them side by side at batch 1 on one thread, ``--rounds`` times
in turn (as ``flagship_latency.py``). With ``--space`` it then takes, among the architectures of the preset's
space no slower than ``--bound`` (one of ``--models``, e.g. the 2-conv CNN) and within the preset's
``max_params`` and ``max_macs``, the ``--top`` with the most MACs: those with the most computation the bound
allows. Each of them and each ``--model`` is trained with the preset's final recipe for ``--epochs`` epochs with
one seed, ``--jobs`` at a time in one-thread worker processes (as ``seed_spread.py``: a model given by name
trains exactly as ``seed_spread.py --model NAME`` with that seed), and tested once. It prints one table,
fastest first, marking the networks on the accuracy-latency frontier (none faster is as accurate).
``--output`` writes the figures to JSON, ``--plot`` a scatter of accuracy against latency.

Usage::

    python benchmarks/latency_frontier.py --preset fashion_mnist_latency --models two_conv_cnn resnet_small \\
        --space --bound two_conv_cnn --top 8 --epochs 24 --plot frontier.png
    python benchmarks/latency_frontier.py --models two_conv_cnn --quick --epochs 1   # CI-sized
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.config import build_node
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.objectives.constraints import Constraint, parse_constraints
from lightning_nas.results import strict_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flagship_latency import measure, space_architectures  # sibling scripts
from seed_spread import add_shared_arguments, build_model, compose_config, run_jobs


@dataclass
class Network:
    """One row of the table: how the network was given and what it measured."""

    name: str
    spec: str  # a model name for seed_spread's build_model, or the arch.json written for a space architecture
    seed_key: str  # what its training seed is derived from: the name given, or the architecture's digest
    params: int
    macs: int
    latency_ms: float = 0.0
    rounds_ms: tuple[float, ...] = ()
    test_acc: float | None = None
    train_seconds: float | None = None
    frontier: bool = False


def collect(args: argparse.Namespace, cfg: Any, shape: tuple[int, ...], classes: int,
            folder: Path) -> tuple[dict[str, Network], dict[str, nn.Module]]:
    """Every ``--model`` and (with ``--space``) every architecture of the preset's space, built; the space's
    architectures are written to ``folder`` as arch.json files for the training workers."""
    rows: dict[str, Network] = {}
    modules: dict[str, nn.Module] = {}

    def add(name: str, spec: str, seed_key: str, model: nn.Module) -> None:
        rows[name] = Network(name, spec, seed_key, count_params(model), count_macs(model, shape))
        modules[name] = model

    for name in args.models:
        add(name, name, name, build_model(name, cfg, shape, classes))
    if args.space:
        space = build_node(cfg, "search_space", input_shape=shape, num_classes=classes)
        given = {space.describe(Architecture.load(name)) for name in args.models if Path(name).is_file()}
        for arch in space_architectures(space, args.max_archs):
            described = space.describe(arch)
            if described not in given:  # an arch.json of --models is not timed or trained twice
                arch.save(folder / f"{arch.digest()}.json")
                add(f"{arch.digest()}: {described}", str(folder / f"{arch.digest()}.json"), arch.digest(),
                    space.build(arch))
    return rows, modules


def size_bounds(cfg: Any) -> list[Constraint]:
    """The preset's bounds on parameters and MACs (``objective.constraints.max_params`` / ``max_macs``)."""
    constraints = OmegaConf.to_container(cfg.objective.get("constraints") or {}, resolve=True)
    assert isinstance(constraints, dict)
    return parse_constraints({k: v for k, v in constraints.items() if k in ("max_params", "max_macs")})


def choose(rows: dict[str, Network], args: argparse.Namespace, bounds: list[Constraint]) -> list[str]:
    """The networks to train: every ``--model``, then the ``--top`` space architectures with the most MACs among
    those no slower than ``--bound`` and within the preset's parameter and MAC bounds."""
    chosen = list(args.models)
    if args.space:
        bound = rows[args.bound].latency_ms

        def admitted_size(row: Network) -> bool:
            return all(c.is_satisfied({"model/params": row.params, "model/macs": row.macs}) for c in bounds)

        admitted = [row for name, row in rows.items()
                    if name not in args.models and row.latency_ms <= bound and admitted_size(row)]
        admitted.sort(key=lambda row: (-row.macs, row.latency_ms))
        chosen += [row.name for row in admitted[:args.top]]
    return chosen


def train(rows: dict[str, Network], names: list[str], cfg: Any, args: argparse.Namespace, folder: Path) -> None:
    """Train and test each named network (one seed, the preset's final recipe), filling in its accuracy."""
    config_file = str(folder / "config.yaml")
    OmegaConf.save(cfg, config_file)
    jobs = [(rows[name].spec, config_file, args.seed, args.epochs, rows[name].seed_key) for name in names]
    for name, run in zip(names, run_jobs(jobs, args.jobs), strict=True):
        rows[name].test_acc, rows[name].train_seconds = run.test_acc, run.seconds
        print(f"trained {name}: test accuracy {run.test_acc:.4f} ({run.seconds:.0f} s)", flush=True)


def mark_frontier(trained: list[Network]) -> None:
    """Flag each trained network that no faster (or equally fast) one matches in accuracy."""
    best = -1.0
    for row in sorted(trained, key=lambda r: (r.latency_ms, -(r.test_acc or 0.0))):
        assert row.test_acc is not None
        row.frontier = row.test_acc > best
        best = max(best, row.test_acc)


def plot(trained: list[Network], path: Path, bound_ms: float | None, models: list[str]) -> None:
    """Scatter of test accuracy against latency: the given models as squares labelled by name (an arch.json by
    its file name), the space's architectures as dots labelled by digest, the frontier as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, row in enumerate(sorted(trained, key=lambda r: r.latency_ms)):
        given = row.name in models
        ax.scatter(row.latency_ms, row.test_acc, marker="s" if given else "o", color="C1" if given else "C0")
        label = (Path(row.name).stem if Path(row.name).suffix == ".json" else row.name) if given else \
            row.name.split(":", 1)[0]
        ax.annotate(label, (row.latency_ms, row.test_acc), fontsize=7, xytext=(3, 3 if index % 2 else -9),
                    textcoords="offset points")  # neighbours' labels above and below their points
    frontier = sorted((r for r in trained if r.frontier), key=lambda r: r.latency_ms)
    ax.step([r.latency_ms for r in frontier], [r.test_acc for r in frontier], where="post", color="C2", lw=1,
            label="frontier")
    if bound_ms is not None:
        ax.axvline(bound_ms, color="grey", ls="--", lw=1, label="bound")
    ax.set_xlabel("ExecuTorch latency (ms, XNNPACK, 1 thread, batch 1)")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["two_conv_cnn", "resnet_small"],
                        help="baseline names, resnet_small:W1,W2,...[/P] or arch.json files of the preset's space")
    parser.add_argument("--preset", default="fashion_mnist_latency", help="experiment preset: data, space, recipe")
    parser.add_argument("--space", action="store_true", help="also train the --top largest architectures of the "
                        "preset's space within --bound")
    parser.add_argument("--bound", default=None, help="with --space: the model of --models whose latency bounds it")
    parser.add_argument("--top", type=int, default=8, help="with --space: how many architectures within the bound")
    parser.add_argument("--max-archs", type=int, default=100, help="the most architectures --space may time")
    parser.add_argument("--epochs", type=int, default=24, help="final-recipe epochs per network")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (as seed_spread.py's seeds)")
    parser.add_argument("--jobs", type=int, default=2, help="networks trained at once (one thread each)")
    parser.add_argument("--rounds", type=int, default=3, help="times each .pte is timed, in turn with the others")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per round")
    parser.add_argument("--plot", type=Path, default=None, help="write a scatter of accuracy against latency")
    add_shared_arguments(parser)
    args = parser.parse_args(argv)
    for key in ("top", "max_archs", "epochs", "jobs", "rounds", "repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    if args.seed < 0:
        parser.error(f"--seed must be 0 or more, got {args.seed}")
    if args.space and args.bound not in args.models:
        parser.error(f"--space needs --bound, one of --models {args.models}, got {args.bound!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    cfg = compose_config(args.preset, args.quick, args.overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        datamodule = build_node(cfg, "data")  # shapes only: no data is loaded before the training workers
        shape, classes = tuple(int(s) for s in datamodule.input_shape), int(datamodule.num_classes)
        rows, modules = collect(args, cfg, shape, classes, folder)
        for name, values in measure(modules, shape, args.rounds, args.repeats).items():
            rows[name].latency_ms, rows[name].rounds_ms = statistics.median(values), tuple(values)
        names = choose(rows, args, size_bounds(cfg))
        print(f"timed {len(rows)} networks; training {len(names)} for {args.epochs} epochs", flush=True)
        train(rows, names, cfg, args, folder)
    trained = [rows[name] for name in names]
    mark_frontier(trained)
    bound_ms = rows[args.bound].latency_ms if args.bound in rows else None
    print(f"{'latency ms':>10}  {'test acc':>8}  {'params':>8}  {'MACs':>7}  frontier  network")
    for row in sorted(trained, key=lambda r: r.latency_ms):
        print(f"{row.latency_ms:10.3f}  {row.test_acc:8.4f}  {row.params / 1e3:7.1f}K  {row.macs / 1e6:6.2f}M  "
              f"{'yes' if row.frontier else '':>8}  {row.name}")
    print(f"{args.preset} final recipe, {args.epochs} epochs, seed {args.seed}; {time.perf_counter() - started:.0f} s "
          "in all", flush=True)
    result = {"preset": args.preset, "epochs": args.epochs, "seed": args.seed, "quick": args.quick,
              "overrides": args.overrides, "bound": args.bound, "bound_ms": bound_ms, "rounds": args.rounds,
              "timed": len(rows), "networks": [asdict(row) for row in sorted(trained, key=lambda r: r.latency_ms)]}
    for row in result["networks"]:
        row.pop("spec")  # a temporary path for the space's architectures
    if args.output is not None:
        args.output.write_text(strict_json.dumps(result, indent=2) + "\n")
    if args.plot is not None:
        plot(trained, args.plot, bound_ms, args.models)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
