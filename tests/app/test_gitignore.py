"""The folders the command-line apps write by default are ignored by git, so a run leaves a clean checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightning_nas.export.cli import ExportAppConfig

ROOT = Path(__file__).resolve().parents[2]


def _top(path: str) -> str:
    return path.split("/", 1)[0]


def test_default_output_folders_are_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".gitignore").is_file():
        pytest.skip("needs git and the checkout's .gitignore")
    hydra = OmegaConf.to_container(OmegaConf.load(ROOT / "src/lightning_nas/conf/config.yaml").hydra, resolve=False)
    assert isinstance(hydra, dict)
    run_dir = hydra["run"]["dir"].split(",", 1)[1]  # ${lnas.or:${output_dir},outputs/...}
    folders = {_top(run_dir), _top(hydra["sweep"]["dir"]), _top(ExportAppConfig.output_dir)}
    assert folders == {"outputs", "multirun", "exported"}
    for folder in sorted(folders):
        probe = f"{folder}/2026-01-01_00-00-00/summary.json"
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{folder}/ (a default output folder) is not in .gitignore"
