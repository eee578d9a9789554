"""SupernetEvaluator and recalibrate_bn: inherited-weight scores, BN statistics, failures, retrain."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.supernet import SupernetEvaluator, recalibrate_bn, retrain
from lightning_nas.evaluators.train import seeded
from lightning_nas.nn import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    LayerChoice,
    Repeat,
    ValueChoice,
    freeze,
)
from lightning_nas.nn.fusion import fold_batchnorm, inplace_activations
from lightning_nas.results.history import History
from lightning_nas.search import run_search
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.supernet import SupernetSpace
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.supernet import SupernetModule

TRAINER: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
           "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
CLASSES = 4


def pattern_data(n: int, seed: int) -> TensorDataset:
    """Easy 4-class images: horizontal stripes, vertical stripes, checkerboard or flat, plus noise."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.arange(8).view(8, 1), torch.arange(8).view(1, 8)
    patterns = torch.stack([(rows % 2).expand(8, 8), (cols % 2).expand(8, 8), (rows + cols) % 2,
                            torch.full((8, 8), 0.5)]).float()
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return TensorDataset(patterns[y].unsqueeze(1) + 0.3 * torch.randn(n, 1, 8, 8, generator=g), y)


class PatternData(L.LightningDataModule):
    """256 train / 128 val / 128 test pattern images."""

    input_shape = (1, 8, 8)
    num_classes = CLASSES

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(pattern_data(256, 0), batch_size=32, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(pattern_data(128, 1), batch_size=64)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(pattern_data(128, 2), batch_size=64)


class SmallSpace(SearchSpace):
    """Width, kernel, depth and a per-block op (96 architectures), like the shared toy space."""

    def construct(self) -> nn.Module:
        width = ValueChoice([4, 8], label="width")
        kernel = ValueChoice([3, 5], label="kernel")

        def block(i: int) -> nn.Module:
            op = LayerChoice({"conv": lambda: ElasticConv2d(width, width, kernel), "skip": nn.Identity},
                             label=f"block{i}/op")
            return nn.Sequential(op, ElasticBatchNorm2d(width), nn.ReLU())

        return nn.Sequential(ElasticConv2d(1, width, 3), Repeat(block, [1, 2, 3], label="depth"),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), ElasticLinear(width, self.num_classes))


@pytest.fixture
def space() -> SearchSpace:
    return SmallSpace(input_shape=(1, 8, 8), num_classes=CLASSES)


@pytest.fixture(scope="module")
def trained() -> SupernetModule:
    with seeded(0):
        module = SupernetModule(SmallSpace((1, 8, 8), CLASSES), optimizer="adamw", lr=0.01)
        L.Trainer(max_epochs=12, **TRAINER).fit(module, PatternData())
    return module


