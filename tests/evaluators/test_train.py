"""TrainEvaluator and ClassificationModule: learning, determinism, failures, split hygiene."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture
from lightning_nas.evaluators import ClassificationModule, TrainEvaluator
from lightning_nas.evaluators.classifier import WarmupCosine, recalibrate_batchnorm
from lightning_nas.evaluators.train import SCREENED
from lightning_nas.hardware.base import HardwareTarget
from lightning_nas.objectives.constraints import parse_constraints
from lightning_nas.objectives.multi import INFEASIBLE_SCORE, MultiObjective
from lightning_nas.spaces.base import SearchSpace

ARCH = Architecture({"width": 8, "kernel": 3, "depth": 2, "block0/op": "conv", "block1/op": "conv",
                     "block2/op": "skip"})


class DigitsModule(L.LightningDataModule):
    """sklearn's 8x8 digits: 1200 train / 300 val / 297 test; counts setup calls, guards the test split."""

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.setup_calls: list[str | None] = []
        self.test_allowed = False

    def setup(self, stage: str | None = None) -> None:
        self.setup_calls.append(stage)
        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x = torch.tensor(x[order] / 8.0 - 1.0, dtype=torch.float32).view(-1, 1, 8, 8)
        y = torch.tensor(y[order], dtype=torch.long)
        self.splits = {"train": (x[:1200], y[:1200]), "val": (x[1200:1500], y[1200:1500]),
                       "test": (x[1500:], y[1500:])}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[Any]:
        return DataLoader(TensorDataset(*self.splits[split]), batch_size=64, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        if not self.test_allowed:
            raise AssertionError("the test split was read during the search")
        return self._loader("test")


class FixedSpace(SearchSpace):
    """A space with no decisions whose only network is ``factory()``."""

    def __init__(self, factory: Any) -> None:
        super().__init__((1, 8, 8), 10)
        self.factory = factory

    def construct(self) -> nn.Module:
        return self.factory()  # type: ignore[no-any-return]


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in forward")


class Affine(nn.Module):
    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class TimesNan(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


@pytest.fixture(scope="module")
def digits() -> DigitsModule:
    return DigitsModule()


def test_evaluate_learns_and_reports_all_metrics(toy_space: SearchSpace, digits: DigitsModule) -> None:
    arch = ARCH.replace(kernel=5, depth=3, **{"block2/op": "conv"})
    result = TrainEvaluator(digits, max_epochs=2, lr=0.03, latency_repeats=3).evaluate(toy_space, arch)
    assert result.ok, result.error
    assert result.metrics["search/val_acc"] > 0.5  # chance is 0.1; about 0.68 here
    assert result.metrics["train/epochs"] == 2
    assert result.metrics["train/steps"] == 2 * 19  # ceil(1200 / 64) per epoch
    expected = {"search/val_acc", "search/val_loss", "train/epochs", "train/steps", "train/loss", "train/acc",
                "train/cpu_s", "model/params", "model/macs", "hw/latency_ms", "hw/latency_p90_ms", "hw/memory_mb"}
    assert set(result.metrics) == expected
    assert result.duration_s > 0 and result.metrics["train/cpu_s"] > 0


def test_a_candidate_breaking_a_size_constraint_is_not_trained(toy_space: SearchSpace,
                                                                digits: DigitsModule) -> None:
    evaluator = TrainEvaluator(digits, max_epochs=2, latency_repeats=3)
    params = evaluator.evaluate(toy_space, ARCH).metrics["model/params"]
    evaluator.screen_constraints = parse_constraints({"max_params": params - 1, "max_latency": 1e6})
    result = evaluator.evaluate(toy_space, ARCH)
    assert result.ok and result.metrics[SCREENED] == 1.0 and result.metrics["model/params"] == params
    assert "search/val_acc" not in result.metrics and "train/epochs" not in result.metrics
    objective = MultiObjective({"accuracy": "max"}, constraints={"max_params": params - 1, "min_accuracy": 0.5})
    assert objective.violation(result) == pytest.approx(1 / (params - 1))  # known without the accuracy
    assert objective(result) == pytest.approx(INFEASIBLE_SCORE - 1 / (params - 1))
    # met, or only known after training: trained as usual
    evaluator.screen_constraints = parse_constraints({"max_params": params, "min_accuracy": 0.99})
    assert evaluator.evaluate(toy_space, ARCH).metrics["train/epochs"] == 2


class _FixedLatency(HardwareTarget):
    """A hardware target reporting ``latency`` ms and counting its measurements (or failing)."""

    name = "fixed"

    def __init__(self, latency: float, fail: bool = False) -> None:
        self.latency, self.fail, self.calls = latency, fail, 0

    def measure(self, model: nn.Module, input_shape: Any) -> dict[str, float]:
        self.calls += 1
        if self.fail:
            raise OSError("no device")
        return {"hw/latency_ms": self.latency, "hw/latency_p90_ms": self.latency}


def test_a_hardware_target_measures_before_training_and_its_latency_screens(toy_space: SearchSpace,
                                                                            digits: DigitsModule) -> None:
    evaluator = TrainEvaluator(digits, max_epochs=1, max_steps=2, latency_repeats=2)
    evaluator.hardware = target = _FixedLatency(5.0)
    evaluator.screen_constraints = parse_constraints({"max_latency": 4.0})
    slow = evaluator.evaluate(toy_space, ARCH)
    assert slow.ok and slow.metrics[SCREENED] == 1.0 and slow.metrics["hw/latency_ms"] == 5.0
    assert "train/epochs" not in slow.metrics and target.calls == 1
    evaluator.screen_constraints = parse_constraints({"max_latency": 6.0})
    fast = evaluator.evaluate(toy_space, ARCH)
    assert fast.ok and SCREENED not in fast.metrics and fast.metrics["train/epochs"] == 1
    assert fast.metrics["hw/latency_ms"] == 5.0  # the target's figure replaces the eager one
    # a bound below the eager latency but above the target's: the eager figure must not screen it
    evaluator.hardware, evaluator.screen_constraints = _FixedLatency(1e-4), parse_constraints({"max_latency": 1e-3})
    assert SCREENED not in evaluator.evaluate(toy_space, ARCH).metrics
    evaluator.hardware = target
    # a size already over budget is screened without the (costly) hardware measurement
    evaluator.screen_constraints = parse_constraints({"max_params": 1, "max_latency": 6.0})
    assert evaluator.evaluate(toy_space, ARCH).metrics[SCREENED] == 1.0 and target.calls == 2
    # the final report carries the target's figures too
    evaluator.final_max_epochs, evaluator.screen_constraints, digits.test_allowed = 1, [], True
    assert evaluator.test(toy_space, ARCH)["hw/latency_ms"] == 5.0 and target.calls == 3


def test_a_failing_hardware_measurement_fails_the_candidate_with_the_target_named(toy_space: SearchSpace,
                                                                                  digits: DigitsModule) -> None:
    evaluator = TrainEvaluator(digits, max_epochs=1, max_steps=2, latency_repeats=2)
    evaluator.hardware = _FixedLatency(1.0, fail=True)
    result = evaluator.evaluate(toy_space, ARCH)
    assert not result.ok and result.error == "RuntimeError: hardware.fixed: OSError: no device"
    assert "model/params" in result.metrics  # what was measured before is kept


def test_evaluate_is_deterministic_and_leaves_global_rng_alone(toy_space: SearchSpace,
                                                                 digits: DigitsModule) -> None:
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    evaluator = TrainEvaluator(digits, max_epochs=1, max_steps=6, optimizer="sgd", lr=0.05, latency_repeats=2)
    first = evaluator.evaluate(toy_space, ARCH)
    second = TrainEvaluator(digits, max_epochs=1, max_steps=6, optimizer="sgd", lr=0.05,
                            latency_repeats=2).evaluate(toy_space, ARCH)
    assert first.ok and second.ok
    for key in ("search/val_acc", "search/val_loss", "train/loss", "model/params"):
        assert first.metrics[key] == second.metrics[key]
    assert first.metrics["train/steps"] == 6
    other_seed = TrainEvaluator(digits, max_epochs=1, max_steps=6, optimizer="sgd", lr=0.05, seed=1,
                                latency_repeats=2).evaluate(toy_space, ARCH)
    assert other_seed.metrics["search/val_loss"] != first.metrics["search/val_loss"]
    assert torch.equal(torch_state, torch.get_rng_state())
    assert not torch.are_deterministic_algorithms_enabled()
    assert np.array_equal(np_state[1], np.random.get_state()[1]) and py_state == random.getstate()


def test_forward_error_gives_failed_result_with_partial_metrics(digits: DigitsModule) -> None:
    space = FixedSpace(lambda: nn.Sequential(nn.Flatten(), Boom()))
    result = TrainEvaluator(digits, max_epochs=1).evaluate(space, Architecture())
    assert result.status == "failed"
    assert result.error == "RuntimeError: boom in forward"
    assert result.metrics == {"model/params": 650.0}


def test_nan_loss_gives_failed_result_mentioning_nan(digits: DigitsModule) -> None:
    space = FixedSpace(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10), TimesNan()))
    result = TrainEvaluator(digits, max_epochs=1, latency_repeats=2).evaluate(space, Architecture())
    assert result.status == "failed"
    assert result.error is not None and "FloatingPointError" in result.error and "nan" in result.error
    assert result.metrics["model/params"] == 650.0 and "hw/latency_ms" in result.metrics


