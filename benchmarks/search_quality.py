"""Search quality of every sample-based strategy on a tabular benchmark (no training).

For each registered sample-based strategy (random, evolution, nsga2, rl, bayesian, ...) and each
seed, run ``--queries`` evaluations with a :class:`TabularEvaluator`; at each budget (10, 25, 50,
100, ... up to ``--queries``) take the architecture with the best *validation* accuracy among the
first ``budget`` queries and report its *test* accuracy from the table. Prints mean and std over
seeds per strategy and budget, and saves a plot (PNG).

The table format is documented in :mod:`lightning_nas.evaluators.tabular`. Without ``--table``, a
synthetic table over a small built-in space (4**6 architectures, additive per-decision effects
plus pairwise interactions and noise) is generated, so the script runs anywhere in seconds::

    python benchmarks/search_quality.py --queries 100 --seeds 5
    python benchmarks/search_quality.py --table nb.csv --space efficient_convnet \\
        --space-kwargs '{"stage_channels": [8, 16]}' --input-shape 1,28,28 --num-classes 10
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.tabular import TabularEvaluator
from lightning_nas.nn import LayerChoice
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces import SPACES
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES

log = logging.getLogger("search_quality")

NOT_SAMPLE_BASED = frozenset({"hyperband", "darts", "supernet", "spos"})
"""Registered strategies that do not run under ``run_search`` over a table (own driver or weight sharing)."""

DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    "evolution": {"mode": "aging", "population_size": 10, "tournament_size": 3},
    "nsga2": {"population_size": 10},
}
"""Per-strategy settings suited to budgets of tens to hundreds of queries."""


class SyntheticSpace(SearchSpace):
    """``depth`` decisions of ``ops`` choices each (Identity modules: nothing is trained)."""

    name = "synthetic"

    def __init__(self, input_shape: Sequence[int] = (1, 4, 4), num_classes: int = 2, depth: int = 6,
                 ops: int = 4) -> None:
        super().__init__(list(input_shape), num_classes)
        self.depth, self.ops = depth, ops

    def construct(self) -> nn.Module:
        choices = {f"op{j}": nn.Identity for j in range(self.ops)}
        return nn.Sequential(*(LayerChoice(choices, label=f"layer{i}") for i in range(self.depth)))


def all_architectures(space: SearchSpace) -> list[Architecture]:
    """Every architecture of a (small) space, in decision order."""
    labels = list(space.decisions)
    values = [space.decisions[label].candidates for label in labels]
    return [Architecture(dict(zip(labels, combo, strict=True))) for combo in itertools.product(*values)]


def synthetic_table(space: SearchSpace, path: str | Path, seed: int = 0, noise: float = 0.01) -> Path:
    """Write a CSV table of every architecture of ``space`` with a synthetic accuracy.

    Accuracy is a logistic squash of additive per-choice effects plus pairwise interactions of
    neighbouring decisions; ``val_acc`` and ``test_acc`` add independent noise to it.

    Args:
        space: a space small enough to enumerate.
        path: the CSV file to write.
        seed: seed of the effects and noise.
        noise: standard deviation of the validation/test noise.
    """
    rng = np.random.default_rng(seed)
    labels = list(space.decisions)
    sizes = [len(space.decisions[label].candidates) for label in labels]
    main = [rng.normal(0, 1, size) for size in sizes]
    pair = [rng.normal(0, 0.5, (a, b)) for a, b in itertools.pairwise(sizes)]
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "val_acc", "test_acc", "params"])
        for arch in all_architectures(space):
            idx = [space.decisions[lb].candidates.index(arch[lb]) for lb in labels]
            z = sum(m[i] for m, i in zip(main, idx, strict=True))
            z += sum(p[i, j] for p, (i, j) in zip(pair, itertools.pairwise(idx), strict=True))
            acc = 1.0 / (1.0 + math.exp(-z / math.sqrt(len(labels))))
            val, test = acc + rng.normal(0, noise), acc + rng.normal(0, noise)
            writer.writerow([arch.to_json(), f"{val:.6f}", f"{test:.6f}", sum(idx) + 1])
    return path


OPTIONAL_STRATEGY_MODULES = ("rl", "bayesian", "hyperband")
"""Strategy modules imported (so they register) even if ``lightning_nas.strategies`` does not yet."""


def sample_based_strategies() -> list[str]:
    """Registered strategies that run under :func:`run_search`."""
    for module in OPTIONAL_STRATEGY_MODULES:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"lightning_nas.strategies.{module}")
    return [name for name in STRATEGIES.names() if name not in NOT_SAMPLE_BASED]


def default_budgets(num_queries: int) -> list[int]:
    """10, 25, 50, 100, 250, 500, ... below ``num_queries``, then ``num_queries`` itself."""
    steps = [b * 10**k for k in range(7) for b in (10, 25, 50)]
    return sorted({b for b in steps if b < num_queries} | {num_queries})


def _trajectory(history: History, evaluator: TabularEvaluator, space: SearchSpace,
                budgets: Sequence[int]) -> list[float]:
    """Test accuracy of the validation-best architecture among the first ``b`` queries, per budget."""
    out: list[float] = []
    best_val, best_test = -math.inf, math.nan
    records = list(history)
    for i, record in enumerate(records):
        val = record.result.metrics.get("search/val_acc", math.nan) if record.result.ok else math.nan
        if math.isfinite(val) and val > best_val:
            best_val, best_test = val, evaluator.test(space, record.arch).get("test/acc", math.nan)
        for b in budgets:
            if b == i + 1:
                out.append(best_test)
    return out + [best_test] * (len(budgets) - len(out))  # a strategy that stopped early keeps its best


def run_one(name: str, space: SearchSpace, evaluator: TabularEvaluator, num_queries: int, seed: int,
            budgets: Sequence[int], kwargs: Mapping[str, Any] | None = None) -> list[float]:
    """One strategy, one seed: the best-by-validation test accuracy at each budget."""
    options = {**DEFAULT_KWARGS.get(name, {}), **dict(kwargs or {})}
    strategy = STRATEGIES.get(name)(num_samples=num_queries, seed=seed, **options)
    history = run_search(space, strategy, evaluator, History(), progress=False)
    return _trajectory(history, evaluator, space, budgets)


def run_quality(
    table: str | Path,
    space: SearchSpace,
    strategies: Sequence[str] | None = None,
    num_queries: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[int] | None = None,
    metric: str = "val_acc",
    strategy_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run every strategy over every seed; the numbers behind the printed table and plot.

    Args:
        table: the tabular benchmark file (CSV or JSON).
        space: the search space the table covers.
        strategies: strategy names (default: every registered sample-based one; those whose
            optional dependency is missing are skipped with a warning).
        num_queries: evaluations per run.
        seeds: strategy seeds.
        budgets: query counts to report at (default :func:`default_budgets`).
        metric: the table column used as validation accuracy.
        strategy_kwargs: extra constructor arguments per strategy name.

    Returns:
        ``{"budgets": [...], "strategies": {name: {"mean": [...], "std": [...], "runs": [[...], ...]}}}``.
    """
    evaluator = TabularEvaluator(str(table), metric=metric)
    points = list(budgets) if budgets is not None else default_budgets(num_queries)
    results: dict[str, Any] = {}
    available = sample_based_strategies()
    for name in strategies if strategies is not None else available:
        try:
            runs = [run_one(name, space, evaluator, num_queries, seed, points, (strategy_kwargs or {}).get(name))
                    for seed in seeds]
        except ImportError as error:
            log.warning("skipping strategy %r: %s", name, error)
            continue
        matrix = np.array(runs, dtype=np.float64)
        results[name] = {"mean": matrix.mean(axis=0).tolist(), "std": matrix.std(axis=0).tolist(), "runs": runs}
    return {"budgets": points, "strategies": results}


