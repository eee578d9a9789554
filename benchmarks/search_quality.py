"""Search quality of every strategy on a tabular benchmark (no training), against cost.

Every sample-based strategy (random, evolution, nsga2, rl, bayesian, nni, ...), the multi-fidelity
ones (asha, hyperband, bohb: rungs are the table's ``<column>@<epochs>`` fidelities) and ``auto``
run over each seed with a :class:`TabularEvaluator`. Cost is the table's ``train_time_s`` (at the
fidelity evaluated; a promotion costs the difference), in units of the mean cost of one
evaluation at the search fidelity (one query per unit for a table without costs). At each budget,
the *incumbent* is the architecture with the best validation accuracy at the highest fidelity
evaluated so far; its *test* accuracy (top fidelity) is reported. Prints mean±std (ddof=1) over
seeds per budget and the wall time per run; writes the numbers as JSON and the anytime curves
(test accuracy of the incumbent against cumulative cost) as a PNG.

The default table is the shipped ``nb201_synthetic`` over the ``nb201`` space (15,625 cells,
fidelities 4..200 epochs; see ``benchmarks/make_nb201_table.py``); tables keyed by NAS-Bench-201
strings or by architecture JSON are both read (``--key auto``). The table format is documented in
:mod:`lightning_nas.evaluators.tabular`. ``--space synthetic`` without ``--table`` generates a small
synthetic table (4**6 architectures)::

    python benchmarks/search_quality.py --queries 100 --seeds 10 --budgets 25 50 100
    python benchmarks/search_quality.py --table nb201_cifar10.csv --space nb201 --metric val_acc@12
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
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import EvaluatorConfigError
from lightning_nas.evaluators.tabular import TabularEvaluator
from lightning_nas.nn import LayerChoice
from lightning_nas.results import strict_json
from lightning_nas.results.history import History, Record
from lightning_nas.search import run_search
from lightning_nas.spaces import SPACES
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies import STRATEGIES, Strategy
from lightning_nas.strategies.auto import AutoStrategy
from lightning_nas.strategies.hyperband import rung_epochs

log = logging.getLogger("search_quality")

NOT_SAMPLE_BASED = frozenset({"hyperband", "bohb", "darts", "supernet", "spos"})
"""Registered strategies that do not run under ``run_search`` over a table (own driver or weight sharing)."""

MULTI_FIDELITY: dict[str, tuple[str, dict[str, Any]]] = {
    "asha": ("hyperband", {"mode": "asha"}),
    "hyperband": ("hyperband", {"mode": "hyperband"}),
    "bohb": ("bohb", {}),
}
"""Multi-fidelity entries: registered strategy and settings; rungs come from the table's fidelities."""

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


OPTIONAL_STRATEGY_MODULES = ("rl", "bayesian", "hyperband", "bohb", "nni_tuner")
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


class CostMeter:
    """Cost of evaluations in units of one evaluation at the search fidelity (see the module docstring)."""

    def __init__(self, evaluator: TabularEvaluator) -> None:
        mean = evaluator.mean_cost_s()
        self.has_costs = mean > 0
        self.unit = mean if self.has_costs else 1.0
        self.top = float(evaluator.fidelities[-1]) if evaluator.fidelities else 1.0

    def __call__(self, result: EvalResult) -> float:
        if self.has_costs:
            return result.duration_s / self.unit
        return result.metrics.get("train/epochs_budget", self.top) / self.top


class BudgetedEvaluator:
    """Passes evaluations through and ends ``strategy`` once ``budget`` cost units are spent."""

    def __init__(self, evaluator: TabularEvaluator, meter: CostMeter, budget: float) -> None:
        self.evaluator, self.meter, self.budget = evaluator, meter, budget
        self.strategy: Strategy | None = None
        self.spent = 0.0

    def _spend(self, result: EvalResult) -> EvalResult:
        self.spent += self.meter(result)
        if self.spent >= self.budget and self.strategy is not None:
            self.strategy.num_samples = self.strategy.num_told + 1  # this evaluation is its last
        return result

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return self._spend(self.evaluator.evaluate(space, arch))

    def evaluate_at(self, space: SearchSpace, arch: Architecture, epochs: int,
                    resume_from: Any) -> tuple[EvalResult, Any]:
        result, state = self.evaluator.evaluate_at(space, arch, epochs, resume_from)
        return self._spend(result), state

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        return self.evaluator.test(space, arch)


