"""Primitive operations of the DARTS and NAS-Bench-201 cell spaces.

Every op maps ``(C, H, W)`` to ``(C, H / stride, W / stride)``. Build one with
``CELL_OPS[name](channels, stride, affine)``; ``affine=False`` is the search-phase setting of DARTS.

Example:
    >>> op = CELL_OPS["sep_conv_3x3"](8, 1, True)
    >>> op(torch.randn(2, 8, 6, 6)).shape
    torch.Size([2, 8, 6, 6])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "CELL_OPS",
    "DARTS_OPS",
    "NB201_OPS",
    "PARAMETER_FREE_OPS",
    "DilConv",
    "FactorizedReduce",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "channel_shuffle",
]

OpBuilder = Callable[[int, int, bool], nn.Module]


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the (strided) input."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BatchNorm (the ``nor_conv`` ops of NAS-Bench-201 and the cell preprocessing)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dilation: int, affine: bool = True) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(cin, cin, kernel, stride, padding, dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked :class:`DilConv` blocks with dilation 1 (the first one strided)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, affine: bool = True) -> None:
        super().__init__(DilConv(cin, cin, kernel, stride, 1, affine), DilConv(cin, cout, kernel, 1, 1, affine))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convs whose outputs are concatenated."""

    def __init__(self, cin: int, cout: int, affine: bool = True) -> None:
        super().__init__()
        if cout < 2:
            raise ValueError(f"FactorizedReduce needs at least 2 output channels, got {cout}")
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        first = self.conv1(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([first, self.conv2(shifted)], dim=1))


def _skip(channels: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)


def _avg_pool(channels: int, stride: int, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)


def _max_pool(channels: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(3, stride, padding=1)


CELL_OPS: dict[str, OpBuilder] = {
    "none": lambda c, stride, affine: Zero(stride),
    "skip_connect": _skip,
    "max_pool_3x3": _max_pool,
    "avg_pool_3x3": _avg_pool,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 2, affine),
    "nor_conv_1x1": lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine),
    "nor_conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine),
}
"""Op name -> ``builder(channels, stride, affine)``."""

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
PARAMETER_FREE_OPS: frozenset[str] = frozenset({"skip_connect", "max_pool_3x3", "avg_pool_3x3"})


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (PC-DARTS, ShuffleNet)."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, channels, height, width)