def plot_quality(numbers: Mapping[str, Any], path: str | Path) -> Path:
    """Mean +- std of test accuracy against queries, one line per strategy (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = np.array(numbers["budgets"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, stats in numbers["strategies"].items():
        mean, std = np.array(stats["mean"]), np.array(stats["std"])
        ax.plot(budgets, mean, marker="o", label=name)
        ax.fill_between(budgets, mean - std, mean + std, alpha=0.2)
    ax.set_xscale("log")
    ax.set(xlabel="queries", ylabel="test accuracy of the validation-best", title="search quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def format_quality(numbers: Mapping[str, Any]) -> str:
    """A text table: one row per strategy, ``mean±std`` per budget."""
    header = f"{'strategy':<12}" + "".join(f"{b:>16}" for b in numbers["budgets"])
    rows = [header]
    for name, stats in numbers["strategies"].items():
        cells = "".join(f"{m:>10.4f}±{s:<5.3f}" for m, s in zip(stats["mean"], stats["std"], strict=True))
        rows.append(f"{name:<12}{cells}")
    return "\n".join(rows)


def _space_from_args(args: argparse.Namespace) -> SearchSpace:
    if args.space == "synthetic":
        return SyntheticSpace()
    shape = [int(s) for s in args.input_shape.split(",")]
    return SPACES.get(args.space)(shape, args.num_classes, **json.loads(args.space_kwargs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", help="CSV/JSON table (default: a synthetic one)")
    parser.add_argument("--space", default="synthetic", help="registered space name, or 'synthetic'")
    parser.add_argument("--space-kwargs", default="{}", help="JSON constructor arguments of the space")
    parser.add_argument("--input-shape", default="1,28,28")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--metric", default="val_acc")
    parser.add_argument("--strategies", nargs="*", help="default: every sample-based strategy")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default="search_quality.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    space = _space_from_args(args)
    table = args.table or synthetic_table(space, Path(args.plot).with_suffix(".csv"))
    numbers = run_quality(table, space, args.strategies, args.queries, range(args.seeds), metric=args.metric)
    print(format_quality(numbers))
    print(f"plot: {plot_quality(numbers, args.plot)}")


if __name__ == "__main__":
    main()