@dataclass
class Run:
    """One strategy, one seed: cumulative cost after each evaluation and the incumbent's test accuracy then."""

    costs: list[float]
    tests: list[float]
    wall_s: float
    strategy: str

    def at(self, budget: float) -> float:
        """The incumbent's test accuracy once ``budget`` cost units are spent (NaN before any evaluation)."""
        index = int(np.searchsorted(self.costs, budget + 1e-9, side="right")) - 1
        return self.tests[index] if index >= 0 else math.nan


def incumbent_trajectory(records: Sequence[Record], evaluator: TabularEvaluator, space: SearchSpace,
                         meter: CostMeter) -> tuple[list[float], list[float]]:
    """Cumulative cost and incumbent test accuracy after each record (highest fidelity first, then validation)."""
    costs, tests, spent = [], [], 0.0
    best: tuple[float, float] = (-math.inf, -math.inf)
    test = math.nan
    for record in records:
        spent += meter(record.result)
        val = record.result.metrics.get("search/val_acc", math.nan) if record.result.ok else math.nan
        key = (record.result.metrics.get("train/epochs_budget", meter.top), val)
        if math.isfinite(val) and key > best:
            best, test = key, evaluator.test(space, record.arch).get("test/acc", math.nan)
        costs.append(spent)
        tests.append(test)
    return costs, tests


def _ladder(evaluator: TabularEvaluator) -> list[int]:
    """The Hyperband rungs (eta 3) of the table's fidelities; ``ValueError`` when they do not form one."""
    if len(evaluator.fidelities) < 2:
        raise ValueError(f"the table has no fidelities (columns <name>@<epochs>); got {evaluator.fidelities}")
    ladder = rung_epochs(evaluator.fidelities[0], evaluator.fidelities[-1], 3)
    if not set(ladder) <= set(evaluator.fidelities):
        raise ValueError(f"the fidelities {evaluator.fidelities} do not hold the eta=3 ladder {ladder}")
    return ladder


