"""The README's run command as a newcomer types it: no ``output_dir``, so Hydra's dated run folder.

hydra-core 1.3.8 / omegaconf 2.3.1 broke this once (``oc.select`` handed ``None`` to the str-typed
``hydra.run.dir``) while every other test passed an explicit ``output_dir``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_module

from lightning_nas.config import register_configs

DATED = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}$")
TINY_BUDGET = [
    "budget.evaluations=1",
    "final_training=false",
    "logger=none",
    "progress=false",
    "evaluator.max_epochs=1",
    "data.max_train_samples=160",
    "data.max_val_samples=80",
    "hardware.repeats=2",
]


def _child_env() -> dict[str, str]:
    """The parent's environment, with this checkout's ``src`` first on the path (as the test imports it)."""
    import lightning_nas

    src = str(Path(lightning_nas.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def test_run_without_output_dir_writes_a_dated_folder_under_outputs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lightning_nas", "experiment=efficient_convnet", *TINY_BUDGET]
    done = subprocess.run(command, cwd=tmp_path, env=_child_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "efficient_convnet").iterdir())
    assert len(runs) == 1 and DATED.match(runs[0].name), runs
    run = runs[0]
    assert len((run / "history.jsonl").read_text().splitlines()) >= 1
    summary = json.loads((run / "summary.json").read_text())
    assert Path(summary["output_dir"]).resolve() == run.resolve()
    assert (run / "best" / "arch.json").is_file() and (run / "config.yaml").is_file()


def test_run_dir_falls_back_only_when_output_dir_is_unset() -> None:
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        default = compose(config_name="config", overrides=["experiment=efficient_convnet"], return_hydra_config=True)
        chosen = compose(config_name="config", overrides=["output_dir=/tmp/mine"], return_hydra_config=True)
    parent, stamp = str(default.hydra.run.dir).rsplit("/", 1)
    assert parent == "outputs/efficient_convnet" and DATED.match(stamp)
    assert chosen.hydra.run.dir == "/tmp/mine"
