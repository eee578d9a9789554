"""benchmarks/supernet_scoring.py compares with recorded scores only when they were recorded with the run's
settings and architectures (an untrained supernet stands in for the trained one, to keep it fast)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = "supernet_scoring"  # benchmarks/supernet_scoring.py, loaded by the bench fixture (conftest.py)


@pytest.fixture
def untrained(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train_supernet`` without training: seeded initial weights."""
    from lightning_nas.evaluators.train import seeded
    from lightning_nas.strategies.supernet import SupernetModule

    def untrained_supernet(space: object, args: argparse.Namespace) -> SupernetModule:
        with seeded(args.seed):
            return SupernetModule(space, seed=args.seed)

    monkeypatch.setattr(bench, "train_supernet", untrained_supernet)


@pytest.mark.usefixtures("untrained")
def test_recorded_scores_of_other_settings_are_not_compared(bench: ModuleType, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    quick = ["--num-archs", "4", "--repeats", "1", "--batch-size", "128", "--calibration-batches", "1"]
    bench.main([*quick, "--record", str(baseline)])
    capsys.readouterr()
    bench.main([*quick, "--baseline", str(baseline), "--repeats", "2"])  # repeats only times the passes
    same = capsys.readouterr().out
    assert same.count("Kendall tau vs recorded scores = ") == 4 and "Kendall tau vs recorded scores = 1.0000" in same
    assert "not comparable" not in same

    bench.main([*quick, "--baseline", str(baseline), "--epochs", "3", "--seed", "1"])
    other = capsys.readouterr().out
    assert f"Kendall tau vs {baseline}: not comparable (epochs: recorded 8, this run 3; seed: recorded 0, " \
           "this run 1)" in other
    assert "Kendall tau vs recorded" not in other and other.count("subnets/s wall") == 4

    recorded = json.loads(baseline.read_text())
    del recorded["settings"]["seed"]  # a baseline that does not record the seed: its architectures decide
    baseline.write_text(json.dumps(recorded))
    bench.main([*quick, "--baseline", str(baseline), "--seed", "1"])
    unrecorded = capsys.readouterr().out
    assert f"Kendall tau vs {baseline}: not comparable (the recorded architectures are not this run's: " in unrecorded
    assert "of its 4 are among the 4 recorded)" in unrecorded and "Kendall tau vs recorded" not in unrecorded
