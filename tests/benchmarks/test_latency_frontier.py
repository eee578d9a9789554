"""benchmarks/latency_frontier.py: the networks a latency bound admits, timed, trained and read as a frontier."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion

BENCHMARK = "latency_frontier"  # benchmarks/latency_frontier.py, loaded by the bench fixture (conftest.py)
TWO_CONVS = ["search_space.width_multipliers=[0.67,1.0]", "search_space.depth_multipliers=[1.0]",
             "search_space.block_types=[conv]"]


def test_the_largest_network_within_the_bound_is_trained_beside_the_models(bench: ModuleType, tmp_path: Path) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=400, n_test=80)
    out, picture = tmp_path / "frontier.json", tmp_path / "frontier.png"
    result = bench.main(["--models", "two_conv_cnn", "resnet_small", "--space", "--bound", "resnet_small",
                         "--top", "1", "--quick", "--epochs", "1", "--jobs", "1", "--rounds", "1", "--repeats", "2",
                         "--output", str(out), "--plot", str(picture), f"data.data_dir={data}",
                         "evaluator.precision=32", *TWO_CONVS])
    assert result["timed"] == 4  # two models and the space's two architectures
    rows = result["networks"]
    assert len(rows) == 3 and [r["latency_ms"] for r in rows] == sorted(r["latency_ms"] for r in rows)
    searched = [r for r in rows if r["name"] not in ("two_conv_cnn", "resnet_small")]
    assert len(searched) == 1 and searched[0]["latency_ms"] <= result["bound_ms"]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows) and rows[0]["frontier"]
    assert json.loads(out.read_text())["networks"][0]["name"] == rows[0]["name"]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_arch_json_given_as_a_model_is_not_taken_again_from_the_space(bench: ModuleType, tmp_path: Path) -> None:
    from lightning_nas.config import build_node

    cfg = bench.compose_config("fashion_mnist_latency", True, TWO_CONVS)
    space = build_node(cfg, "search_space", input_shape=(1, 28, 28), num_classes=10)
    arch = next(a for a in bench.space_architectures(space, 10) if a["width_mult"] == 1.0)
    arch_file = tmp_path / "arch.json"
    arch.save(arch_file)
    args = bench.parse(["--models", "two_conv_cnn", str(arch_file), "--space", "--bound", "two_conv_cnn"])
    rows, _ = bench.collect(args, cfg, (1, 28, 28), 10, tmp_path)
    assert set(args.models) < set(rows) and len(rows) == 3
    assert rows[str(arch_file)].seed_key == str(arch_file)
    (other,) = (row for name, row in rows.items() if name not in args.models)
    assert "width_mult=0.67" in other.name and other.seed_key == other.name.split(":")[0]  # seeded by its digest


def test_the_frontier_holds_the_networks_no_faster_one_matches(bench: ModuleType) -> None:
    rows = [bench.Network(name, name, name, 1, 1, latency_ms=ms, test_acc=acc)
            for name, ms, acc in [("a", 0.05, 0.92), ("b", 0.06, 0.91), ("c", 0.07, 0.93), ("d", 0.07, 0.925)]]
    bench.mark_frontier(rows)
    assert [r.frontier for r in rows] == [True, False, True, False]


def test_bad_arguments_are_named(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--space"])
    assert "--space needs --bound, one of --models ['two_conv_cnn', 'resnet_small'], got None" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--top", "0"])
    assert "--top must be a positive integer, got 0" in capsys.readouterr().err
