"""TabularEvaluator: lookup by canonical architecture key in CSV and JSON tables."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.tabular import (
    ArchitectureNotInTable,
    TabularEvaluator,
    column_metric,
    register_table_key,
)
from lightning_nas.spaces.base import SearchSpace


def all_archs(space: SearchSpace) -> list[Architecture]:
    labels = list(space.decisions)
    values = [space.decisions[label].candidates for label in labels]
    return [Architecture(dict(zip(labels, combo, strict=True))) for combo in itertools.product(*values)]


def write_csv(path: Path, archs: list[Architecture]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "val_acc", "test_acc", "params", "latency_pixel7_ms", "flops_custom"])
        for i, arch in enumerate(archs):
            writer.writerow([arch.to_json(), i / 100, i / 100 + 0.5, 1000 + i, 2.0 * i, 7])


def test_csv_lookup_maps_columns(toy_space: SearchSpace, tmp_path: Path) -> None:
    archs = all_archs(toy_space)
    write_csv(tmp_path / "t.csv", archs)
    evaluator = TabularEvaluator(str(tmp_path / "t.csv"), device="pixel7")
    assert len(evaluator) == toy_space.cardinality == 96
    result = evaluator.evaluate(toy_space, archs[5])
    assert result.ok
    assert result.metrics["search/val_acc"] == pytest.approx(0.05)
    assert result.metrics["model/params"] == 1005
    assert result.metrics["hw/latency_ms"] == result.metrics["hw/pixel7/latency_ms"] == 10.0
    assert result.metrics["table/flops_custom"] == 7
    assert not any(k.startswith("test/") for k in result.metrics)  # the search never sees test
    assert evaluator.test(toy_space, archs[5])["test/acc"] == pytest.approx(0.55)


def test_json_tables_and_canonical_keys(toy_space: SearchSpace, tmp_path: Path) -> None:
    arch = toy_space.sample(np.random.default_rng(0))
    reordered = json.dumps(dict(reversed(list(arch.to_dict().items()))), indent=1)  # not canonical text
    (tmp_path / "obj.json").write_text(json.dumps({reordered: {"val_acc": 0.7, "test_acc": 0.6}}))
    (tmp_path / "rows.json").write_text(json.dumps([{"arch": arch.to_dict(), "acc200": 0.8, "test/acc": 0.6}]))
    assert TabularEvaluator(str(tmp_path / "obj.json")).evaluate(toy_space, arch).metrics["search/val_acc"] == 0.7
    rows = TabularEvaluator(str(tmp_path / "rows.json"), metric="acc200")
    assert rows.evaluate(toy_space, arch).metrics["search/val_acc"] == 0.8
    assert rows.test(toy_space, arch)["test/acc"] == 0.6


def test_missing_architecture_names_it(toy_space: SearchSpace, tmp_path: Path) -> None:
    archs = all_archs(toy_space)
    write_csv(tmp_path / "t.csv", archs[:3])
    evaluator = TabularEvaluator(str(tmp_path / "t.csv"))
    with pytest.raises(KeyError, match="is not in the table") as info:
        evaluator.evaluate(toy_space, archs[10])
    assert isinstance(info.value, ArchitectureNotInTable)
    assert info.value.arch_json == archs[10].to_json()
    assert archs[10].to_json() in str(info.value)


def test_custom_key_and_validation(toy_space: SearchSpace, tmp_path: Path) -> None:
    arch = toy_space.sample(np.random.default_rng(1))
    (tmp_path / "k.csv").write_text(f"arch,val_acc\nW{arch['width']}-D{arch['depth']},0.4\n")
    key = register_table_key("toy_short", lambda space, a: f"W{a['width']}-D{a['depth']}")
    assert TabularEvaluator(str(tmp_path / "k.csv"), key="toy_short").evaluate(toy_space, arch).ok
    assert TabularEvaluator(str(tmp_path / "k.csv"), key=key).evaluate(toy_space, arch).ok
    with pytest.raises(ValueError, match=r"evaluator\.key"):
        TabularEvaluator(str(tmp_path / "k.csv"), key="nope")
    with pytest.raises(ValueError, match="no column 'test_acc'"):
        TabularEvaluator(str(tmp_path / "k.csv"), metric="test_acc")
    (tmp_path / "nan.csv").write_text(f"arch,val_acc\nW{arch['width']}-D{arch['depth']},\n")
    assert not TabularEvaluator(str(tmp_path / "nan.csv"), key=key).evaluate(toy_space, arch).ok


def test_column_metric_names() -> None:
    assert column_metric("val_acc") == "search/val_acc"
    assert column_metric("hw/energy_mj") == "hw/energy_mj"
    assert column_metric("latency_rpi4_ms") == "hw/rpi4/latency_ms"
    assert column_metric("other") == "table/other"


def test_nb201_strings(tmp_path: Path) -> None:
    nb201 = pytest.importorskip("lightning_nas.spaces.nb201")
    space = nb201.NB201Space((3, 8, 8), 10, cells_per_stage=1, channels=4)
    arch = space.sample(np.random.default_rng(0))
    text = nb201.nb201_to_string(arch)
    (tmp_path / "nb.csv").write_text(f"arch,val_acc,test_acc\n{text},0.9,0.8\n")
    evaluator = TabularEvaluator(str(tmp_path / "nb.csv"), key="nb201")
    assert evaluator.evaluate(space, arch).metrics["search/val_acc"] == 0.9
    assert evaluator.test(space, arch)["test/acc"] == 0.8
