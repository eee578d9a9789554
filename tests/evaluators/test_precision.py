"""Training precision: bfloat16 autocast on request, or the faster of float32 and bfloat16 per network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.data import DigitsDataModule
from lightning_nas.evaluators import precision as precision_module
from lightning_nas.evaluators.precision import choose_precision, faster_precision, training_speed, validate_precision
from lightning_nas.evaluators.train import TrainEvaluator
from lightning_nas.planner import measure_throughput


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def test_precision_names_are_checked_with_the_key() -> None:
    assert validate_precision(32) == "32" and validate_precision("bf16-mixed") == "bf16-mixed"
    with pytest.raises(ValueError, match=r"evaluator\.precision must be one of 32, bf16-mixed, auto, got '16'"):
        validate_precision("16")
    with pytest.raises(ValueError, match=r"evaluator\.precision.*True"):
        TrainEvaluator(DigitsDataModule(), precision=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="to be timed"):
        training_speed(small_cnn(), (1, 8, 8), 10, 4, precision="auto")


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_timing_restores_the_weights_buffers_and_random_state(precision: str) -> None:
    model = small_cnn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    assert training_speed(model, (1, 8, 8), 10, batch_size=8, steps=2, warmup=1, channels_last=True,
                          precision=precision) > 0
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.training and model[0].weight.is_contiguous() and model[0].weight.grad is None


def fake_speeds(monkeypatch: pytest.MonkeyPatch, speeds: dict[str, float], native: bool = True) -> list[str]:
    timed: list[str] = []

    def speed(*args: object, precision: str = "32", **kwargs: object) -> float:
        timed.append(precision)
        return speeds[precision]

    monkeypatch.setattr(precision_module, "training_speed", speed)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    return timed


@pytest.mark.parametrize(("bf16_speed", "expected"), [(1200.0, "bf16-mixed"), (1050.0, "32"), (400.0, "32")])
def test_auto_keeps_bfloat16_only_where_it_trains_clearly_faster(
        monkeypatch: pytest.MonkeyPatch, bf16_speed: float, expected: str) -> None:
    fake_speeds(monkeypatch, {"32": 1000.0, "bf16-mixed": bf16_speed})
    choice, speed = choose_precision(small_cnn(), (1, 8, 8), 10, 8)
    assert choice == expected and speed == (bf16_speed if expected == "bf16-mixed" else 1000.0)


def test_auto_times_only_float32_on_a_cpu_without_native_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = fake_speeds(monkeypatch, {"32": 1000.0, "bf16-mixed": 5000.0}, native=False)
    assert choose_precision(small_cnn(), (1, 8, 8), 10, 8) == ("32", 1000.0)
    assert timed == ["32"]
    assert measure_throughput(small_cnn(), (1, 8, 8), 10, 8, precision="auto") == 1000.0


def digits() -> DigitsDataModule:
    return DigitsDataModule(max_train_samples=64, max_val_samples=32, batch_size=32)


@pytest.mark.parametrize(("precision", "bf16"), [("32", 0.0), ("bf16-mixed", 1.0)])
def test_a_fit_records_its_precision(precision: str, bf16: float) -> None:
    evaluator = TrainEvaluator(digits(), max_epochs=1, precision=precision, latency_repeats=1)
    model = small_cnn()
    module = evaluator.fit_model(model, 1, num_classes=10, final=True)
    assert module.fit_metrics.get("train/bf16", 0.0) == bf16 and ("train/bf16" in module.fit_metrics) == bool(bf16)
    assert torch.isfinite(torch.tensor(module.fit_metrics["train/loss"]))
    assert model[0].weight.dtype == torch.float32  # autocast leaves the weights in float32
    assert 0.0 <= evaluator.validate_model(module)["val/acc"] <= 1.0


def test_auto_times_each_network_structure_once(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = fake_speeds(monkeypatch, {"32": 1000.0, "bf16-mixed": 2000.0})
    evaluator = TrainEvaluator(digits(), max_epochs=1, precision="auto", latency_repeats=1)
    for _ in range(2):
        assert evaluator.fit_model(small_cnn(), 1, num_classes=10).fit_metrics["train/bf16"] == 1.0
    assert timed == ["32", "bf16-mixed", "32"]  # one structure: timed once
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert evaluator.training_precision(other) == "bf16-mixed" and len(timed) == 6
    evaluator.accelerator = "gpu"
    assert evaluator.training_precision(nn.Linear(64, 10)) == "32" and len(timed) == 6


def test_bfloat16_is_kept_only_at_the_minimum_speedup() -> None:
    assert faster_precision(1000.0, 1100.0) == "bf16-mixed"
    assert faster_precision(1000.0, 1099.0) == "32"
    assert faster_precision(1000.0, None) == "32"


def test_a_remembered_choice_is_not_timed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = fake_speeds(monkeypatch, {"32": 1000.0, "bf16-mixed": 2000.0})
    evaluator = TrainEvaluator(digits(), max_epochs=1, precision="auto", latency_repeats=1)
    evaluator.remember_precision(small_cnn(), "32")  # decided elsewhere: float32, though bfloat16 times faster
    assert evaluator.fit_model(small_cnn(), 1, num_classes=10).fit_metrics["train/bf16"] == 0.0
    assert timed == []
    with pytest.raises(ValueError, match="'32' or 'bf16-mixed'"):
        evaluator.remember_precision(small_cnn(), "auto")
    with pytest.raises(ValueError, match=r"precision must be one of .*got '16'"):
        evaluator.remember_precision(small_cnn(), "16")
    fixed = TrainEvaluator(digits(), max_epochs=1, precision="32", latency_repeats=1)
    fixed.remember_precision(small_cnn(), "bf16-mixed")  # a fixed precision is not overridden
    assert fixed.training_precision(small_cnn()) == "32"
