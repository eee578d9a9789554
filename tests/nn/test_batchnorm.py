"""recalibrate_bn: equal-weight statistics over cached batches, state restored, no autograd."""

from __future__ import annotations

import torch
from torch import nn

from lightning_nas.nn import recalibrate_bn


def test_statistics_are_the_equal_weight_average_over_batches() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3, momentum=0.2), nn.Dropout(0.5))
    nn.init.ones_(model[0].weight)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 1, 4, 4, generator=g) * scale + shift for scale, shift in ((1, 0), (2, 3), (0.5, -1))]
    assert recalibrate_bn(model, batches) == 3
    mean = torch.stack([b.mean() for b in batches]).mean()
    var = torch.stack([b.flatten().var(unbiased=True) for b in batches]).mean()
    assert torch.allclose(model[1].running_mean, mean.expand(3), atol=1e-6)
    assert torch.allclose(model[1].running_var, var.expand(3), atol=1e-5)
    assert int(model[1].num_batches_tracked) == 3


def test_flags_momenta_and_gradients_are_left_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=0.05), nn.Dropout(0.9))
    model.train()
    model[2].eval()
    recalibrate_bn(model, [torch.randn(8, 4)])
    assert model.training and model[1].training and not model[2].training
    assert model[1].momentum == 0.05
    assert all(p.grad is None for p in model.parameters())
    out = model(torch.randn(8, 4)).sum()  # the recalibrated buffers still work under autograd
    out.backward()
    assert model[0].weight.grad is not None


def test_untracked_norms_and_empty_input_change_nothing() -> None:
    tracked = nn.BatchNorm2d(2)
    tracked.running_mean.fill_(4.0)
    assert recalibrate_bn(tracked, []) == 0 and torch.equal(tracked.running_mean, torch.full((2,), 4.0))
    untracked = nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False))
    assert recalibrate_bn(untracked, [torch.randn(2, 2, 3, 3)]) == 0


def test_cached_batches_can_be_reused_for_many_models() -> None:
    batches = [torch.randn(6, 2, 3, 3) for _ in range(2)]
    first, second = nn.BatchNorm2d(2), nn.BatchNorm2d(2)
    assert recalibrate_bn(first, batches) == recalibrate_bn(second, batches) == 2
    assert torch.equal(first.running_var, second.running_var)