def build(name: str, space: SearchSpace, evaluator: TabularEvaluator, budget: float, seed: int,
          kwargs: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy ``name`` for a budget of ``budget`` evaluations at the search fidelity."""
    options = {**DEFAULT_KWARGS.get(name, {}), **dict(kwargs or {})}
    if name == "auto":
        return AutoStrategy(num_samples=math.ceil(budget), seed=seed).build(space, evaluator)
    if name in MULTI_FIDELITY:
        registered, settings = MULTI_FIDELITY[name]
        ladder = _ladder(evaluator)
        options = {"min_epochs": ladder[0], "max_epochs": ladder[-1], "eta": 3, **settings, **options}
        return STRATEGIES.get(registered)(num_samples=10**7, seed=seed, **options)  # ended by the cost budget
    return STRATEGIES.get(name)(num_samples=math.ceil(budget), seed=seed, **options)


def run_one(name: str, space: SearchSpace, evaluator: TabularEvaluator, budget: float, seed: int,
            kwargs: Mapping[str, Any] | None = None) -> Run:
    """One strategy, one seed, until ``budget`` cost units are spent (or its own budget is)."""
    started = time.perf_counter()
    meter = CostMeter(evaluator)
    budgeted = BudgetedEvaluator(evaluator, meter, budget)
    strategy = budgeted.strategy = build(name, space, evaluator, budget, seed, kwargs)
    history = run_search(space, strategy, budgeted, History(), progress=False)  # type: ignore[arg-type]
    costs, tests = incumbent_trajectory(list(history), evaluator, space, meter)
    return Run(costs, tests, time.perf_counter() - started, type(strategy).__name__)


def _stats(matrix: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and sample std (ddof=1) per column, ignoring NaN (std NaN with fewer than two values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
        std = np.nanstd(matrix, axis=0, ddof=1) if matrix.shape[0] > 1 else np.full(matrix.shape[1], math.nan)
    return mean.tolist(), std.tolist()


def run_quality(
    table: str | Path,
    space: SearchSpace,
    strategies: Sequence[str] | None = None,
    num_queries: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[float] | None = None,
    metric: str = "val_acc",
    strategy_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    key: str = "auto",
    fidelity: int | None = None,
) -> dict[str, Any]:
    """Run every strategy over every seed; the numbers behind the printed table, the JSON and the plot.

    Args:
        table: the tabular benchmark file (CSV or JSON, optionally gzipped) or a shipped table's name.
        space: the search space the table covers.
        strategies: names (default: every sample-based one, the multi-fidelity ones when the table has
            fidelities, and ``auto``); one whose optional dependency is missing is skipped with a warning.
        num_queries: the largest budget, in evaluations at the search fidelity (cost units).
        seeds: strategy seeds.
        budgets: cost units to report at (default :func:`default_budgets`).
        metric: the table column used as validation accuracy.
        strategy_kwargs: extra constructor arguments per strategy name.
        key: the table's key notation (``auto``, ``json``, ``nb201``).
        fidelity: the fidelity sample-based strategies search at (default: the table's highest).

    Returns:
        ``{"budgets", "grid", "unit_s", "optimum", "strategies": {name: {"mean", "std", "runs", "curve_mean",
        "curve_std", "wall_s", "evaluations", "chosen"}}}``.

    Raises:
        EvaluatorConfigError: the table does not cover the space.
    """
    evaluator = TabularEvaluator(str(table), metric=metric, key=key, fidelity=fidelity)
    meter = CostMeter(evaluator)
    points = [float(b) for b in budgets] if budgets is not None else [float(b) for b in default_budgets(num_queries)]
    top = max(points)
    grid = sorted({*np.geomspace(min(1.0, top), top, 40).round(3).tolist(), *points})
    results: dict[str, Any] = {}
    for name in strategies if strategies is not None else default_strategies(evaluator):
        try:
            runs = [run_one(name, space, evaluator, top, seed, (strategy_kwargs or {}).get(name)) for seed in seeds]
        except (ImportError, ValueError) as error:
            if isinstance(error, EvaluatorConfigError):
                raise
            log.warning("skipping strategy %r: %s", name, str(error).splitlines()[0])
            continue
        at_budgets = np.array([[run.at(b) for b in points] for run in runs], dtype=np.float64)
        curves = np.array([[run.at(b) for b in grid] for run in runs], dtype=np.float64)
        curves[:, np.isnan(curves).any(axis=0)] = math.nan  # the curve starts once every seed has an incumbent
        mean, std = _stats(at_budgets)
        curve_mean, curve_std = _stats(curves)
        results[name] = {"mean": mean, "std": std, "runs": at_budgets.tolist(), "curve_mean": curve_mean,
                         "curve_std": curve_std, "wall_s": [run.wall_s for run in runs],
                         "evaluations": [len(run.costs) for run in runs], "chosen": runs[0].strategy}
    optimum = max(row.get("test_acc", row.get(f"test_acc@{meter.top:g}", math.nan)) for row in evaluator.rows.values())
    return {"budgets": points, "grid": grid, "unit_s": meter.unit if meter.has_costs else None, "optimum": optimum,
            "fidelities": evaluator.fidelities, "strategies": results}


def default_strategies(evaluator: TabularEvaluator) -> list[str]:
    """Every sample-based strategy, the multi-fidelity ones when the table has fidelities, and ``auto``."""
    names = sample_based_strategies()
    if len(evaluator.fidelities) >= 2:
        names += list(MULTI_FIDELITY)
    return [*names, "auto"]


def plot_quality(numbers: Mapping[str, Any], path: str | Path) -> Path:
    """Anytime curves: mean ± standard error of the incumbent's test accuracy against cumulative cost (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array(numbers.get("grid", numbers["budgets"]), dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = [*plt.get_cmap("tab10").colors, "black", "crimson", "darkgoldenrod", "teal"]
    lows: list[float] = []
    for i, (name, stats) in enumerate(numbers["strategies"].items()):
        mean = np.array(stats.get("curve_mean", stats["mean"]), dtype=np.float64)
        sem = np.nan_to_num(np.array(stats.get("curve_std", stats["std"]), dtype=np.float64))
        sem /= math.sqrt(max(1, len(stats["runs"])))
        shown = np.isfinite(mean)
        if not shown.any():
            continue
        color = colors[i % len(colors)]
        ax.plot(grid[shown], mean[shown], label=name, color=color, linestyle="--" if name == "auto" else "-")
        ax.fill_between(grid[shown], (mean - sem)[shown], (mean + sem)[shown], color=color, alpha=0.1)
        lows.append(float(np.nanmin(mean[shown][len(mean[shown]) // 3:])))
    optimum = numbers.get("optimum")
    if optimum is not None and math.isfinite(optimum):
        ax.axhline(optimum, color="black", linewidth=0.8, linestyle=":", label="table optimum")
    if (grid > 0).all() and grid.size > 1:
        ax.set_xscale("log")
    if lows and optimum is not None and math.isfinite(optimum):
        ax.set_ylim(min(lows) - 0.002, optimum + 0.002)
    unit = "evaluations" if numbers.get("unit_s") is None else f"full evaluations (1 = {numbers['unit_s']:.0f} s)"
    ax.set(xlabel=f"cumulative cost, {unit}", ylabel="test accuracy of the incumbent (mean ± s.e.)",
           title=f"search quality over {len(next(iter(numbers['strategies'].values()))['runs'])} seeds"
           if numbers["strategies"] else "search quality")
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def format_quality(numbers: Mapping[str, Any]) -> str:
    """A text table: one row per strategy, ``mean±std`` (ddof=1) per budget, then wall seconds per run."""
    header = f"{'strategy':<15}" + "".join(f"{b:>17g}" for b in numbers["budgets"]) + f"{'wall s/run':>12}"
    rows = [header]
    for name, stats in numbers["strategies"].items():
        cells = "".join(f"{m:>10.4f}±{s:<6.4f}" for m, s in zip(stats["mean"], stats["std"], strict=True))
        wall = float(np.mean(stats["wall_s"])) if stats.get("wall_s") else math.nan
        rows.append(f"{name:<15}{cells}{wall:>12.2f}")
    return "\n".join(rows)


def _space_from_args(args: argparse.Namespace) -> SearchSpace:
    if args.space == "synthetic":
        return SyntheticSpace()
    shape = [int(s) for s in args.input_shape.split(",")]
    return SPACES.get(args.space)(shape, args.num_classes, **json.loads(args.space_kwargs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", help="CSV/JSON table or a shipped table's name (default: nb201_synthetic; "
                                        "a generated one with --space synthetic)")
    parser.add_argument("--space", default="nb201", help="registered space name, or 'synthetic'")
    parser.add_argument("--space-kwargs", default="{}", help="JSON constructor arguments of the space")
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--metric", default="val_acc")
    parser.add_argument("--key", default="auto", help="table key notation: auto, json or nb201")
    parser.add_argument("--fidelity", type=int, help="epochs sample-based strategies search at (default: highest)")
    parser.add_argument("--strategies", nargs="*", help="default: every strategy (see the module docstring)")
    parser.add_argument("--queries", type=int, default=100, help="largest budget, in evaluations (cost units)")
    parser.add_argument("--budgets", type=float, nargs="*", help="budgets to report at (default 10, 25, 50, ...)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--plot", default="search_quality.png")
    parser.add_argument("--json", default=None, help="numbers as JSON (default: the plot's name with .json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    space = _space_from_args(args)
    table = args.table or ("nb201_synthetic" if args.space != "synthetic" else
                           synthetic_table(space, Path(args.plot).with_suffix(".csv")))
    try:
        numbers = run_quality(table, space, args.strategies, args.queries, range(args.seeds), args.budgets,
                              metric=args.metric, key=args.key, fidelity=args.fidelity)
    except (EvaluatorConfigError, ValueError) as error:
        parser.exit(2, f"search_quality: error: {error}\n")
    except FileNotFoundError as error:
        parser.exit(2, f"search_quality: error: --table: no such file or shipped table: {error.filename}\n")
    print(format_quality(numbers))
    json_path = Path(args.json or Path(args.plot).with_suffix(".json"))
    json_path.write_text(strict_json.dumps(numbers, indent=1) + "\n")
    print(f"json: {json_path}\nplot: {plot_quality(numbers, args.plot)}")


if __name__ == "__main__":
    main()
