"""BatchNorm recalibration: the one helper every caller uses (evaluators, supernet scoring, best models)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["BATCH_NORMS", "recalibrate_bn"]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Recompute the running statistics of every tracked BatchNorm of ``model`` from ``batches``.

    The statistics become the equal-weight average over the batches (``momentum=None``) of
    train-mode BN forwards, with every other layer in eval mode and no autograd. Training
    flags and momenta are restored afterwards. Pass cached tensors (a list) to reuse the same
    batches for many models.

    Args:
        model: the network.
        batches: input batches on the model's device.

    Returns:
        The number of batches used (statistics are left untouched when 0 or without BatchNorm).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        >>> recalibrate_bn(net, [torch.randn(4, 1, 5, 5) for _ in range(3)])
        3
    """
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    iterator = iter(batches)
    first = next(iterator, None) if norms else None
    if first is None:
        return 0
    flags = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    used = 0
    try:
        model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        with torch.inference_mode():
            for x in itertools.chain([first], iterator):
                model(x)
                used += 1
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        for module, training in flags:
            module.training = training
    return used
