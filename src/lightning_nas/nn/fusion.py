"""Inference-only rewrites of a plain model: BatchNorm folded into convolutions, in-place activations.

Both act on neighbours in an ``nn.Sequential`` (the only place where the order of the forward pass is
known) and replace modules in the model's own containers; tensors they read are never written, so a
model that shares weights with a supernet (``freeze(..., share_weights=True)``) leaves the supernet alone.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

__all__ = ["INPLACE_ACTIVATIONS", "fold_batchnorm", "inplace_activations"]

#: activation layers with an ``inplace`` flag that compute the same values either way
INPLACE_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.LeakyReLU, nn.ELU)
# layers whose output is a fresh tensor no other layer reads: an activation right after one may overwrite it
_FRESH_OUTPUT = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _neighbours(model: nn.Module) -> list[tuple[nn.Sequential, str, str]]:
    """``(container, first, second)`` for every two adjacent children of every ``nn.Sequential``."""
    pairs: list[tuple[nn.Sequential, str, str]] = []
    for container in model.modules():
        if isinstance(container, nn.Sequential):
            names = list(container._modules)
            pairs.extend((container, a, b) for a, b in itertools.pairwise(names))
    return pairs


def inplace_activations(model: nn.Module) -> int:
    """Make each activation that directly follows a convolution, linear or BatchNorm layer in an
    ``nn.Sequential`` work in place (a copy with ``inplace=True`` replaces it): the same values, one
    tensor fewer to allocate and write. Returns how many were replaced.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU())
        >>> inplace_activations(net), net[1].inplace
        (1, True)
    """
    replaced = 0
    for container, first, second in _neighbours(model):
        before, activation = container._modules[first], container._modules[second]
        if isinstance(activation, INPLACE_ACTIVATIONS) and not activation.inplace and isinstance(before, _FRESH_OUTPUT):
            faster = copy.copy(activation)
            faster.inplace = True
            container._modules[second] = faster
            replaced += 1
    return replaced


def fold_batchnorm(model: nn.Module) -> int:
    """Fold each eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``
    into that convolution (a new convolution with scaled weights and a bias; the BatchNorm becomes
    ``nn.Identity``). Eval-mode BatchNorm is a per-channel affine map, so the model computes the same
    function up to float rounding; call it after the statistics are final. Returns how many were folded.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
        >>> fold_batchnorm(net), type(net[1]).__name__, net[0].bias is not None
        (1, 'Identity', True)
    """
    folded = 0
    for container, first, second in _neighbours(model):
        conv, norm = container._modules[first], container._modules[second]
        if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and _foldable(norm):
            container._modules[first] = _folded(conv, norm)
            container._modules[second] = nn.Identity()
            folded += 1
    return folded


def _foldable(norm: nn.BatchNorm2d) -> bool:
    return not norm.training and norm.running_mean is not None and norm.running_var is not None


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of ``conv`` computing ``norm(conv(x))`` (new weight and bias tensors, same strides)."""
    assert norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.weight is not None:
            scale = scale * norm.weight
            shift = shift * norm.weight
        if norm.bias is not None:
            shift = shift + norm.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        weight = torch.empty_like(conv.weight)  # keeps the weight's strides (e.g. channels-last)
        torch.mul(conv.weight, scale.to(weight.dtype).view(-1, 1, 1, 1), out=weight)
    result = copy.copy(conv)
    result._parameters = dict(conv._parameters)  # a container of its own: ``conv`` keeps its tensors
    result.weight = nn.Parameter(weight, requires_grad=False)
    result.bias = nn.Parameter(shift.to(weight.dtype), requires_grad=False)
    return result
