"""The relaxed NAS-Bench-201 cell with fused mixed ops: what every DARTS step of the nb201 space runs.

All edges leaving a node read the same input, so per source node the cell computes one ReLU, one
average pool, one grouped-by-concatenation 1x1 conv and one 3x3 conv whose output channels hold
every outgoing edge, and one BatchNorm over them (per channel, so identical to one BN per edge).
The BatchNorm scales each edge's channel slice by the edge's alpha weight for the op, so the
weighted conv terms leave the normalisation pass ready to add, and the alpha gradient comes out of
the BatchNorm's backward kernel; each node's sum is accumulated in place. ``none`` is never computed
(its term is zero), nor is an op whose weight is zero on every edge of a node when the weights need no
gradient. The search-phase BatchNorm (no affine, :class:`_ScaledBatchNorm`) keeps only its output for
the backward pass: the conv output is freed after the forward.

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

__all__ = ["FusedNB201Cell", "average_pool_3x3", "scaled_batch_norm"]

EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, 4) for i in range(j))
SKIP, CONV1, CONV3, POOL = (NB201_OPS.index(n) for n in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                           "avg_pool_3x3"))


class _ScaledBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm without affine whose output channels are scaled: ``scale * (z - mean) * rstd``.

    The scale is the alpha weight of each channel's edge, so the mixed op's weighted term comes out of
    the normalisation pass itself. Statistics are taken in two passes (mean, then the centred sum of
    squares): on CPU about twice as fast as ``native_batch_norm`` on NCHW tensors, and as exact. Only
    the output is saved: with ``y = out / scale`` the input gradient is
    ``scale * rstd * (g - mean(g) - y * mean(g * y))`` and the scale's is ``sum(g * y)`` (means and sums
    over batch and space), which the native backward kernel computes in one call. A channel whose scale
    is exactly zero outputs zeros and gets zero gradients, its scale's included (its ``y`` is not kept).
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, scale: torch.Tensor, norm: nn.BatchNorm2d, update_stats: bool
    ) -> torch.Tensor:
        dims, count = (0, 2, 3), z.numel() // z.shape[1]
        if count < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(z.shape)}")
        mean = z.mean(dims, keepdim=True)
        centred = z - mean
        var = (centred * centred).mean(dims)
        rstd = torch.rsqrt(var + norm.eps)
        if update_stats and norm.track_running_stats and norm.running_mean is not None:
            momentum = 0.1 if norm.momentum is None else norm.momentum
            assert norm.running_var is not None
            norm.running_mean.lerp_(mean.flatten(), momentum)
            norm.running_var.lerp_(var * (count / (count - 1)), momentum)
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.add_(1)
        out = centred.mul_((rstd * scale).view(1, -1, 1, 1))
        ctx.save_for_backward(out, rstd, scale)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        out, rstd, scale = ctx.saved_tensors
        # the native kernel, given input out, mean 0 and invstd 1/scale, normalises out back to y; its
        # weight scale * rstd * scale makes the input gradient's factor scale * rstd (a zero scale: factor 0)
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        grad_z, grad_scale, _ = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), out, scale * rstd * safe, None, None, torch.zeros_like(rstd), safe.reciprocal(),
            True, 0.0, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
        )
        return grad_z, grad_scale, None, None


def scaled_batch_norm(
    z: torch.Tensor, norm: nn.BatchNorm2d, scale: torch.Tensor, update_stats: bool = True
) -> torch.Tensor:
    """``norm(z) * scale`` per channel for a non-affine BatchNorm; in training only the output is saved.

    ``update_stats=False`` leaves the running statistics alone (a checkpointed forward run again).
    """
    if norm.affine or not norm.training or not torch.is_grad_enabled() or not (z.requires_grad or scale.requires_grad):
        if update_stats or not norm.training:
            normed = norm(z)
        else:
            normed = F.batch_norm(z, None, None, None, None, True, 0.0, norm.eps)
        return normed * scale.view(1, -1, 1, 1)
    return cast(torch.Tensor, _ScaledBatchNorm.apply(z, scale, norm, update_stats))


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
            self._add_edges(sums, i, cast(_SourceOps, ops), weights[self.rows[i]], update_stats)
        out = sums[3]
        assert out is not None
        return out

    def _add_edges(
        self, sums: list[torch.Tensor | None], source: int, ops: _SourceOps, weights: torch.Tensor, update_stats: bool
    ) -> None:
        """Adds the mixed-op output of every edge leaving node ``source`` to its target node's sum.

        ``weights`` holds the edges' alpha rows; the conv terms come out of the BatchNorm already weighted.
        """
        c, node = self.channels, sums[source]
        assert node is not None
        active = node[:, :c] if self.partial > 1 else node
        used = self._used_ops(weights)
        convs: list[tuple[torch.Tensor, ...]] = []
        if used[CONV1] or used[CONV3]:
            relu = F.relu(active)
            for op, conv, norm in ((CONV1, ops.conv1, ops.bn1), (CONV3, ops.conv3, ops.bn3)):
                if used[op]:
                    scale = weights[:, op].repeat_interleave(c)
                    convs.append(scaled_batch_norm(conv(relu), norm, scale, update_stats).split(c, dim=1))
        pool = average_pool_3x3(active) if used[POOL] else None
        for t, (row, target) in enumerate(zip(weights.unbind(0), range(source + 1, 4), strict=True)):
            scaled = [(row[SKIP], active)] if used[SKIP] else []
            if pool is not None:
                scaled.append((row[POOL], pool))
            plain = [parts[t] for parts in convs]
            if self.partial == 1:
                sums[target] = _sum_terms(sums[target], plain, scaled, active)
            else:
                term = _sum_terms(None, plain, scaled, active)
                term = channel_shuffle(torch.cat([term, node[:, c:]], dim=1), self.partial)
                previous = sums[target]
                sums[target] = term if previous is None else previous + term

    @staticmethod
    def _used_ops(weights: torch.Tensor) -> list[bool]:
        """Per op column: computed unless its weight is zero on every edge and needs no gradient."""
        if weights.requires_grad:
            return [True] * weights.shape[1]
        return [bool(v) for v in weights.ne(0).any(0).tolist()]


def _sum_terms(
    total: torch.Tensor | None,
    plain: list[torch.Tensor],
    scaled: list[tuple[torch.Tensor, torch.Tensor]],
    like: torch.Tensor,
) -> torch.Tensor:
    """``total + sum(plain) + sum(w * t for w, t in scaled)``, accumulated in place into one new tensor.

    ``total`` must be a tensor this function made (never a saved or shared one); ``None`` starts a new sum.
    """
    if total is None and len(plain) > 1:
        total, plain = plain[0] + plain[1], plain[2:]
    for term in plain:
        total = term.clone() if total is None else total.add_(term)
    for weight, term in scaled:
        total = weight * term if total is None else total.addcmul_(weight, term)
    return torch.zeros_like(like) if total is None else total
