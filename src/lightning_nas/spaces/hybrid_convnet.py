"""A CPU-minded space: plain 3x3 convolutions and ResNet basic blocks beside MBConv, and where to downsample.

Depthwise convolutions (MBConv) have few MACs but run far below a CPU's dense-convolution
throughput; on small images a plain 3x3 convolution or a ResNet basic block of modest width is
often both faster per image and quicker to learn. This space lets the search pick, per block (or per
stage, MnasNet's factorised hierarchical space), among the three, and per stage whether it downsamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lightning_nas.nn import ElasticBatchNorm2d, LayerChoice, Repeat, derive
from lightning_nas.spaces.base import register_space
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace, _scaled_depth
from lightning_nas.spaces.ops import ACTIVATIONS, MBConv, check_values, choice, conv_norm_act, projection

__all__ = ["BLOCK_TYPES", "DECISION_SCOPES", "HybridConvNetSpace", "ResidualBlock"]

BLOCK_TYPES = ("mbconv", "conv", "residual")
DECISION_SCOPES = ("block", "stage")


class ResidualBlock(nn.Module):
    """ResNet basic block: 3x3 conv (strided) -> BN -> act -> 3x3 conv -> BN, plus a (projected) shortcut, act."""

    def __init__(self, in_channels: Any, out_channels: Any, stride: int = 1, activation: str = "relu") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.conv1 = conv_norm_act(in_channels, out_channels, 3, stride, ElasticBatchNorm2d, act)
        self.conv2 = conv_norm_act(out_channels, out_channels, 3, 1, ElasticBatchNorm2d, None)
        self.shortcut = projection(in_channels, out_channels, stride, ElasticBatchNorm2d)
        self.act = act()

    def forward(self, x: Any) -> Any:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


@register_space("hybrid_convnet")
class HybridConvNetSpace(EfficientConvNetSpace):
    """:class:`EfficientConvNetSpace` with a block type per block and, optionally, a stride per stage.

    Extra decisions: ``stage{s}/block{b}/type`` (one of ``block_types``: ``mbconv``, ``conv`` for a
    plain 3x3 conv-BN-act, ``residual`` for a ResNet basic block) and ``stage{s}/stride`` where
    ``stage_stride_choices[s]`` holds more than one stride. MBConv's kernel, expansion and
    squeeze-excite decisions only count for MBConv blocks. Every other argument is
    :class:`EfficientConvNetSpace`'s. With ``decision_scope="stage"`` the blocks of a stage share one
    type (and one kernel, expansion and squeeze-excite ratio): ``stage{s}/type`` and so on, as in
    MnasNet's factorised hierarchical space: far fewer architectures (no stage mixes kinds of block),
    each decision with a larger effect on the network.

    Args:
        block_types: the block kinds to choose from (a single one fixes it).
        stage_stride_choices: per stage, the strides (1, 2) its first block may take; None keeps
            ``stage_strides``.
        decision_scope: ``"block"`` (each block its own type, kernel, expansion, SE ratio) or ``"stage"``
            (one set per stage, shared by its blocks).
        width_multipliers, ...: as in :class:`EfficientConvNetSpace`.

    Example:
        >>> space = HybridConvNetSpace((1, 28, 28), 10, stage_stride_choices=[[1], [1, 2], [2], [1, 2]])
        >>> "stage1/stride" in space.decisions and "stage0/block0/type" in space.decisions
        True
        >>> staged = HybridConvNetSpace((1, 28, 28), 10, decision_scope="stage")
        >>> "stage1/type" in staged.decisions and staged.cardinality < space.cardinality
        True
    """

    name = "hybrid_convnet"

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        block_types: Sequence[str] = BLOCK_TYPES,
        stage_stride_choices: Sequence[Sequence[int]] | None = None,
        width_multipliers: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0),
        depth_multipliers: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
        kernel_sizes: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (1, 3, 6),
        se_ratios: Sequence[float] = (0.0, 0.25),
        resolutions: Sequence[int] | None = None,
        stem_channels: int = 16,
        stage_channels: Sequence[int] = (16, 24, 40, 80),
        stage_depths: Sequence[int] = (1, 2, 2, 1),
        stage_strides: Sequence[int] = (1, 2, 2, 1),
        stem_stride: int | None = None,
        head_channels: int = 160,
        activation: str = "swish",
        dropout: float = 0.0,
        decision_scope: str = "block",
        pool_size: int = 1,
        channel_divisor: int = 8,
        stem_multipliers: Sequence[float] | None = None,
    ) -> None:
        if decision_scope not in DECISION_SCOPES:
            raise ValueError(f"decision_scope must be one of {list(DECISION_SCOPES)}, got {decision_scope!r}")
        self.decision_scope = decision_scope
        self.block_types = check_values("block_types", block_types, lambda v: v in BLOCK_TYPES,
                                        f"names from {list(BLOCK_TYPES)}")
        super().__init__(input_shape, num_classes, width_multipliers, depth_multipliers, kernel_sizes, expansions,
                         se_ratios, resolutions, stem_channels, stage_channels, stage_depths, stage_strides,
                         stem_stride, head_channels, activation, dropout, pool_size=pool_size,
                         channel_divisor=channel_divisor, stem_multipliers=stem_multipliers)
        if stage_stride_choices is None:
            self.stride_choices = [[s] for s in self.stage_strides]
        else:
            if len(stage_stride_choices) != len(self.stage_channels):
                raise ValueError(f"stage_stride_choices needs one list per stage ({len(self.stage_channels)}), "
                                 f"got {len(stage_stride_choices)}")
            self.stride_choices = [check_values(f"stage_stride_choices[{i}]", list(values), lambda v: v in (1, 2),
                                                "strides 1 or 2") for i, values in enumerate(stage_stride_choices)]

    def _stage(self, index: int, cin: Any, cout: Any, depth: Any) -> nn.Module:
        def block(b: int) -> nn.Module:
            if b > 0:
                return self._block(index, b, cout, cout, 1)
            strides = self.stride_choices[index]
            if len(strides) == 1:
                return self._block(index, 0, cin, cout, strides[0])
            variants = {str(s): (lambda s=s: self._block(index, 0, cin, cout, s)) for s in strides}
            return LayerChoice(variants, label=f"stage{index}/stride")

        return Repeat(block, derive(_scaled_depth, self.stage_depths[index], depth))

    def _block(self, stage: int, b: int, cin: Any, cout: Any, stride: int) -> nn.Module:
        prefix = f"stage{stage}" if self.decision_scope == "stage" else f"stage{stage}/block{b}"
        act = ACTIVATIONS[self.activation]

        def mbconv() -> nn.Module:
            return MBConv(cin, cout, choice(self.kernel_sizes, f"{prefix}/kernel"),
                          choice(self.expansions, f"{prefix}/expansion"), choice(self.se_ratios, f"{prefix}/se_ratio"),
                          stride=stride, activation=self.activation)

        factories = {"mbconv": mbconv,
                     "conv": lambda: conv_norm_act(cin, cout, 3, stride, ElasticBatchNorm2d, act),
                     "residual": lambda: ResidualBlock(cin, cout, stride, self.activation)}
        chosen = {name: factories[name] for name in self.block_types}
        if len(chosen) == 1:
            return next(iter(chosen.values()))()
        return LayerChoice(chosen, label=f"{prefix}/type")
