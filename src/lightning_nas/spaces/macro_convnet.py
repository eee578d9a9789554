"""Macro chain space: a searched number of layers, each with its own op, width, residual and SE."""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from lightning_nas.nn import ElasticLinear, LayerChoice, Repeat, derive, resolve
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.ops import (
    ACTIVATIONS,
    MACRO_OPS,
    NORMS,
    SqueezeExcite,
    check_values,
    choice,
    conditional,
    conv_norm_act,
    make_activation,
    make_norm,
    pick,
    projection,
)

__all__ = ["MacroConvNetSpace", "MacroLayer", "stage_depth"]

DEFAULT_OPS = (
    "conv3x3",
    "conv5x5",
    "depthwise_conv",
    "sep_conv3x3",
    "dil_conv3x3",
    "max_pool",
    "avg_pool",
    "skip_connect",
)


def stage_depth(num_layers: int, num_stages: int, stage: int) -> int:
    """Layers of ``stage`` when ``num_layers`` are split evenly, later stages taking the remainder."""
    extra = num_layers % num_stages
    return num_layers // num_stages + (1 if stage >= num_stages - extra else 0)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reductions(side: int, requested: int | None) -> int:
    """``requested`` checked against the input's smaller side, or the default for that side."""
    if requested is None:
        return min(3, max(0, int(math.log2(side)) - 1))
    if not _is_int(requested) or requested < 0 or 2**requested > side:
        raise ValueError(f"num_reductions must be an int in [0, log2({side})], got {requested!r}")
    return requested


def _names(name: str, values: Any, known: list[str]) -> list[str]:
    return check_values(name, values, lambda v: v in known, f"names from {known}")


def _se_hidden(channels: int) -> int:
    return max(1, channels // 4)


class MacroLayer(nn.Module):
    """``se(op(x))``, plus a (projected) shortcut of ``x`` when ``residual`` holds."""

    def __init__(self, op: nn.Module, se: nn.Module, shortcut: nn.Module, residual: Any) -> None:
        super().__init__()
        self.op, self.se, self.shortcut = op, se, shortcut
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.op(x))
        return out + self.shortcut(x) if resolve(self.residual) else out


@register_space("macro_convnet")
class MacroConvNetSpace(SearchSpace):
    """A chain of layers split into stages; the first layer of every stage after the first halves the size.

    Decisions: ``num_layers``, the global ``activation`` and ``norm``, and per layer
    ``stage{s}/layer{i}/op``, ``.../channels``, ``.../residual`` and ``.../se``. A list with a single
    value fixes that setting and adds no decision. ``num_layers`` layers are split over
    ``num_reductions + 1`` stages as evenly as possible (later stages take the remainder), so the
    reductions stay at the same relative depths for every depth. Pools and skips add a 1x1
    projection when the width changes (a strided one for a strided skip); a residual shortcut is
    projected the same way.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: number of logits.
        num_layers: chain lengths to search, each at least ``num_reductions + 1``.
        ops: op names from :data:`~lightning_nas.spaces.ops.MACRO_OPS`.
        channels: layer widths to search (typically 16-512); elastic weights are shared.
        num_reductions: stride-2 stages; None picks ``min(3, floor(log2(min side)) - 1)``
            (2 for 8x8, 3 for 28x28 or 32x32). Must keep ``2 ** num_reductions <= min side``.
        activations: global activation candidates: ``relu``, ``relu6``, ``swish``, ``hswish``, ``gelu``.
        norms: global norm candidates: ``batch``, ``group`` (8 groups), ``layer`` (one group).
        residual: candidates of each layer's residual shortcut (booleans).
        squeeze_excite: candidates of each layer's squeeze-excite (booleans).
        stem_channels: width of the stem 3x3 conv.
        dropout: dropout probability before the classifier.

    Example:
        >>> space = MacroConvNetSpace((1, 8, 8), 10, num_layers=[3, 4], channels=[16, 32])
        >>> space.num_reductions, space.decisions["num_layers"].candidates
        (2, (3, 4))
    """

    name = "macro_convnet"

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        num_layers: Sequence[int] = (6, 8, 10, 12, 14, 16, 18, 20, 22),
        ops: Sequence[str] = DEFAULT_OPS,
        channels: Sequence[int] = (16, 32, 64, 128, 256, 512),
        num_reductions: int | None = None,
        activations: Sequence[str] = ("relu", "swish", "gelu"),
        norms: Sequence[str] = ("batch", "group", "layer"),
        residual: Sequence[bool] = (False, True),
        squeeze_excite: Sequence[bool] = (False, True),
        stem_channels: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        self.num_reductions = _reductions(min(self.input_shape[1:]), num_reductions)
        least = self.num_reductions + 1
        self.num_layers = check_values(
            "num_layers",
            num_layers,
            lambda v: _is_int(v) and v >= least,
            f"ints >= num_reductions + 1 = {least}",
        )
        self.ops = _names("ops", ops, MACRO_OPS.names())
        self.channels = check_values(
            "channels", channels, lambda v: _is_int(v) and 1 <= v <= 4096, "ints in [1, 4096]"
        )
        self.activations = _names("activations", activations, sorted(ACTIVATIONS))
        self.norms = _names("norms", norms, list(NORMS))
        self.residual = check_values("residual", residual, lambda v: isinstance(v, bool), "booleans")
        self.squeeze_excite = check_values(
            "squeeze_excite", squeeze_excite, lambda v: isinstance(v, bool), "booleans"
        )
        if not _is_int(stem_channels) or stem_channels < 1:
            raise ValueError(f"stem_channels must be a positive int, got {stem_channels!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.stem_channels, self.dropout = stem_channels, float(dropout)

    def construct(self) -> nn.Module:
        depth = choice(self.num_layers, "num_layers")
        norm = partial(make_norm, choice(self.norms, "norm"))
        act = partial(make_activation, choice(self.activations, "activation"))
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = conv_norm_act(self.input_shape[0], self.stem_channels, 3, 1, norm, act)
        cin: Any = self.stem_channels
        num_stages = self.num_reductions + 1
        for stage in range(num_stages):
            stage_layers = derive(stage_depth, depth, num_stages, stage)
            deepest = max(stage_depth(n, num_stages, stage) for n in self.num_layers)
            widths = [choice(self.channels, f"stage{stage}/layer{i}/channels") for i in range(deepest)]
            layers[f"stage{stage}"] = Repeat(
                partial(self._layer, stage, cin, widths, norm, act), stage_layers
            )
            cin = pick(derive(operator.sub, stage_layers, 1), widths)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["dropout"] = nn.Dropout(self.dropout)
        layers["classifier"] = ElasticLinear(cin, self.num_classes)
        return nn.Sequential(layers)

    def _layer(
        self, stage: int, stage_in: Any, widths: list[Any], norm: Any, act: Any, index: int
    ) -> nn.Module:
        prefix = f"stage{stage}/layer{index}"
        cin, cout = (stage_in if index == 0 else widths[index - 1]), widths[index]
        stride = 2 if stage > 0 and index == 0 else 1
        factories = {name: partial(MACRO_OPS.get(name), cin, cout, stride, norm, act) for name in self.ops}
        op = LayerChoice(factories, label=f"{prefix}/op") if len(factories) > 1 else factories[self.ops[0]]()
        se = conditional(
            choice(self.squeeze_excite, f"{prefix}/se"), lambda: SqueezeExcite(cout, derive(_se_hidden, cout))
        )
        residual = choice(self.residual, f"{prefix}/residual")
        return MacroLayer(op, se, projection(cin, cout, stride, norm, enabled=residual), residual)
