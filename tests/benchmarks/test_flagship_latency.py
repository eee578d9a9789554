"""benchmarks/flagship_latency.py: the flagship's networks exported and timed side by side."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = "flagship_latency"  # benchmarks/flagship_latency.py, loaded by the bench fixture (conftest.py)


def test_every_model_is_timed_in_every_round(bench: ModuleType, tmp_path: Path) -> None:
    arch = Path(__file__).resolve().parents[2] / "benchmarks" / "fashion_mnist_archs" / "flagship_363534c936ee.json"
    out = tmp_path / "latency.json"
    result = bench.main(["--models", str(arch), "two_conv_cnn", "--rounds", "2", "--repeats", "3",
                         "--output", str(out)])
    assert sorted(result["models"]) == sorted([str(arch), "two_conv_cnn"])  # fastest first, not in given order
    for figures in result["models"].values():
        assert len(figures["rounds_ms"]) == 2 and all(ms > 0 for ms in figures["rounds_ms"])
        assert min(figures["rounds_ms"]) <= figures["median_ms"] <= max(figures["rounds_ms"])
    assert json.loads(out.read_text())["models"]["two_conv_cnn"]["median_ms"] == pytest.approx(
        result["models"]["two_conv_cnn"]["median_ms"])


def test_bad_rounds_and_models_are_named(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    assert "--rounds must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no_such_net"):
        bench.main(["--models", "no_such_net"])


def test_space_times_every_architecture_of_the_preset_s_space(bench: ModuleType) -> None:
    overrides = ["search_space.width_multipliers=[0.75,1.0]", "search_space.depth_multipliers=[1.0]",
                 "search_space.block_types=[conv]"]
    result = bench.main(["--models", "two_conv_cnn", "--space", "--rounds", "1", "--repeats", "2", *overrides])
    names = list(result["models"])
    assert len(names) == 3 and "two_conv_cnn" in names
    described = sorted(name.split(": ", 1)[1] for name in names if name != "two_conv_cnn")
    assert "width_mult=0.75" in described[0] and "width_mult=1.0" in described[1]
    medians = [figures["median_ms"] for figures in result["models"].values()]
    assert medians == sorted(medians)  # fastest first
    figures = result["models"]["two_conv_cnn"]
    assert (figures["params"], figures["macs"]) == (50_282, 3_869_824)


def test_space_refuses_more_architectures_than_max_archs(bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="more than --max-archs 2 architectures"):
        bench.main(["--models", "two_conv_cnn", "--space", "--max-archs", "2"])
