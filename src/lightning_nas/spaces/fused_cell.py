"""The relaxed NAS-Bench-201 cell with fused mixed ops: what every DARTS step of the nb201 space runs.

All edges leaving a node read the same input, so per source node the cell computes one ReLU, one
average pool, one grouped-by-concatenation 1x1 conv and one 3x3 conv whose output channels hold
every outgoing edge, and one BatchNorm over them (per channel, so identical to one BN per edge).
Each edge then takes its channel slice, and the node sums the alpha-weighted terms. ``none`` is never
computed (its term is zero), nor is an op whose weight is zero on every edge of a node when the
weights need no gradient. The search-phase BatchNorm (no affine) keeps only its output for the
backward pass (:class:`_OutputSavingBatchNorm`): the conv output is freed after the forward.

Example:
    >>> cell = FusedNB201Cell(8)
    >>> cell(torch.randn(2, 8, 5, 5), torch.softmax(torch.randn(6, 5), -1)).shape
    torch.Size([2, 8, 5, 5])
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from lightning_nas.spaces.cell_ops import NB201_OPS, channel_shuffle

__all__ = ["FusedNB201Cell", "average_pool_3x3", "batch_norm_saving_output"]

EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, 4) for i in range(j))
SKIP, CONV1, CONV3, POOL = (NB201_OPS.index(n) for n in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                           "avg_pool_3x3"))


class _OutputSavingBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm without affine that saves its output (not its input) for backward.

    With ``y = (z - mean) * rstd`` the input gradient is ``rstd * (g - mean(g) - y * mean(g * y))``
    (means over batch and space), so ``y`` and ``rstd`` suffice; the output is kept anyway by the
    alpha-weighted sum that follows, so the conv output ``z`` need not be.
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, norm: nn.BatchNorm2d, update_stats: bool
    ) -> torch.Tensor:
        momentum = 0.1 if norm.momentum is None else norm.momentum
        running = update_stats and norm.track_running_stats and norm.running_mean is not None
        y, _, rstd = torch.native_batch_norm(
            z, None, None, norm.running_mean if running else None, norm.running_var if running else None,
            True, momentum, norm.eps,
        )
        if running and norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
        ctx.save_for_backward(y, rstd)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        y, rstd = ctx.saved_tensors
        # the native kernel with input y, mean 0, invstd 1 and weight rstd computes exactly that
        zeros, ones = torch.zeros_like(rstd), torch.ones_like(rstd)
        grad_z, _, _ = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), y, rstd, None, None, zeros, ones, True, 0.0, [True, False, False]
        )
        return grad_z, None, None


def batch_norm_saving_output(z: torch.Tensor, norm: nn.BatchNorm2d, update_stats: bool = True) -> torch.Tensor:
    """``norm(z)`` for a non-affine BatchNorm; in training with autograd only the output is saved.

    ``update_stats=False`` leaves the running statistics alone (a checkpointed forward run again).
    """
    if norm.affine or not norm.training or not torch.is_grad_enabled() or not z.requires_grad:
        if update_stats:
            return norm(z)
        return F.batch_norm(z, None, None, None, None, True, 0.0, norm.eps) if norm.training else norm(z)
    return cast(torch.Tensor, _OutputSavingBatchNorm.apply(z, norm, update_stats))


def average_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)`` as a depthwise box filter over the
    border counts: the same values, about twice as fast forward and backward on CPU."""
    channels, (height, width) = x.shape[1], x.shape[2:]
    box = x.new_full((channels, 1, 3, 3), 1.0)
    counts = F.conv2d(x.new_ones(1, 1, height, width), x.new_ones(1, 1, 3, 3), padding=1)
    return F.conv2d(x, box, padding=1, groups=channels) / counts