def test_recalibrate_bn_matches_hand_computed_statistics() -> None:
    model = nn.Sequential(nn.BatchNorm2d(2, momentum=0.3), nn.Dropout(0.5))
    model.train()
    model[0].running_mean.fill_(7.0)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 2, 3, 3, generator=g) + shift for shift in (0.0, 2.0, -5.0)]
    assert recalibrate_bn(model, batches) == 3
    expected_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)  # equal weight per batch
    expected_var = torch.stack([b.transpose(0, 1).reshape(2, -1).var(1, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(model[0].running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(model[0].running_var, expected_var, atol=1e-5)
    assert model[0].momentum == 0.3 and model.training and model[1].training  # restored
    assert recalibrate_bn(model, []) == 0 and torch.allclose(model[0].running_mean, expected_mean)


def test_recalibration_changes_subnet_statistics(trained: SupernetModule, space: SearchSpace) -> None:
    arch = Architecture({"width": 4, "kernel": 3, "depth": 2, "block0/op": "conv", "block1/op": "conv",
                         "block2/op": "skip"})
    evaluator = SupernetEvaluator(trained, PatternData(), calibration_batches=3, measure_hardware=False)
    inherited = freeze(trained.supernet, arch)
    recalibrated = evaluator.subnet(arch)
    names = [n for n, _ in inherited.named_buffers() if n.endswith("running_mean")]
    assert names
    before = dict(inherited.named_buffers())
    after = dict(recalibrated.named_buffers())
    assert all(not torch.allclose(before[n], after[n]) for n in names)
    assert not recalibrated.training


def test_scores_trained_paths_above_chance(trained: SupernetModule, space: SearchSpace) -> None:
    evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=False)
    rng = np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(12)}
    results = [evaluator.evaluate(space, arch) for arch in archs]
    assert all(r.ok for r in results)
    accuracies = [r.metrics["search/val_acc"] for r in results]
    assert min(accuracies) > 0.4 and np.mean(accuracies) > 0.65  # chance is 0.25
    assert all(r.metrics["model/params"] > 0 for r in results)
    assert evaluator.num_evaluated == len(archs) and evaluator.subnets_per_second > 0


def test_channels_last_scores_equal_and_leave_the_supernet_alone(trained: SupernetModule,
                                                                   space: SearchSpace) -> None:
    before = {n: (p.stride(), p.detach().clone()) for n, p in trained.supernet.named_parameters()}
    scores = {}
    for channels_last in (False, True):
        evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=False, channels_last=channels_last)
        rng = np.random.default_rng(1)
        archs = sorted({space.sample(rng) for _ in range(10)}, key=lambda a: a.digest())
        scores[channels_last] = [evaluator.evaluate(space, a).metrics["search/val_acc"] for a in archs]
    assert scores[True] == scores[False]
    for name, param in trained.supernet.named_parameters():
        stride, value = before[name]
        assert param.stride() == stride and torch.equal(param, value), name


@pytest.mark.parametrize("measure_hardware", [False, True])
def test_channels_last_subnets_count_every_parameter(trained: SupernetModule, space: SearchSpace,
                                                     measure_hardware: bool) -> None:
    """The channels_last copies of the convolution weights are parameters of the subnet too: model/params
    left them out (4.4K instead of 66.1K for an efficient_convnet path), so max_params let big subnets in."""
    rng = np.random.default_rng(2)
    archs = sorted({space.sample(rng) for _ in range(4)}, key=lambda a: a.digest())
    evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=measure_hardware, channels_last=True,
                                  latency_repeats=1)
    for arch in archs:
        expected = sum(p.numel() for p in freeze(trained.supernet, arch).parameters())
        assert evaluator.evaluate(space, arch).metrics["model/params"] == expected


def test_bad_candidate_fails_without_raising(trained: SupernetModule, space: SearchSpace) -> None:
    evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=False)
    result = evaluator.evaluate(space, Architecture({"width": 5}))
    assert not result.ok and "ValueError" in (result.error or "")


def test_hardware_metrics_are_cached_per_arch(trained: SupernetModule, space: SearchSpace) -> None:
    evaluator = SupernetEvaluator(trained, PatternData(), max_val_batches=1, latency_repeats=2)
    arch = space.sample(np.random.default_rng(1))
    first, second = evaluator.evaluate(space, arch), evaluator.evaluate(space, arch)
    for key in ("model/params", "model/macs", "hw/latency_ms", "hw/memory_mb"):
        assert math.isfinite(first.metrics[key]) and first.metrics[key] == second.metrics[key]


