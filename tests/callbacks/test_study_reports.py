"""Robustness, transfer and efficiency reports on hand-made in-memory histories."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.callbacks.study_reports import EfficiencyReport, RobustnessReport, TransferReport, efficiency_rows
from lightning_nas.results.history import History
from lightning_nas.results.robustness_plots import robust_accuracy_keys, robustness_plot

PNG = b"\x89PNG\r\n\x1a\n"


def robust_metrics(clean: float) -> dict[str, float]:
    return {"search/val_acc": clean, "robust/clean_acc": clean, "robust/noise_acc@0.1": clean - 0.1,
            "robust/noise_acc@0.05": clean - 0.05, "robust/corrupt_acc": clean - 0.2,
            "robust/adv_acc_fgsm": clean - 0.3, "robust/adv_acc_pgd": clean / 2,
            "robust/corrupt_ratio": (clean - 0.2) / clean, "robust/adv_ratio": 0.5}


def make_history(*metrics: dict[str, float] | None) -> History:
    history = History()
    for i, values in enumerate(metrics):
        history.append(Architecture({"width": i}), EvalResult("ok", values) if values is not None
                       else EvalResult.failed("boom"))
    return history


def end(listener: RobustnessReport | TransferReport | EfficiencyReport, history: History) -> None:
    listener.on_search_start(None, history)  # type: ignore[arg-type]  # the space is unused
    for record in history:
        listener.on_candidate_end(record, history)
    listener.on_search_end(history)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000 and path.read_bytes().startswith(PNG)


def test_robustness_report_writes_png_and_csv(tmp_path: Path) -> None:
    history = make_history(robust_metrics(0.9), None, robust_metrics(0.8), {"search/val_acc": 0.7})
    end(RobustnessReport(tmp_path, top_k=1), history)
    assert_png(tmp_path / "robustness.png")
    rows = read_csv(tmp_path / "robustness.csv")
    assert [row["index"] for row in rows] == ["0", "2"]  # only candidates with robust metrics
    assert list(rows[0])[:5] == ["index", "arch_id", "status", "robust/clean_acc", "robust/noise_acc@0.05"]
    assert set(robust_metrics(0.9)) - {"search/val_acc"} <= set(rows[0])
    assert float(rows[1]["robust/adv_acc_pgd"]) == pytest.approx(0.4)
    assert rows[0]["arch_id"] == history[0].arch.digest()


def test_robust_accuracy_keys_order() -> None:
    keys = robust_accuracy_keys(make_history(robust_metrics(0.9)).records)
    assert keys == ["robust/clean_acc", "robust/noise_acc@0.05", "robust/noise_acc@0.1", "robust/corrupt_acc",
                    "robust/adv_acc_fgsm", "robust/adv_acc_pgd"]


def test_robustness_plot_rejects_no_clean_accuracy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clean_acc"):
        robustness_plot(make_history({"search/val_acc": 0.5}).records, tmp_path / "r.png")


def test_reports_write_nothing_without_metrics(tmp_path: Path) -> None:
    history = make_history({"search/val_acc": 0.9}, None, {"model/params": 1e5})
    end(RobustnessReport(tmp_path), history)
    end(EfficiencyReport(tmp_path, max_params=1e6), history)
    end(TransferReport(tmp_path, source=None), history)
    end(TransferReport(tmp_path / "x", source=str(tmp_path / "missing")), make_history(None))
    assert list(tmp_path.iterdir()) == []


def test_efficiency_numbers_by_hand(tmp_path: Path) -> None:
    history = make_history(
        {"search/val_acc": 0.8, "model/params": 2e5, "model/macs": 4e6, "hw/memory_mb": 1.5, "hw/latency_ms": 10.0},
        None,
        {"search/val_acc": 0.9, "model/params": 3e6, "model/macs": 9e7, "hw/latency_ms": 50.0},
        {"search/val_acc": 0.6, "model/params": 5e4, "hw/latency_ms": 200.0},
        {"search/val_acc": 0.7},  # no params: left out
    )
    end(EfficiencyReport(tmp_path, max_params=1e6, max_latency_ms=100.0), history)
    assert_png(tmp_path / "efficiency.png")
    rows = read_csv(tmp_path / "efficiency.csv")
    assert [row["index"] for row in rows] == ["0", "2", "3"]
    first, second, third = rows
    assert float(first["acc_per_100k_params"]) == pytest.approx(0.4)  # 0.8 / 2
    assert float(first["acc_per_mmac"]) == pytest.approx(0.2)  # 0.8 / 4
    assert float(first["memory_mb"]) == 1.5 and first["violates"] == "False"
    assert float(second["acc_per_100k_params"]) == pytest.approx(0.03)  # 0.9 / 30
    assert float(second["acc_per_mmac"]) == pytest.approx(0.01)  # 0.9 / 90
    assert second["memory_mb"] == "" and second["violates"] == "True"  # over max_params
    assert float(third["acc_per_100k_params"]) == pytest.approx(1.2)  # 0.6 / 0.5
    assert third["acc_per_mmac"] == "" and third["violates"] == "True"  # over max_latency


def test_efficiency_without_budgets_marks_nothing() -> None:
    history = make_history({"search/val_acc": 0.9, "model/params": 3e9, "hw/latency_ms": math.inf})
    assert [row["violates"] for row in efficiency_rows(history.records)] == [False]
    with pytest.raises(ValueError, match="max_params"):
        EfficiencyReport(max_params=-1.0)


def write_run(folder: Path, accuracies: list[float]) -> Path:
    history = History(folder / "history.jsonl")
    for i, acc in enumerate(accuracies):
        history.append(Architecture({"width": 100 + i}), EvalResult("ok", {"search/val_acc": acc}))
    return folder


def test_transfer_report_against_scratch_run(tmp_path: Path) -> None:
    scratch = write_run(tmp_path / "scratch", [0.5, 0.6, 0.7])
    end(TransferReport(tmp_path / "warm", source=None, scratch=str(scratch)),
        make_history({"search/val_acc": 0.8}, {"search/val_acc": 0.75}))
    assert_png(tmp_path / "warm" / "transfer.png")


def test_transfer_report_with_source_reference_only(tmp_path: Path) -> None:
    source = write_run(tmp_path / "source", [0.5, 0.85])
    report = TransferReport(tmp_path / "warm", source=str(source), scratch=str(tmp_path / "missing"))
    end(report, make_history({"search/val_acc": 0.8}, None, {"search/val_acc": 0.9}))
    assert_png(tmp_path / "warm" / "transfer.png")