class _SourceOps(nn.Module):
    """The parametrised ops of every edge leaving one node: 1x1 and 3x3 ReLU-conv-BN, ``fan_out`` edges wide."""

    def __init__(self, channels: int, fan_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, fan_out * channels, 1, bias=False)
        self.conv3 = nn.Conv2d(channels, fan_out * channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(fan_out * channels, affine=False)
        self.bn3 = nn.BatchNorm2d(fan_out * channels, affine=False)


class FusedNB201Cell(nn.Module):
    """The relaxed NB-201 cell: node ``j`` sums the softmax-weighted mixed ops of its edges ``i -> j``.

    Args:
        channels: channels of the cell.
        partial: PC-DARTS channel sampling factor K: only the first ``channels / K`` channels go
            through the ops, the rest bypass them, and each edge's output is channel-shuffled.
        checkpoint: activation checkpointing: keep only the cell's input for the backward pass and
            run the cell again there (BN statistics are updated once); less memory, more time.
    """

    def __init__(self, channels: int, partial: int = 1, checkpoint: bool = False) -> None:
        super().__init__()
        if channels % partial:
            raise ValueError(f"channels ({channels}) must be divisible by partial_channels ({partial})")
        self.channels, self.partial, self.checkpoint = channels // partial, partial, checkpoint
        self.sources = nn.ModuleList(_SourceOps(self.channels, 3 - i) for i in range(3))
        self.rows = [[EDGES.index((j, i)) for j in range(i + 1, 4)] for i in range(3)]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not (self.checkpoint and self.training and torch.is_grad_enabled()):
            return self._cell(x, weights, True)
        calls = itertools.count()
        out: torch.Tensor = torch.utils.checkpoint.checkpoint(
            lambda a, w: self._cell(a, w, next(calls) == 0), x, weights, use_reentrant=False
        )
        return out

    def _cell(self, x: torch.Tensor, weights: torch.Tensor, update_stats: bool) -> torch.Tensor:
        sums: list[torch.Tensor | None] = [x, None, None, None]
        for i, ops in enumerate(self.sources):
            node = sums[i]
            assert node is not None
            terms = self._edge_terms(node, cast(_SourceOps, ops), weights[self.rows[i]], update_stats)
            for j, term in zip(range(i + 1, 4), terms, strict=True):
                previous = sums[j]
                sums[j] = term if previous is None else previous + term
        out = sums[3]
        assert out is not None
        return out

    def _edge_terms(
        self, node: torch.Tensor, ops: _SourceOps, weights: torch.Tensor, update_stats: bool
    ) -> list[torch.Tensor]:
        """The mixed-op output of every edge leaving ``node``; ``weights`` holds their alpha rows."""
        c = self.channels
        active = node[:, :c] if self.partial > 1 else node
        used = self._used_ops(weights)
        outputs: dict[int, torch.Tensor] = {}
        if used[CONV1] or used[CONV3]:
            relu = F.relu(active)
            if used[CONV1]:
                outputs[CONV1] = batch_norm_saving_output(ops.conv1(relu), ops.bn1, update_stats)
            if used[CONV3]:
                outputs[CONV3] = batch_norm_saving_output(ops.conv3(relu), ops.bn3, update_stats)
        if used[POOL]:
            pool = average_pool_3x3(active)
        slices = {op: value.split(c, dim=1) for op, value in outputs.items()}  # one cat in the backward
        terms = []
        for t, row in enumerate(weights.unbind(0)):
            total = row[SKIP] * active if used[SKIP] else torch.zeros_like(active)
            for op, parts in slices.items():
                total = torch.addcmul(total, row[op], parts[t])
            if used[POOL]:
                total = torch.addcmul(total, row[POOL], pool)
            if self.partial > 1:
                total = channel_shuffle(torch.cat([total, node[:, c:]], dim=1), self.partial)
            terms.append(total)
        return terms

    @staticmethod
    def _used_ops(weights: torch.Tensor) -> list[bool]:
        """Per op column: computed unless its weight is zero on every edge and needs no gradient."""
        if weights.requires_grad:
            return [True] * weights.shape[1]
        return [bool(v) for v in weights.ne(0).any(0).tolist()]
