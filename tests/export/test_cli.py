"""The export CLI reads a search run's config.yaml (space, data, trained weights); errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from lightning_nas.arch import Architecture
from lightning_nas.config import ConfigError
from lightning_nas.export.cli import export_from_config, find_run, run_weights
from lightning_nas.results.final_model import save_final_model
from lightning_nas.spaces import NB201Space

SPACE = ["search_space=nb201", "search_space.cells_per_stage=1", "search_space.channels=4"]


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="export", overrides=overrides)


def _space(channels: int = 4) -> NB201Space:
    return NB201Space((1, 8, 8), 10, cells_per_stage=1, channels=channels)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished search run as run.py leaves it: config.yaml and best/arch.json (an nb201 space, digits data)."""
    run = tmp_path / "run"
    saved = _compose(SPACE)
    (run / "best").mkdir(parents=True)
    config = {"name": "test", **{group: OmegaConf.to_container(saved[group], resolve=True)
                                 for group in ("data", "search_space")}}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    _space().sample(np.random.default_rng(3)).save(run / "best" / "arch.json")
    return run


def _export(overrides: list[str], out: Path) -> dict[str, object]:
    overrides = [*overrides, f"output_dir={out}"]
    return export_from_config(_compose(overrides), overrides)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    loaded: dict[str, torch.Tensor] = torch.load(out / "code" / "weights.pt", weights_only=True)
    return loaded


def test_run_without_trained_weights_exports_only_on_request(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^weights: no trained weights for .*untrained=true"):
        _export([f"run={run_dir}", "codegen=false"], tmp_path / "refused")
    result = _export([f"run={run_dir}", "untrained=true"], tmp_path / "out")
    assert result["errors"] == {} and result["run"] == str(run_dir) and result["weights"] is None
    assert result["arch"] == str(run_dir / "best" / "arch.json")
    assert list((tmp_path / "out" / "deploy").glob("*.pte"))
    package = json.loads((tmp_path / "out" / "package.json").read_text())
    assert package["arch"] == Architecture.load(run_dir / "best" / "arch.json").to_dict()
    assert package["trained_weights"] is False and "UNTRAINED" in package["warning"]
    assert "**UNTRAINED**" in (tmp_path / "out" / "code" / "README.md").read_text()
    assert "trained weights." not in (tmp_path / "out" / "code" / "README.md").read_text()
    manifest = json.loads((tmp_path / "out" / "deploy" / "manifest.json").read_text())
    assert manifest["trained_weights"] is False and "UNTRAINED" in manifest["warning"]


def test_run_exports_its_final_model(run_dir: Path, tmp_path: Path) -> None:
    arch = Architecture.load(run_dir / "best" / "arch.json")
    torch.manual_seed(7)
    final = _space().build(arch)
    save_final_model(final, arch, run_dir / "best", {"test/acc": 0.5})
    assert run_weights(run_dir, arch) == run_dir / "best" / "model.pt"
    result = _export([f"run={run_dir}", "deploy=false"], tmp_path / "out")
    assert result["weights"] == str(run_dir / "best" / "model.pt")
    exported = _weights(tmp_path / "out")
    assert all(torch.equal(exported[key], value) for key, value in final.state_dict().items())
    assert json.loads((tmp_path / "out" / "package.json").read_text())["trained_weights"] is True
    assert "`weights.pt` holds the trained weights." in (tmp_path / "out" / "code" / "README.md").read_text()


def test_arch_inside_run_finds_config_and_trained_weights(run_dir: Path, tmp_path: Path) -> None:
    arch = Architecture.load(run_dir / "best" / "arch.json")
    package = run_dir / "export" / f"rank1_{arch.digest()}"
    (package / "code").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"trained_weights": True}))
    torch.manual_seed(123)
    trained = _space().build(arch).state_dict()
    torch.save(trained, package / "code" / "weights.pt")
    assert find_run(run_dir / "best" / "arch.json") == run_dir.resolve()
    assert run_weights(run_dir, arch) == package / "code" / "weights.pt"

    result = _export([f"arch={run_dir / 'best' / 'arch.json'}", "deploy=false"], tmp_path / "out")
    assert result["errors"] == {} and result["weights"] == str(package / "code" / "weights.pt")
    exported = _weights(tmp_path / "out")
    assert set(exported) == set(trained)
    assert all(torch.equal(exported[key], trained[key]) for key in trained)
    assert json.loads((tmp_path / "out" / "package.json").read_text())["trained_weights"] is True


def test_explicit_overrides_win_over_the_run(run_dir: Path, tmp_path: Path) -> None:
    result = _export([f"run={run_dir}", "search_space=nb201", "search_space.channels=8", "deploy=false",
                      "untrained=true"], tmp_path / "out")
    assert result["errors"] == {}
    stem = next(value for key, value in _weights(tmp_path / "out").items() if value.dim() == 4)
    assert stem.shape[0] == 8  # the override's width; cells_per_stage=1 still comes from the run


def test_arch_outside_a_run_uses_the_defaults_and_overrides(tmp_path: Path) -> None:
    arch = tmp_path / "arch.json"
    _space().sample(np.random.default_rng(0)).save(arch)
    assert find_run(arch) is None
    result = _export([f"arch={arch}", *SPACE, "deploy=false", "untrained=true"], tmp_path / "out")
    assert result["errors"] == {} and result["run"] is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_arch", r"^arch: no architecture file at .*nowhere\.json$"),
        ("run_without_config", r"^run: .*empty has no config\.yaml"),
        ("missing_run", r"^run: no run folder at .*absent$"),
        ("run_without_best", r"^run: no architecture file at .*best/arch\.json$"),
        ("invalid_arch", r"^arch: .*arch\.json does not fit search_space \(from .*config\.yaml\): "),
        ("nothing", r"^arch: give arch=path/to/arch\.json or run="),
    ],
)
def test_errors_name_the_key_and_path(run_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    if case == "run_without_best":
        (run_dir / "best" / "arch.json").unlink()
    if case == "invalid_arch":
        (run_dir / "best" / "arch.json").write_text(json.dumps({"stage0/cell/edge0": "no_such_op"}))
    overrides = {
        "missing_arch": [f"arch={tmp_path / 'nowhere.json'}"],
        "run_without_config": [f"run={tmp_path / 'empty'}"],
        "missing_run": [f"run={tmp_path / 'absent'}"],
        "run_without_best": [f"run={run_dir}"],
        "invalid_arch": [f"run={run_dir}"],
        "nothing": [],
    }[case]
    with pytest.raises(ConfigError, match=message) as error:
        _export(overrides, tmp_path / "out")
    assert "\n" not in str(error.value)


@pytest.mark.slow  # a fresh interpreter importing torch, ExecuTorch and Hydra
def test_command_line_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "lightning_nas.export", f"run={tmp_path / 'empty'}",
                           f"output_dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, nothing else
    assert done.stderr.startswith("lightning_nas: error: run: ")
    assert not (tmp_path / "out").exists()
    assert "config.yaml" in done.stderr
