"""benchmarks/train_throughput.py: training speed per setting and network, CI-sized."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion

BENCHMARK = "train_throughput"  # benchmarks/train_throughput.py, loaded by the bench fixture (conftest.py)


def test_each_network_is_timed_in_each_setting(bench: ModuleType, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=200, n_test=20)
    settings = ["batched + channels_last", "batched + channels_last + bf16 autocast"]
    speeds = bench.main(["--rounds", "1", "--batches", "2", "--batch-size", "16", "--data-dir", str(data),
                         "--models", "two_conv_cnn", "--settings", *settings])
    assert list(speeds) == ["two_conv_cnn"] and list(speeds["two_conv_cnn"]) == settings
    assert all(len(v) == 1 and v[0] > 0 for v in speeds["two_conv_cnn"].values())
    assert "| two_conv_cnn | batched + channels_last + bf16 autocast |" in capsys.readouterr().out


def test_a_bad_network_name_ends_before_any_timing(bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="no_such_net"):
        bench.main(["--models", "no_such_net"])
