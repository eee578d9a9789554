"""benchmarks/ranking_fidelity.py on a few hundred Fashion-MNIST-shaped images: tau is reported, and the
scores do not depend on how many worker processes train the architectures."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/ranking_fidelity.py imported by its own name, so that spawned workers find score_one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    return importlib.import_module("ranking_fidelity")


@pytest.mark.slow
def test_tau_is_reported_and_workers_do_not_change_scores(bench: ModuleType, tmp_path: Path) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=300, n_test=40)
    common = ["--archs", "3", "--epochs", "1", "--max-val-samples", "60", "--reference-train-samples", "120",
              "--proxy", "1x50%=evaluator.max_epochs=1,evaluator.limit_train_batches=0.5",
              "--", f"data.data_dir={data}", "data.batch_size=32", "evaluator.latency_repeats=1"]
    serial = bench.main(["--jobs", "1", "--output", str(tmp_path / "serial"), *common])
    parallel = bench.main(["--jobs", "2", "--output", str(tmp_path / "parallel"), *common])
    assert serial["reference_train_samples"] == 120 and len(serial["reference"]) == 3
    row = serial["proxies"]["1x50%"]
    assert -1.0 <= row["kendall_tau"] <= 1.0 and row["cpu_s_per_arch"] > 0
    assert parallel["reference"] == pytest.approx(serial["reference"], abs=1e-6)
    assert parallel["proxies"]["1x50%"]["scores"] == pytest.approx(row["scores"], abs=1e-6)
    saved = json.loads((tmp_path / "serial" / "ranking_fidelity.json").read_text())
    assert saved["archs"] == serial["archs"]
