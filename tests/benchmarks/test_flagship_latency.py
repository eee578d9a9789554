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
    assert list(result["models"]) == [str(arch), "two_conv_cnn"]
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