def test_search_never_reads_test_split_and_sets_up_once(toy_space: SearchSpace) -> None:
    data = DigitsModule()
    evaluator = TrainEvaluator(data, max_epochs=1, max_steps=2, latency_repeats=2)
    for depth in (1, 2):
        assert evaluator.evaluate(toy_space, ARCH.replace(depth=depth)).ok
    assert data.setup_calls == ["fit"]
    data.test_allowed = True
    report = evaluator.test(toy_space, ARCH)
    assert data.setup_calls == ["fit", "test"]
    assert {"test/acc", "test/loss", "val/acc", "val/loss", "model/params", "hw/latency_ms"} <= set(report)
    assert 0.0 <= report["test/acc"] <= 1.0


def test_final_training_uses_final_max_epochs(toy_space: SearchSpace, digits: DigitsModule) -> None:
    digits.test_allowed = True
    evaluator = TrainEvaluator(digits, max_epochs=1, final_max_epochs=2, limit_train_batches=3,
                               latency_repeats=2)
    assert evaluator.evaluate(toy_space, ARCH).metrics["train/steps"] == 3
    report = evaluator.test(toy_space, ARCH)
    assert report["train/epochs"] == 2 and report["train/steps"] == 6


def test_fit_and_score_a_plain_model_for_reuse(digits: DigitsModule) -> None:
    evaluator = TrainEvaluator(digits, optimizer="sgd", lr=0.1, warmup_epochs=1, label_smoothing=0.1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    before = evaluator.validate_model(model)
    module = evaluator.fit_model(model, max_epochs=2)
    assert isinstance(module, ClassificationModule) and module.model is model
    assert module.fit_metrics["train/epochs"] == 2
    after = evaluator.validate_model(model)
    assert after["val/acc"] > 0.8 > before["val/acc"]
    digits.test_allowed = True
    assert evaluator.test_model(module)["test/acc"] > 0.8


def test_space_and_datamodule_mismatch_is_reported(digits: DigitsModule) -> None:
    class Wide(FixedSpace):
        def __init__(self) -> None:
            SearchSpace.__init__(self, (3, 8, 8), 10)
            self.factory = nn.Identity

    result = TrainEvaluator(digits).evaluate(Wide(), Architecture())
    assert result.status == "failed" and "input_shape" in (result.error or "")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"lr": 0.0}, "evaluator.lr"), ({"optimizer": "adam"}, "evaluator.optimizer"),
     ({"max_epochs": 0}, "evaluator.max_epochs"),
     ({"limit_train_batches": 1.5}, "evaluator.limit_train_batches"),
     ({"final_max_epochs": 0}, "evaluator.final_max_epochs"), ({"momentum": 1.0}, "evaluator.momentum"),
     ({"latency_repeats": 0}, "evaluator.latency_repeats"), ({"max_steps": 0}, "evaluator.max_steps")],
)
def test_evaluator_validates_eagerly(digits: DigitsModule, kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TrainEvaluator(digits, **kwargs)


def test_classification_module_validates_and_schedules() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationModule(nn.Linear(4, 3), num_classes=3, label_smoothing=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationModule(nn.Linear(4, 3), num_classes=1)
    factor = WarmupCosine(warmup_steps=4, total_steps=14)
    assert [round(factor(s), 2) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert factor(9) == pytest.approx(0.5) and factor(14) == pytest.approx(0.0)


def test_a_retargeted_schedule_continues_and_ends_at_the_new_total() -> None:
    factor = WarmupCosine(warmup_steps=4, total_steps=14)
    before = factor(9)
    factor.retarget(9, 24)  # the run got longer at step 9: half-way through the decay, 15 steps left
    assert factor(9) == pytest.approx(before) and factor(24) == pytest.approx(0.0)
    assert factor.progress(9) == pytest.approx(0.5) and factor.progress(16.5) == pytest.approx(0.75)
    factor.retarget(16, 18)  # shorter: the rest of the decay in 2 steps
    assert factor(18) == pytest.approx(0.0) and factor(17) < factor(16)
    warming = WarmupCosine(warmup_steps=4, total_steps=14)
    warming.retarget(2, 24)  # during the warm-up: the warm-up stays, the decay ends at the new total
    assert warming(3) == pytest.approx(0.8) and warming(14) == pytest.approx(0.5)


def test_recalibrate_batchnorm_uses_final_weights_and_restores_state() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    bn = model[1]
    bn.momentum = 0.3
    inputs = [torch.randn(8, 3) * 3 + 1 for _ in range(4)]
    assert recalibrate_batchnorm(model, inputs) == 4
    with torch.no_grad():
        features = [model[0](x) for x in inputs]
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, expected_var, atol=1e-5)
    assert bn.momentum == 0.3 and all(m.training for m in model.modules())
    before = bn.running_mean.clone()
    assert recalibrate_batchnorm(model, []) == 0
    assert torch.equal(before, bn.running_mean)


def test_fit_recalibrates_batchnorm_so_eval_matches_training(digits: DigitsModule) -> None:
    # one short epoch with a slow BN average: the running statistics stay near their initial
    # (0, 1) while the features have mean 50 and scale 10: without recalibration val acc is ~0.3
    evaluator = TrainEvaluator(digits, max_epochs=1, lr=0.05)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), Affine(10.0, 50.0),
                          nn.BatchNorm1d(64, momentum=0.01), nn.ReLU(), nn.Linear(64, 10))
    module = evaluator.fit_model(model)
    assert int(model[3].num_batches_tracked) == 19  # re-estimated over every training batch (< 20)
    assert evaluator.validate_model(module)["val/acc"] > 0.85  # ~0.97 here
