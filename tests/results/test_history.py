import json
import math

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.results.history import History


def test_append_writes_each_record_immediately(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    history.append(Architecture({"a": 1}), EvalResult("ok", {"search/val_acc": 0.5}, duration_s=1.5))
    history.append(Architecture({"a": 2}), EvalResult.failed("RuntimeError: boom"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]
    first = json.loads(lines[0])
    assert first["arch"] == {"a": 1} and first["status"] == "ok" and first["metrics"]["search/val_acc"] == 0.5
    assert json.loads(lines[1])["error"] == "RuntimeError: boom"


def test_reopening_loads_the_same_records(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    for i in range(5):
        history.append(Architecture({"a": i, "t": (0, i)}), EvalResult("ok", {"search/val_acc": i / 10}))
    again = History(path)
    assert [r.arch for r in again] == [r.arch for r in history]
    assert [r.result for r in again] == [r.result for r in history]


def test_torn_last_line_is_dropped_and_truncated(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    history.append(Architecture({"a": 1}), EvalResult("ok", {"search/val_acc": 0.5}))
    with path.open("a") as handle:
        handle.write('{"index": 1, "arch": {"a"')
    reopened = History(path)
    assert len(reopened) == 1
    reopened.append(Architecture({"a": 2}), EvalResult("ok", {"search/val_acc": 0.6}))
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 1]


def test_nan_metrics_are_stored_as_null(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    History(path).append(Architecture({"a": 1}), EvalResult.failed("nan loss", {"search/val_loss": math.nan}))
    assert json.loads(path.read_text())["metrics"]["search/val_loss"] is None
    assert math.isnan(History(path)[0].result.metrics["search/val_loss"])


def test_a_corrupt_middle_line_is_an_error(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('not json\n{"index": 0}\n')
    with pytest.raises(ValueError, match="line 1 is not a history record"):
        History(path)


def test_the_fingerprint_header_is_written_once_and_read_back(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    History(path, fingerprint={"seed": 3}).append(Architecture({"a": 1}), EvalResult("ok", {"search/val_acc": 0.5}))
    reopened = History(path, fingerprint={"seed": 4})  # an existing file keeps its own header
    assert reopened.fingerprint == {"seed": 3} and len(reopened) == 1
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"fingerprint": {"seed": 3}, "format": "lightning_nas.history/1"}