def test_plain_supernet_with_loaders_gets_a_space() -> None:
    supernet = SmallSpace((1, 8, 8), CLASSES).supernet()
    data = PatternData()
    evaluator = SupernetEvaluator(supernet, train_dataloader=data.train_dataloader(),
                                  val_dataloader=data.val_dataloader(), measure_hardware=False)
    space = evaluator.space()
    assert isinstance(space, SupernetSpace) and space.input_shape == (1, 8, 8) and space.num_classes == CLASSES
    assert evaluator.evaluate(space, space.sample(np.random.default_rng(0))).ok


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"calibration_batches": -1}, "calibration_batches"),
    ({"max_val_batches": 0}, "max_val_batches"),
    ({"latency_repeats": 0}, "latency_repeats"),
    ({"datamodule": None}, "datamodule"),
])
def test_invalid_options(trained: SupernetModule, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SupernetEvaluator(trained, **{"datamodule": PatternData(), **kwargs})


@pytest.mark.parametrize("mode", ["scratch", "finetune"])
def test_retrain_reports_test_accuracy(trained: SupernetModule, mode: str) -> None:
    arch = Architecture({"width": 8, "kernel": 3, "depth": 1, "block0/op": "conv", "block1/op": "skip",
                         "block2/op": "skip"})
    metrics = retrain(trained, arch, PatternData(), mode=mode, max_epochs=1, lr=0.01)
    assert metrics["test/acc"] > 0.4 and "val/acc" in metrics and metrics["model/params"] > 0
    with pytest.raises(ValueError, match="mode"):
        retrain(trained, arch, PatternData(), mode="zero-shot")


def _sample(space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    return sorted({space.sample(rng) for _ in range(count)}, key=lambda a: a.digest())


@pytest.mark.parametrize("measure_hardware", [False, True])
def test_workers_score_what_one_process_scores(trained: SupernetModule, space: SearchSpace,
                                               measure_hardware: bool) -> None:
    archs = [*_sample(space, 6, 3), Architecture({"width": 5})]  # the last one is a bad candidate
    options = {"measure_hardware": measure_hardware, "latency_repeats": 1, "max_val_batches": 1}
    alone = SupernetEvaluator(trained, PatternData(), **options)
    forked = SupernetEvaluator(trained, PatternData(), workers=2, **options)
    try:
        expected, results = alone.evaluate_many(space, archs), forked.evaluate_many(space, archs)
        assert forked._scorer is not None  # scored in worker processes
    finally:
        forked.close()
    assert [r.status for r in results] == [r.status for r in expected] == ["ok"] * 6 + ["failed"]
    exact = ("search/val_acc", "model/params", "model/macs", "hw/memory_mb")
    for got, want in zip(results, expected, strict=True):
        assert {k: got.metrics[k] for k in exact if k in want.metrics} == {k: want.metrics[k] for k in exact
                                                                           if k in want.metrics}
        assert got.metrics.keys() == want.metrics.keys()
    assert forked.num_evaluated == 6 and forked.subnets_per_second > 0


def test_workers_follow_changed_supernet_weights(space: SearchSpace) -> None:
    """The forked workers score the supernet as it is now: changed weights fork a fresh pool."""
    with seeded(1):
        module = SupernetModule(SmallSpace((1, 8, 8), CLASSES))
    archs = _sample(space, 4, 4)
    forked = SupernetEvaluator(module, PatternData(), workers=2, measure_hardware=False, calibration_batches=1)
    try:
        first = [r.metrics for r in forked.evaluate_many(space, archs)]
        pool = forked._scorer
        assert [r.metrics for r in forked.evaluate_many(space, archs)] == first
        assert forked._scorer is pool  # the pool is reused
        with torch.no_grad():
            for param in module.supernet.parameters():
                param.mul_(-1.0)
        changed = forked.evaluate_many(space, archs)
        assert forked._scorer is not pool
    finally:
        forked.close()
    alone = SupernetEvaluator(module, PatternData(), measure_hardware=False, calibration_batches=1)
    assert [r.metrics for r in changed] == [alone.evaluate(space, a).metrics for a in archs]


def _exits_in_a_worker(parent: int) -> Any:
    def score(model: nn.Module, batches: Any) -> float:
        if os.getpid() != parent:
            os._exit(3)  # a worker dying mid-candidate
        return 0.5
    return score


def test_a_dead_worker_leaves_its_candidates_to_this_process(trained: SupernetModule, space: SearchSpace) -> None:
    archs = _sample(space, 3, 5)
    forked = SupernetEvaluator(trained, PatternData(), workers=2, measure_hardware=False,
                               val_score=_exits_in_a_worker(os.getpid()))
    try:
        results = forked.evaluate_many(space, archs)
    finally:
        forked.close()
    assert [r.metrics["search/val_acc"] for r in results] == [0.5] * len(archs)
    assert forked._scorer is None  # the broken pool was let go


def test_folded_batchnorm_scores_equal_unfolded(trained: SupernetModule, space: SearchSpace) -> None:
    archs = _sample(space, 10, 6)
    before = {n: p.detach().clone() for n, p in trained.supernet.named_parameters()}
    results = {}
    for fold_bn in (False, True):
        evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=True, latency_repeats=1,
                                      fold_bn=fold_bn)
        results[fold_bn] = [evaluator.evaluate(space, a).metrics for a in archs]
    for folded, plain in zip(results[True], results[False], strict=True):
        assert folded["search/val_acc"] == pytest.approx(plain["search/val_acc"], abs=1 / 128)  # one image at most
        assert folded["model/params"] == plain["model/params"] and folded["model/macs"] == plain["model/macs"]
    assert sum(f["search/val_acc"] == p["search/val_acc"] for f, p in zip(results[True], results[False],
                                                                          strict=True)) >= 9
    assert all(torch.equal(p, before[n]) for n, p in trained.supernet.named_parameters())


@pytest.mark.parametrize("channels_last", [False, True])
def test_fold_batchnorm_computes_the_same_function(trained: SupernetModule, space: SearchSpace,
                                                   channels_last: bool) -> None:
    evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=False, channels_last=channels_last)
    arch = Architecture({"width": 8, "kernel": 5, "depth": 3, "block0/op": "conv", "block1/op": "skip",
                         "block2/op": "conv"})
    model = evaluator._scoring_subnet(arch)
    x = evaluator._val_batches()[0][0]
    with torch.inference_mode():
        expected = model(x)
    strides = [m.weight.stride() for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert fold_batchnorm(model) == 2  # the two conv blocks; the skip block's BatchNorm follows an Identity
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1
    assert [m.weight.stride() for m in model.modules() if isinstance(m, nn.Conv2d)] == strides
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_inplace_activations_compute_the_same_values() -> None:
    with seeded(0):
        net = nn.Sequential(nn.ReLU(), nn.Conv2d(2, 3, 3), nn.SiLU(), nn.BatchNorm2d(3), nn.ReLU6(),
                            nn.Sequential(nn.Identity(), nn.Hardswish())).eval()
    x = torch.randn(2, 2, 5, 5)
    expected, original = net(x), net[2]
    assert inplace_activations(net) == 2  # after the conv and the BatchNorm; not first, not after Identity
    assert not net[0].inplace and net[2].inplace and net[4].inplace and not net[5][1].inplace
    assert not original.inplace  # replaced by a copy, not changed
    y = x.clone()
    assert torch.equal(net(y), expected) and torch.equal(y, x)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 0}, "evaluator.workers must be an int >= 1, got 0"),
    ({"workers": 2.0}, "evaluator.workers must be an int >= 1, got 2.0"),
    ({"workers": True}, "evaluator.workers must be an int >= 1, got True"),
    ({"fold_bn": "yes"}, "evaluator.fold_bn must be a bool, got 'yes'"),
    ({"channels_last": 1}, "evaluator.channels_last must be a bool, got 1"),
])
def test_invalid_speed_options_are_named(trained: SupernetModule, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SupernetEvaluator(trained, PatternData(), **kwargs)


def _counted(many: Any, calls: list[int]) -> Any:
    def evaluate_many(space: SearchSpace, archs: list[Architecture]) -> Any:
        calls.append(len(archs))
        return many(space, archs)
    return evaluate_many


def test_the_search_loop_scores_batches_in_the_workers(trained: SupernetModule, space: SearchSpace) -> None:
    """``run_search`` asks ``workers`` candidates per batch of an evaluator with workers; the history is the
    one the in-process evaluator writes."""
    histories = {}
    for workers in (1, 2):
        evaluator = SupernetEvaluator(trained, PatternData(), measure_hardware=False, workers=workers)
        calls: list[int] = []
        evaluator.evaluate_many = _counted(evaluator.evaluate_many, calls)  # type: ignore[method-assign]
        strategy = EvolutionStrategy(num_samples=12, seed=0, population_size=6, generations=2)
        try:
            history = run_search(space, strategy, evaluator, History(), progress=False)
        finally:
            evaluator.close()
        histories[workers] = [(r.arch, r.result.metrics) for r in history]
        assert max(calls, default=1) == workers and len(history) == 12
    assert histories[2] == histories[1]
