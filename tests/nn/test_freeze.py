"""freeze: only the chosen path is copied; share_weights aliases the supernet's parameters, never its BN statistics."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lightning_nas.nn import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    LayerChoice,
    ValueChoice,
    activate,
    freeze,
    recalibrate_bn,
)


def _supernet() -> nn.Module:
    width = ValueChoice([4, 8], label="width")
    return nn.Sequential(
        ElasticConv2d(1, width, ValueChoice([3, 5], label="kernel")),
        ElasticBatchNorm2d(width),
        LayerChoice({"bn": lambda: nn.BatchNorm2d(8), "skip": nn.Identity}, label="op"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


ARCH = {"width": 8, "kernel": 3, "op": "bn"}


def _storages(model: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


def test_shared_freeze_aliases_parameters_and_matches_the_path() -> None:
    supernet = _supernet().eval()
    frozen = freeze(supernet, ARCH, share_weights=True).eval()
    assert _storages(frozen) <= _storages(supernet)  # views of the supernet's storage: nothing copied
    assert frozen[2].weight is supernet[2].candidates["bn"].weight
    assert frozen[0].weight.shape == (8, 1, 3, 3)  # the centre crop of the 5x5 kernel
    x = torch.randn(3, 1, 6, 6)
    activate(supernet, ARCH)
    assert torch.allclose(frozen(x), supernet(x), atol=1e-6)


def test_shared_freeze_trains_the_supernet_weights() -> None:
    supernet = _supernet()
    frozen = freeze(supernet, ARCH, share_weights=True).eval()  # eval: a train-mode BN would cancel the gradient
    before = supernet[0].weight.detach().clone()
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.1)
    frozen(torch.randn(4, 1, 6, 6)).sum().backward()
    optimizer.step()
    changed = (supernet[0].weight.detach() != before).flatten(1).any(1)
    assert changed.all()  # the 3x3 centre of every output channel moved with the frozen model's step
    assert torch.equal(supernet[0].weight[:, :, 0].detach(), before[:, :, 0])  # the 5x5 border did not


def test_shared_freeze_keeps_batchnorm_statistics_apart() -> None:
    supernet = _supernet()
    stats = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "tracked" in k}
    frozen = freeze(supernet, ARCH, share_weights=True)
    frozen.train()(torch.randn(4, 1, 6, 6) + 3.0)
    assert recalibrate_bn(frozen, [torch.randn(4, 1, 6, 6) * 5 for _ in range(2)]) == 2
    assert all(torch.equal(supernet.state_dict()[k], v) for k, v in stats.items())
    assert not torch.equal(frozen[1].running_mean, supernet[1].running_mean[:8])
    assert supernet.training and not any(isinstance(m, nn.BatchNorm2d) and m.running_mean is
                                         supernet[2].candidates["bn"].running_mean for m in frozen.modules())


def test_copied_freeze_leaves_the_supernet_untouched() -> None:
    supernet = _supernet()
    snapshot = {k: v.clone() for k, v in supernet.state_dict().items()}
    frozen = freeze(supernet, ARCH)
    assert not _storages(frozen) & _storages(supernet)
    with torch.no_grad():
        for p in frozen.parameters():
            p.add_(1.0)
    frozen.train()(torch.randn(4, 1, 6, 6))
    assert all(torch.equal(supernet.state_dict()[k], v) for k, v in snapshot.items())


def test_freeze_restores_the_supernet_active_path() -> None:
    supernet = _supernet()
    activate(supernet, {"width": 4, "kernel": 5, "op": "skip"})
    for share in (False, True):
        freeze(supernet, ARCH, share_weights=share)
    assert supernet[0].kernel_size.value == 5 and supernet[2].choice.value == "skip"


def test_module_shared_inside_the_supernet_stays_shared_once_frozen() -> None:
    conv = nn.Conv2d(1, 1, 1)
    supernet = nn.Sequential(conv, LayerChoice({"a": conv, "b": nn.Identity()}, label="op"))
    for share in (False, True):
        frozen = freeze(supernet, {"op": "a"}, share_weights=share)
        assert frozen[0] is frozen[1]


def test_many_shared_freezes_agree_with_copies() -> None:
    supernet = _supernet().eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, 1, 6, 6)
    for _ in range(5):
        arch = {"width": int(rng.choice([4, 8])), "kernel": int(rng.choice([3, 5])),
                "op": str(rng.choice(["bn", "skip"]))}
        if arch["op"] == "bn" and arch["width"] == 4:
            arch["op"] = "skip"  # the BN candidate is built for 8 channels
        shared, copied = freeze(supernet, arch, share_weights=True).eval(), freeze(supernet, arch).eval()
        assert torch.equal(shared(x), copied(x))


def test_evaluator_scores_shared_subnets_but_hands_out_copies() -> None:
    from lightning_nas.evaluators.supernet import SupernetEvaluator

    supernet = _supernet()
    batches = [(torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 3]))]
    evaluator = SupernetEvaluator(supernet, calibration_batches=1, measure_hardware=False,
                                  train_dataloader=batches, val_dataloader=batches)
    storages = _storages(supernet)
    assert _storages(evaluator.subnet(ARCH, share_weights=True)) <= storages
    assert not _storages(evaluator.subnet(ARCH)) & storages


def test_frozen_layers_of_one_shape_are_independent_modules() -> None:
    supernet = _supernet()
    arch = {"width": 4, "kernel": 3, "op": "skip"}
    first, second = freeze(supernet, arch, share_weights=True), freeze(supernet, arch, share_weights=True)
    first[0].weight = nn.Parameter(torch.zeros_like(first[0].weight))  # a change to one frozen layer ...
    first[1].running_mean.fill_(7.0)
    storage = supernet[0].weight.untyped_storage().data_ptr()
    assert second[0].weight.abs().sum() > 0 and second[0].weight.untyped_storage().data_ptr() == storage
    assert not torch.equal(second[1].running_mean, first[1].running_mean)  # ... stays in it
    assert isinstance(second[0], nn.Conv2d) and second[0].weight.shape == (4, 1, 3, 3)
    assert isinstance(second[1], nn.BatchNorm2d) and second[1].num_features == 4
    assert first[1].running_mean.device.type == "cpu" and second[1].num_batches_tracked.dtype == torch.long
