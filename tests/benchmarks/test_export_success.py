"""benchmarks/export_success.py: Ctrl-C stops between architectures and the table covers what was done."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARK = "export_success"  # benchmarks/export_success.py, loaded by the bench fixture (conftest.py)


def test_sigint_stops_after_the_current_export(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exported: list[str] = []

    def fake_export(space: Any, arch: Any, row: dict[str, Any], out: Path, args: argparse.Namespace) -> None:
        if not exported:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the first export is running
        exported.append(row["space"])
        row["archs"] += 1
        row["ok"] += 1

    monkeypatch.setattr(bench, "export_one", fake_export)
    previous = signal.getsignal(signal.SIGINT)
    args = argparse.Namespace(seed=0, input_shape=[1, 8, 8], progress_every=1)
    rows = bench.run_all(["nb201", "macro_convnet"], 3, tmp_path, args)
    assert exported == ["nb201"]  # the running export finished; nothing after it started
    assert [(r["space"], r["archs"]) for r in rows] == [("nb201", 1), ("macro_convnet", 0)]
    assert signal.getsignal(signal.SIGINT) is previous
    out = capsys.readouterr().out
    assert "interrupted: stopping after the current export" in out and "1/3 exported" in out


def test_second_sigint_aborts(bench: ModuleType) -> None:
    with pytest.raises(KeyboardInterrupt), bench.stop_on_sigint() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag[0]
        os.kill(os.getpid(), signal.SIGINT)
