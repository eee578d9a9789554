"""``python -m lightning_nas.report``: strategy comparison over fake multirun folders."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.report import format_table, load_runs, summarize, write_report
from lightning_nas.report.__main__ import main
from lightning_nas.results.history import History

TARGETS = {"random": "lightning_nas.strategies.RandomSearch", "evolution": "lightning_nas.strategies.EvolutionStrategy"}


def _write_run(folder: Path, strategy: str, accs: list[float | None], test_acc: float, seconds: float,
               hydra_choice: bool) -> None:
    """A run folder as ``run()`` writes it (plus Hydra's ``.hydra/hydra.yaml`` when ``hydra_choice``)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"strategy:\n  _target_: {TARGETS[strategy]}\n  seed: 0\nname: demo\n")
    history = History(folder / "history.jsonl")
    for i, acc in enumerate(accs):
        result = EvalResult.failed("boom") if acc is None else EvalResult("ok", {"search/val_acc": acc})
        history.append(Architecture({"width": i}), result)
    best = max(a for a in accs if a is not None)
    summary = {"best": {"metrics": {"search/val_acc": best}}, "test": {"test/acc": test_acc},
               "evaluations": len(accs), "failed": accs.count(None), "total_seconds": seconds}
    (folder / "summary.json").write_text(json.dumps(summary))
    if hydra_choice:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      strategy: {strategy}\n")


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "2026-01-01_00-00-00"
    _write_run(root / "0", "random", [0.5, None, 0.7], 0.68, 10.0, hydra_choice=True)
    _write_run(root / "1", "random", [0.6, 0.9], 0.88, 20.0, hydra_choice=True)
    _write_run(root / "2", "evolution", [0.4, 0.8, 0.8, 0.85], 0.8, 30.0, hydra_choice=False)
    (root / "3").mkdir()  # a crashed run: no summary, skipped
    return root


def test_summary_groups_by_strategy_with_mean_and_std(multirun: Path) -> None:
    runs = load_runs(multirun)
    assert len(runs) == 3
    rows = {row["strategy"]: row for row in summarize(runs)}
    assert set(rows) == {"random", "EvolutionStrategy"}  # Hydra choice when present, else the class name
    random = rows["random"]
    assert random["runs"] == 2
    assert random["best_val_acc_mean"] == pytest.approx(0.8)
    assert random["best_val_acc_std"] == pytest.approx(math.sqrt(0.02))
    assert random["test_acc_mean"] == pytest.approx(0.78)
    assert random["evaluations_mean"] == pytest.approx(2.5)
    assert random["wall_s_mean"] == pytest.approx(15.0)
    assert rows["EvolutionStrategy"]["best_val_acc_std"] == 0.0
    first = next(r for r in runs if r.folder.name == "0")
    assert first.best_so_far.tolist() == [0.5, 0.5, 0.7]
    assert (first.elapsed_s >= 0).all() and list(first.elapsed_s) == sorted(first.elapsed_s)


def test_table_csv_and_plot_are_written(multirun: Path, tmp_path: Path) -> None:
    table, csv_path, png_path = write_report(multirun, tmp_path / "out")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["strategy", "runs"] and len(lines) == 4
    assert "0.8000 ± 0.1414" in table
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["strategy"] for r in rows] == ["EvolutionStrategy", "random"]
    assert float(rows[1]["wall_s_std"]) == pytest.approx(math.sqrt(50.0))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


def test_cli_entry_point(multirun: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(multirun)]) == 0
    out = capsys.readouterr().out
    assert "EvolutionStrategy" in out and "report.png" in out
    assert (multirun / "report.csv").exists() and (multirun / "report.png").exists()


def test_cli_without_runs_fails_cleanly(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 2
    assert format_table([]).startswith("strategy")


def test_python_dash_m(multirun: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "lightning_nas.report", str(multirun)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "random" in done.stdout


def test_the_history_header_is_not_a_record(tmp_path: Path) -> None:
    history = History(tmp_path / "run" / "history.jsonl", fingerprint={"seed": 0})
    history.append(Architecture({"a": 1}), EvalResult("ok", {"search/val_acc": 0.7}, duration_s=1.0))
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"evaluations": 1, "total_seconds": 2.0}))
    [loaded] = load_runs(tmp_path)
    assert loaded.best_so_far.tolist() == [0.7]
