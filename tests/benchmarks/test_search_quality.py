"""benchmarks/search_quality.py on a synthetic table over a small space."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARK = "search_quality"  # benchmarks/search_quality.py, loaded by the bench fixture (conftest.py)


def test_run_quality_shapes_and_values(bench: ModuleType, tmp_path: Path) -> None:
    space = bench.SyntheticSpace(depth=4, ops=3)  # 81 architectures
    table = bench.synthetic_table(space, tmp_path / "table.csv", seed=0)
    assert len(bench.all_architectures(space)) == 81
    numbers = bench.run_quality(table, space, ["random", "evolution", "rl"], num_queries=30, seeds=[0, 1])
    assert numbers["budgets"] == [10, 25, 30]
    assert set(numbers["strategies"]) == {"random", "evolution", "rl"}
    for stats in numbers["strategies"].values():
        assert len(stats["mean"]) == len(stats["std"]) == 3
        assert np.array(stats["runs"]).shape == (2, 3)
        assert all(0.0 < m < 1.0 for m in stats["mean"]) and all(s >= 0 for s in stats["std"])
        assert all(np.diff(np.array(stats["runs"]), axis=1).ravel() >= -0.05)  # test acc of a val-best: noisy
    text = bench.format_quality(numbers)
    assert "random" in text and "±" in text
    png = bench.plot_quality(numbers, tmp_path / "q.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_more_queries_find_better_architectures(bench: ModuleType, tmp_path: Path) -> None:
    space = bench.SyntheticSpace(depth=3, ops=3)  # 27 architectures: 27 queries see them all
    table = bench.synthetic_table(space, tmp_path / "table.csv", seed=1, noise=0.0)
    numbers = bench.run_quality(table, space, ["random"], num_queries=27, seeds=[0], budgets=[1, 27])
    first, full = numbers["strategies"]["random"]["mean"]
    with table.open() as handle:
        best = max(float(row["test_acc"]) for row in csv.DictReader(handle))
    assert full == pytest.approx(best, abs=1e-6) and full >= first
    assert bench.default_budgets(100) == [10, 25, 50, 100]
    assert "hyperband" not in bench.sample_based_strategies()
