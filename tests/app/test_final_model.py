"""What the user takes home: the run's final model is saved, exported, and the exported script reproduces it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module

from lightning_nas.arch import Architecture
from lightning_nas.config import register_configs
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.run import run

ROOT = Path(__file__).resolve().parents[2]
TINY = ["budget.evaluations=2", "budget.population_size=2", "evaluator.max_epochs=1", "evaluator.final_max_epochs=2",
        "evaluator.latency_repeats=3", "logger=none", "progress=false", "data.max_test_samples=200"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("default_run")
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, f"output_dir={folder}"])
    return {"folder": folder, "summary": run(cfg), "cfg": cfg}


def test_run_saves_its_final_model(default_run: dict[str, Any]) -> None:
    from lightning_nas.results.final_model import load_final_weights  # after lightning_nas.run (import cycle)

    folder = default_run["folder"]
    arch = Architecture.load(folder / "best" / "arch.json")
    state = load_final_weights(folder / "best", arch)
    assert state is not None and all(isinstance(v, torch.Tensor) for v in state.values())
    metrics = json.loads((folder / "best" / "metrics.json").read_text())
    assert metrics["arch_id"] == arch.digest()
    assert metrics["test/acc"] == pytest.approx(default_run["summary"]["test"]["test/acc"])


@pytest.mark.slow  # two fresh interpreters: the export CLI and the exported inference.py
def test_exported_inference_reproduces_the_runs_test_accuracy(default_run: dict[str, Any], tmp_path: Path) -> None:
    folder, cfg = default_run["folder"], default_run["cfg"]
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "lightning_nas.export", f"run={folder}", f"output_dir={out}",
                           "deploy=false"], capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    package = json.loads((out / "package.json").read_text())
    assert package["trained_weights"] is True and "warning" not in package
    assert "holds the trained weights" in (out / "code" / "README.md").read_text()

    data = DigitsDataModule(batch_size=512, max_test_samples=int(cfg.data.max_test_samples))
    data.setup("test")
    images, labels = map(torch.cat, zip(*((x, y) for x, y, *_ in data.test_dataloader()), strict=True))
    torch.save(images, tmp_path / "test_digits.pt")
    done = subprocess.run([sys.executable, "inference.py", str(tmp_path / "test_digits.pt"), "--top-k", "1"],
                          cwd=out / "code", capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    predicted = [int(m.group(1)) for m in re.finditer(r"\]: (\d+) \(", done.stdout)]
    assert len(predicted) == len(labels)
    accuracy = float((torch.tensor(predicted) == labels).float().mean())
    expected = default_run["summary"]["test"]["test/acc"]
    assert accuracy == pytest.approx(expected, abs=0.01)
    assert accuracy > 0.5  # trained, not a random initialisation (about 0.1)
