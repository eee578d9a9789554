"""benchmarks/search_quality.py on a synthetic table over a small space."""

from __future__ import annotations

import csv
import json
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


def test_nb201_string_keyed_table_every_kind_of_strategy(bench: ModuleType, tmp_path: Path) -> None:
    """The shipped string-keyed table: sample-based, multi-fidelity and auto runs, against cost, ddof=1, JSON."""
    from lightning_nas.spaces.nb201 import NB201Space

    space = NB201Space((3, 32, 32), 10)
    numbers = bench.run_quality("nb201_synthetic", space, ["random", "hyperband", "bohb", "auto"], num_queries=12,
                                seeds=[0, 1, 2], budgets=[4, 8, 12])
    assert numbers["fidelities"] == [4, 12, 36, 108, 200] and numbers["unit_s"] > 0
    for name, stats in numbers["strategies"].items():
        runs = np.array(stats["runs"])
        assert runs.shape == (3, 3) and np.isfinite(runs[:, -1]).all(), name
        assert stats["std"][-1] == pytest.approx(np.std(runs[:, -1], ddof=1))
        assert all(w > 0 for w in stats["wall_s"])
    assert numbers["strategies"]["auto"]["chosen"] == "BayesianStrategy"  # 12 < MIN_MULTI_FIDELITY_BUDGET
    hyperband = numbers["strategies"]["hyperband"]["evaluations"]
    assert min(hyperband) > 12  # cheap low-fidelity jobs: more evaluations than full-cost budget units
    text = bench.format_quality(numbers)
    assert "wall s/run" in text and "bohb" in text
    png = bench.plot_quality(numbers, tmp_path / "q.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_writes_json_and_png_and_missing_rows_are_one_line(bench: ModuleType, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--space", "synthetic", "--strategies", "random", "--queries", "10", "--seeds", "2",
                "--plot", str(tmp_path / "q.png")])
    numbers = json.loads((tmp_path / "q.json").read_text())
    assert numbers["budgets"] == [10.0] and len(numbers["strategies"]["random"]["runs"]) == 2
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
    partial = tmp_path / "partial.csv"
    partial.write_text("arch,val_acc,test_acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,0.1,0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--table", str(partial), "--strategies", "random", "--queries", "5", "--seeds", "1",
                    "--plot", str(tmp_path / "p.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not in the table" in err


def test_missing_table_file_is_one_line(bench: ModuleType, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--table", str(tmp_path / "nb201_cifar10.csv"), "--strategies", "random", "--queries", "5",
                    "--seeds", "1", "--plot", str(tmp_path / "p.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--table" in err and "nb201_cifar10.csv" in err


@pytest.mark.slow
def test_shipped_table_regenerates_byte_identical(tmp_path: Path) -> None:
    import importlib.util

    from lightning_nas.evaluators.tabular import SHIPPED_TABLES

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "make_nb201_table.py"
    spec = importlib.util.spec_from_file_location("make_nb201_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.write(module.generate(0), tmp_path / "t.csv.gz")
    assert out.read_bytes() == SHIPPED_TABLES["nb201_synthetic"].read_bytes()
