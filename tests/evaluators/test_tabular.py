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
    FidelityNotInTable,
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


# --- fidelities, shipped table, NB-201 strings ------------------------------------------------------
def nb201_space() -> SearchSpace:
    from lightning_nas.spaces.nb201 import NB201Space

    return NB201Space((3, 32, 32), 10)


def test_shipped_table_has_fidelities_costs_and_string_keys() -> None:
    from lightning_nas.spaces.nb201 import nb201_from_string

    space = nb201_space()
    evaluator = TabularEvaluator("nb201_synthetic")  # a shipped name; key="auto" reads NB-201 strings
    assert len(evaluator) == space.cardinality == 15625
    assert evaluator.fidelities == [4, 12, 36, 108, 200] and evaluator.fidelity == 200
    arch = nb201_from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                             "nor_conv_3x3~2|")
    top = evaluator.evaluate(space, arch)
    row = evaluator.rows[evaluator.key_fn(space, arch)]
    assert top.metrics["search/val_acc"] == row["val_acc@200"] and top.duration_s == row["train_time_s@200"]
    assert "test/acc" not in top.metrics and evaluator.test(space, arch)["test/acc"] == row["test_acc@200"]
    low, state = evaluator.evaluate_at(space, arch, 12)
    assert low.metrics["search/val_acc"] == row["val_acc@12"] and low.duration_s == row["train_time_s@12"]
    assert state == 12 and low.metrics["train/epochs_budget"] == 12.0
    promoted, _ = evaluator.evaluate_at(space, arch, 36, state)  # continuing costs only the difference
    assert promoted.duration_s == pytest.approx(row["train_time_s@36"] - row["train_time_s@12"])
    assert TabularEvaluator("nb201_synthetic", fidelity=12).evaluate(space, arch).metrics["search/val_acc"] == \
        row["val_acc@12"]
    with pytest.raises(FidelityNotInTable, match=r"no fidelity 9 .*\[4, 12, 36, 108, 200\]"):
        evaluator.evaluate_at(space, arch, 9)
    with pytest.raises(ValueError, match=r"evaluator.fidelity 9 is not in the table"):
        TabularEvaluator("nb201_synthetic", fidelity=9)


def test_shipped_table_structure_is_realistic() -> None:
    """Chance-level dead cells, an NB-201-like top, and rank changes between low and high fidelity."""
    from scipy.stats import spearmanr

    rows = list(TabularEvaluator("nb201_synthetic").rows.values())
    test = np.array([r["test_acc@200"] for r in rows])
    assert 0.94 < test.max() < 0.955 and 0.87 < np.median(test) < 0.91 and (test < 0.15).mean() > 0.01
    live = [r for r in rows if r["test_acc@200"] > 0.15]
    rho = {f: spearmanr([r[f"val_acc@{f}"] for r in live], [r["val_acc@200"] for r in live])[0] for f in (4, 12, 36)}
    assert rho[4] < rho[12] < rho[36] < 1.0 and 0.2 < rho[4] < 0.6 and 0.6 < rho[12] < 0.9


def test_string_keyed_gzip_json_table_and_missing_rows(tmp_path: Path) -> None:
    import gzip

    from lightning_nas.results.history import History
    from lightning_nas.search import run_search
    from lightning_nas.spaces.nb201 import nb201_to_string
    from lightning_nas.strategies import RandomSearch

    space = nb201_space()
    archs = all_archs(space)[:50]
    data = {nb201_to_string(a): {"val_acc": i / 100, "test_acc": i / 100} for i, a in enumerate(archs)}
    with gzip.open(tmp_path / "nb.json.gz", "wt") as handle:
        json.dump(data, handle)
    evaluator = TabularEvaluator(str(tmp_path / "nb.json.gz"))
    assert evaluator.evaluate(space, archs[7]).metrics["search/val_acc"] == 0.07
    with pytest.raises(ValueError, match=r"evaluator.key must be"):
        TabularEvaluator(str(tmp_path / "nb.json.gz"), key="nb-201")
    # a table that does not cover the space stops the search at once, naming the architecture
    with pytest.raises(ArchitectureNotInTable, match=r"^evaluator.table: architecture .* is not in the table"):
        run_search(space, RandomSearch(num_samples=20, seed=0), evaluator, History(), progress=False)
