"""Hydra plugins (extra: launchers; the Optuna sweeper installed on its own): each test skips without its plugin.

The joblib multirun goes through the real CLI in a subprocess, so plugin discovery, the ConfigStore in the
worker processes and the report over the sweep folder are all exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightning_nas.config import register_configs

TINY = [
    "seed=0",
    "strategy.num_samples=1",
    "data.max_train_samples=120",
    "data.max_val_samples=60",
    "data.max_test_samples=60",
    "search_space.width_multipliers=[0.5]",
    "search_space.depth_multipliers=[0.5]",
    "evaluator.max_epochs=1",
    "evaluator.latency_repeats=2",
    "final_training=false",
    "logger=none",
    "progress=false",
    "export.top_k=0",
]


def _compose_with_hydra(overrides: list[str]):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.slow  # three fresh interpreters importing torch and Lightning (the CLI and two workers)
def test_joblib_multirun_writes_every_run_and_the_report_aggregates_them(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from lightning_nas.report import write_report

    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "lightning_nas", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "strategy=random,evolution", *TINY, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr

    summaries = sorted(sweep.glob("*/summary.json"))
    assert [p.parent.name for p in summaries] == ["0", "1"]
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["evaluations"] == 1 and summary["best"]["score"] is not None
    table, csv_path, png_path = write_report(sweep)
    assert "random" in table and "evolution" in table
    assert csv_path.exists() and png_path.exists()


def test_slurm_preset_composes_and_builds_the_submitit_launcher() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = _compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.mem_gb=16"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.mem_gb, launcher.timeout_min) == ("gpu", 16, 240)
    built = instantiate(launcher)  # no SLURM needed until jobs are submitted
    assert built.params["setup"] == ["export OMP_NUM_THREADS=8"]
    assert built.params["array_parallelism"] == 16 and built.params["gpus_per_node"] == 1
    with pytest.raises(Exception, match="partiton"):
        _compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"])


def test_tune_training_sweeper_preset_composes_over_real_keys() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _compose_with_hydra(["hydra/sweeper=tune_training"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert str(sweeper.direction) in ("maximize", "Direction.maximize")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed
    assert set(sweeper.params) == {"evaluator.lr", "evaluator.weight_decay", "data.batch_size"}
    for key in sweeper.params:  # a misspelt key would otherwise fail only once the trials start
        assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None, key
