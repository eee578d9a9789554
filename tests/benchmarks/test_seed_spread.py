"""benchmarks/seed_spread.py: one network trained with several seeds, CI-sized."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_files import write_fashion

BENCHMARK = "seed_spread"  # benchmarks/seed_spread.py, loaded by the bench fixture (conftest.py)


def test_every_seed_is_trained_and_summarised(bench: ModuleType, tmp_path: Path) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=400, n_test=80)
    out = tmp_path / "spread.json"
    result = bench.main(["--model", "two_conv_cnn", "--quick", "--seeds", "2", "--epochs", "1", "--jobs", "1",
                         "--output", str(out), f"data.data_dir={data}", "evaluator.precision=32"])
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    accs = [run["test_acc"] for run in result["runs"]]
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert result["mean"] == pytest.approx(sum(accs) / 2) and result["min"] == min(accs)
    assert json.loads(out.read_text())["std"] == pytest.approx(result["std"])
    threads = torch.get_num_threads()
    more = bench.main(["--model", "two_conv_cnn", "--quick", "--seeds", "1", "--first-seed", "1", "--epochs", "1",
                       "--jobs", "1", f"data.data_dir={data}", "evaluator.precision=32"])
    assert torch.get_num_threads() == threads  # in this process the seed trained on one thread; restored after
    assert [run["seed"] for run in more["runs"]] == [1] and more["runs"][0] == result["runs"][1] | {
        "seconds": more["runs"][0]["seconds"], "cpu_seconds": more["runs"][0]["cpu_seconds"]}


def test_an_arch_json_of_the_presets_space_is_trained(bench: ModuleType, tmp_path: Path) -> None:
    import numpy as np

    from lightning_nas.config import build_node

    data = write_fashion(tmp_path / "fashion", n_train=400, n_test=80)
    cfg = bench.compose_config("fashion_mnist", True, [f"data.data_dir={data}", "evaluator.precision=32"])
    space = build_node(cfg, "search_space", input_shape=(1, 28, 28), num_classes=10)
    arch_file = tmp_path / "arch.json"
    space.sample(np.random.default_rng(0)).save(arch_file)
    result = bench.main(["--model", str(arch_file), "--quick", "--seeds", "1", "--epochs", "1", "--jobs", "1",
                         f"data.data_dir={data}", "evaluator.precision=32"])
    assert len(result["runs"]) == 1 and 0.0 <= result["runs"][0]["test_acc"] <= 1.0


def test_an_arch_json_of_another_space_is_refused(bench: ModuleType, tmp_path: Path) -> None:
    data = write_fashion(tmp_path / "fashion", n_train=400, n_test=80)
    arch_file = tmp_path / "arch.json"
    arch_file.write_text('{"no_such_decision": 3}')
    with pytest.raises(SystemExit, match="not an architecture of the preset's search space"):
        bench.main(["--model", str(arch_file), "--quick", f"data.data_dir={data}", "evaluator.precision=32"])


def test_summary_of_one_run_has_no_spread(bench: ModuleType) -> None:
    summary = bench.summarise([bench.SeedRun(0, 0.9, 1.0, 1.0)])
    assert summary == {"mean": 0.9, "std": 0.0, "min": 0.9, "max": 0.9}


def test_unknown_model_is_named(bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="'no_such_net': neither a baseline"):
        bench.main(["--model", "no_such_net", "--quick", f"data.data_dir={tmp_path}"])


def test_resnet_with_other_widths(bench: ModuleType) -> None:
    from omegaconf import OmegaConf

    from lightning_nas.hardware.profile import count_params

    cfg = OmegaConf.create({})
    half = bench.build_model("resnet_small:16,32,56,68", cfg, (1, 28, 28), 10)
    assert count_params(half) == 146_650  # the flagship README's half-size ResNet
    assert half(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_params(bench.build_model("resnet_small:16,32,64,128", cfg, (1, 28, 28), 10)) == count_params(
        bench.build_model("resnet_small", cfg, (1, 28, 28), 10))


def test_resnet_with_a_spatial_classifier(bench: ModuleType) -> None:
    from omegaconf import OmegaConf

    from lightning_nas.hardware.profile import count_params

    cfg = OmegaConf.create({})
    flat = bench.build_model("resnet_small:24,48,72/4", cfg, (1, 28, 28), 10)
    gap = bench.build_model("resnet_small:24,48,72", cfg, (1, 28, 28), 10)
    assert count_params(flat) - count_params(gap) == 72 * 15 * 10  # the classifier sees 4x4 positions, not one
    assert count_params(flat) == 136_450
    assert flat(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("spec", ["resnet_small:", "resnet_small:16,x", "resnet_small:16,0", "resnet_small:16/0",
                                  "resnet_small:16/x"])
def test_bad_resnet_widths_are_named(bench: ModuleType, spec: str) -> None:
    from omegaconf import OmegaConf

    pattern = rf"^--model '{spec}': resnet_small:W1,W2,\.\.\.\[/P\] takes positive integer"
    with pytest.raises(SystemExit, match=pattern):
        bench.build_model(spec, OmegaConf.create({}), (1, 28, 28), 10)


def test_seeds_must_be_positive(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--model", "two_conv_cnn", "--seeds", "0"])
    assert "--seeds must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--model", "two_conv_cnn", "--first-seed", "-1"])
    assert "--first-seed must be 0 or more, got -1" in capsys.readouterr().err


def test_bad_override_is_named_in_one_line(bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match=r"^seed_spread: .*evaluator\.no_such_key[^\n]*$"):
        bench.main(["--model", "two_conv_cnn", "--quick", "evaluator.no_such_key=3"])


def test_resnet_pool_size_must_be_positive() -> None:
    from lightning_nas.baselines import resnet_small

    with pytest.raises(ValueError, match="resnet_small: pool_size must be >= 1, got 0"):
        resnet_small((1, 28, 28), 10, pool_size=0)
