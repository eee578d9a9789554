"""Malformed invocations of every CLI: exit 2, one line on stderr naming the key, no traceback, nothing written.

The CLIs run in-process (``main(argv)``) so the cases stay fast; the Hydra app behind the checks is
replaced by a failure, so a case that slipped through the checks cannot start a search. A few cases
run the real entry points in a subprocess to show they behave the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from lightning_nas import cli
from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.config import register_configs
from lightning_nas.export import cli as export_cli
from lightning_nas.report.__main__ import main as report_main
from lightning_nas.results.fingerprint import run_fingerprint
from lightning_nas.results.history import History

BASE = ["logger=none", "progress=false"]
RUN = ["seed=3", "evaluator.max_epochs=2"]  # the settings of the run that resume cases continue


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")}


def _assert_one_line(stderr: str, key: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lightning_nas: error: "), lines[0]
    assert key in lines[0], lines[0]
    assert "Traceback" not in stderr


def _existing_run(folder: Path, *, corrupt: bool = False) -> None:
    """A run folder holding one evaluated candidate, started with ``RUN``, and its config.yaml."""
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*BASE, *RUN, f"output_dir={folder}"])
    history = History(folder / "history.jsonl", fingerprint=run_fingerprint(cfg))
    history.append(Architecture({"a": 1}), EvalResult("ok", {"search/val_acc": 0.5}))
    if corrupt:
        with (folder / "history.jsonl").open("a") as handle:
            handle.write('{"index": 1, "arch": \n')
    (folder / "config.yaml").write_text("the run's own config\n")


def _file(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file, not a folder\n")


def _corrupt_images(root: Path) -> None:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            (root / label / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")


# (arguments, key named, setup of the output folder `out`); `{tmp}` and `{crafted}` are filled in.
MAIN_CASES: list[tuple[list[str], str, Callable[[Path], None] | None]] = [
    (["strategy.mutation_rat=2"], "strategy.mutation_rat", None),
    (["strategy=evolutio"], "strategy", None),
    (["data.batch_size=abc"], "data.batch_size", None),
    (["seed=0,1"], "seed", None),
    (["foo"], "foo", None),
    (["data.batch_size=${oops}"], "data.batch_size", None),
    (["evaluator=tabular"], "evaluator.table", None),
    (["hardware=predicted"], "hardware.predictor_path", None),
    (["data=image_folder"], "data.root", None),
    (["experiment=nope"], "experiment", None),
    (["data.batch_size=0"], "data.batch_size", None),
    (["strategy.mutation_rate=2.0"], "strategy.mutation_rate", None),
    (["budget.evaluations=-1"], "budget.evaluations", None),
    (["objective=multi", "+objective.constraints.max_params=10"], "objective.constraints.max_params", None),
    (["objective=multi", "objective.constraints={max_params: 10}"], "objective.constraints", None),
    (["budget.population_size=1"], "budget.population_size", None),
    (["experiment=efficient_convnet", "search_space=darts_cell"], "search_space", None),
    (["export.top_k=-2"], "export.top_k", None),
    (["top_k=-1"], "top_k", None),
    (["experiment=multi_objective", "objective.constraints.max_params=10"], "objective.constraints.max_params", None),
    (["experiment=multi_objective", "objective.constraints.max_macs=10"], "objective.constraints.max_macs", None),
    (["trainer.accelerator=tpu"], "trainer.accelerator", None),
    (["trainer.accelerator=warp"], "trainer.accelerator", None),
    (["data=cifar10", "data.data_dir={tmp}/no_cifar"], "data.data_dir", None),
    (["evaluator=tabular", "evaluator.table={tmp}/missing.csv"], "evaluator.table", None),
    (["hardware=predicted", "hardware.predictor_path={tmp}/missing.json"], "hardware.predictor_path", None),
    (["hardware=predicted", "hardware.predictor_path={crafted}"], "hardware.predictor_path", None),
    (["hardware=lookup_table", "hardware.table={tmp}/missing.json"], "hardware.table", None),
    (["data.val_fraction=1.5"], "data.val_fraction", None),
    (["evaluator.max_epochs=0"], "evaluator.max_epochs", None),
    (["data=image_folder", "data.root={tmp}/no_images"], "data.root", None),
    (["data=image_folder", "data.root={tmp}/corrupt"], "data", None),
    (["search_space.kernel_sizes=[]"], "kernel_sizes", None),
    (["evaluator.optimizer=adamx"], "evaluator.optimizer", None),
    (["executor=process", "executor.max_workers=0"], "executor.max_workers", None),
    (["strategy=darts"], "search_space", None),
    (["objective.weights.foo=1"], "objective.weights.foo", None),
    ([], "output_dir", _file),
    (["output_dir={tmp}/a_file/run"], "output_dir", lambda out: _file(out.parent / "a_file")),
    ([*RUN], "resume", _existing_run),
    (["resume=true", "seed=4", "evaluator.max_epochs=2"], "seed", _existing_run),
    (["resume=true", "seed=3", "evaluator.max_epochs=1"], "evaluator.max_epochs", _existing_run),
    (["resume=true", *RUN], "resume", lambda out: _existing_run(out, corrupt=True)),
]


def _fill(args: list[str], tmp: Path, crafted: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)).replace("{crafted}", str(crafted)) for a in args]


@pytest.mark.parametrize(("args", "key", "setup"), MAIN_CASES, ids=[" ".join(c[0]) or c[1] for c in MAIN_CASES])
def test_main_cli(args: list[str], key: str, setup: Callable[[Path], None] | None, tmp_path: Path,
                  crafted_pickle: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    crafted, marker = crafted_pickle
    out = tmp_path / "out"
    _corrupt_images(tmp_path / "corrupt")
    if setup is not None:
        setup(out)
    monkeypatch.setattr(cli, "_app", lambda: pytest.fail("the checks let a malformed run through"))
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exited:
        cli.main([*BASE, f"output_dir={out}", *_fill(args, tmp_path, crafted)])
    assert exited.value.code == 2
    _assert_one_line(capsys.readouterr().err, key)
    assert _snapshot(out) == before
    assert not marker.exists()


def _run_folder(folder: Path, data_target: str = "lightning_nas.data.DigitsDataModule") -> Path:
    """A search run folder as the export CLI finds it: config.yaml with data and search_space, best/arch.json."""
    (folder / "best").mkdir(parents=True)
    (folder / "config.yaml").write_text(json.dumps({
        "data": {"_target_": data_target, "batch_size": 8},
        "search_space": {"_target_": "lightning_nas.spaces.EfficientConvNetSpace", "width_multipliers": [0.5]},
    }))
    register_configs()
    from lightning_nas.spaces import EfficientConvNetSpace

    space = EfficientConvNetSpace((1, 8, 8), 10, width_multipliers=[0.5])
    import numpy as np

    space.sample(np.random.default_rng(0)).save(folder / "best" / "arch.json")
    return folder / "best" / "arch.json"


def _popen_run(tmp: Path, marker: Path) -> Path:
    arch = _run_folder(tmp / "evil_run", "subprocess.Popen")
    config = json.loads((tmp / "evil_run" / "config.yaml").read_text())
    config["data"] = {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]}
    (tmp / "evil_run" / "config.yaml").write_text(json.dumps(config))
    return arch


EXPORT_CASES: list[tuple[list[str], str]] = [
    (["arch={tmp}/missing.json"], "arch"),
    (["run={tmp}/no_run"], "run"),
    (["arch={evil}"], "data._target_"),
    (["run={tmp}/evil_run"], "data._target_"),
    (["arch={arch}", "weights={tmp}/garbage.pt"], "weights"),
    (["arch={arch}", "weights={crafted}"], "weights"),
    (["arch={arch}", "weights={tmp}/wrong.pt"], "weights"),
    (["arch={arch}", "weights={tmp}/missing.pt"], "weights"),
    (["arch={tmp}/foreign.json"], "arch"),
    (["arch={arch}", "search_space.kernel_sizes=[]"], "kernel_sizes"),
    (["arch={arch}", "quantize=maybe"], "quantize"),
    (["run={tmp}/crafted_model_run"], "weights"),
]


@pytest.mark.parametrize(("args", "key"), EXPORT_CASES, ids=[" ".join(c[0]) for c in EXPORT_CASES])
def test_export_cli(args: list[str], key: str, tmp_path: Path, crafted_pickle: tuple[Path, Path],
                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    crafted, marker = crafted_pickle
    arch = _run_folder(tmp_path / "good_run")
    evil = _popen_run(tmp_path, marker)
    _run_folder(tmp_path / "crafted_model_run")  # its final model, best/model.pt, is a crafted pickle
    (tmp_path / "crafted_model_run" / "best" / "model.pt").write_bytes(crafted.read_bytes())
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"nonsense.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    (tmp_path / "foreign.json").write_text(json.dumps({"no_such_decision": 1}))
    out = tmp_path / "exported"
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{crafted}", str(crafted)).replace("{evil}", str(evil))
              .replace("{arch}", str(arch)) for a in args]
    monkeypatch.setattr(export_cli, "_app", lambda: pytest.fail("the checks let a malformed export through"))
    with pytest.raises(SystemExit) as exited:
        export_cli.main([*filled, f"output_dir={out}"])
    assert exited.value.code == 2
    _assert_one_line(capsys.readouterr().err, key)
    assert not out.exists()
    assert not marker.exists()


def _summary_list(root: Path) -> None:
    (root / "run0").mkdir(parents=True)
    (root / "run0" / "summary.json").write_text("[1, 2]")


def _bad_config(root: Path) -> None:
    (root / "run0").mkdir(parents=True)
    (root / "run0" / "summary.json").write_text("{}")
    (root / "run0" / "config.yaml").write_text("strategy: [unclosed\n")


def _bad_hydra(root: Path) -> None:
    (root / "run0" / ".hydra").mkdir(parents=True)
    (root / "run0" / "summary.json").write_text("{}")
    (root / "run0" / ".hydra" / "hydra.yaml").write_text("hydra: {runtime: [\n")


REPORT_CASES: list[tuple[list[str], Callable[[Path], None] | None]] = [
    (["{root}"], _summary_list),
    (["{root}"], _bad_config),
    (["{root}"], _bad_hydra),
    (["{root}"], lambda root: root.mkdir()),
    (["{root}/missing"], None),
    ([], None),
    (["{root}", "--colour"], None),
]


@pytest.mark.parametrize(("args", "setup"), REPORT_CASES, ids=["summary-list", "bad-config", "bad-hydra-yaml", "empty",
                                                                "missing", "no-folder", "unknown-flag"])
def test_report_cli(args: list[str], setup: Callable[[Path], None] | None, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "multirun"
    if setup is not None:
        setup(root)
    before = _snapshot(root)
    try:
        code = report_main([a.replace("{root}", str(root)) for a in args])
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 2
    _assert_one_line(capsys.readouterr().err, "folder")
    assert _snapshot(root) == before


def test_at_least_thirty_malformed_invocations() -> None:
    assert len(MAIN_CASES) + len(EXPORT_CASES) + len(REPORT_CASES) >= 30


def _python(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(cli.__file__).parents[1]),
                                                                    os.environ.get("PYTHONPATH", "")] if p)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          env=env, check=False)


def test_real_entry_points_behave_the_same(tmp_path: Path, crafted_pickle: tuple[Path, Path]) -> None:
    crafted, marker = crafted_pickle
    out = tmp_path / "out"
    done = _python("lightning_nas", *BASE, f"output_dir={out}", "budget.evaluations=-1")
    assert done.returncode == 2
    _assert_one_line(done.stderr, "budget.evaluations")
    assert not out.exists()

    arch = _run_folder(tmp_path / "run")
    done = _python("lightning_nas.export", f"arch={arch}", f"weights={crafted}", f"output_dir={out}")
    assert done.returncode == 2
    _assert_one_line(done.stderr, "weights")
    assert not out.exists() and not marker.exists()

    _summary_list(tmp_path / "multirun")
    done = _python("lightning_nas.report", str(tmp_path / "multirun"))
    assert done.returncode == 2
    _assert_one_line(done.stderr, "folder")
