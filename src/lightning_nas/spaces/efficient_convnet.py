"""EfficientNet/MobileNetV2-style space: MBConv stages with searched width, depth, kernels, resolution."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from lightning_nas.nn import ElasticBatchNorm2d, ElasticLinear, Repeat, derive, make_divisible
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.ops import ACTIVATIONS, MBConv, Resize, check_values, choice, conv_norm_act

__all__ = ["EfficientConvNetSpace", "default_resolutions"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(name: str, values: Any, ok: Callable[[float], bool], expected: str) -> list[float]:
    """Distinct numbers passing ``ok``, as floats (so 1 and 1.0 are the same decision value)."""
    return [float(v) for v in check_values(name, values, lambda v: _is_number(v) and ok(v), expected)]


def _multiplier(value: float) -> bool:
    return 0 < value <= 4


def _ints(name: str, values: Any, expected: str, *, unique: bool = True, odd: bool = False) -> list[int]:
    """Positive ints (odd ones when ``odd``)."""
    return check_values(
        name, values, lambda v: _is_int(v) and v >= 1 and (v % 2 == 1 or not odd), expected, unique=unique
    )


def default_resolutions(height: int) -> list[int]:
    """Input heights to search: 1x/1.5x/2x up to 16 px, 1x/1.25x/1.5x up to 64 px, else 0.5x/0.75x/1x."""
    if height <= 16:
        factors = (1.0, 1.5, 2.0)
    elif height <= 64:
        factors = (1.0, 1.25, 1.5)
    else:
        factors = (0.5, 0.75, 1.0)
    return sorted({max(1, round(height * f)) for f in factors})


def adapt_strides(size: int, strides: Sequence[int]) -> list[int]:
    """``strides`` with each 2 that would shrink a ``size``-pixel feature map below 2x2 turned into 1."""
    adapted = []
    for stride in strides:
        if math.ceil(size / stride) < 2:
            stride = 1
        adapted.append(stride)
        size = math.ceil(size / stride)
    return adapted


def _scaled_depth(base: int, multiplier: float) -> int:
    return max(1, math.ceil(base * multiplier - 1e-9))


@register_space("efficient_convnet")
class EfficientConvNetSpace(SearchSpace):
    """MBConv stages (expand -> depthwise -> squeeze-excite -> project) in the EfficientNet style.

    Decisions: ``resolution`` (input height), ``width_mult``, ``depth_mult`` and, per block,
    ``stage{s}/block{b}/kernel``, ``.../expansion`` and ``.../se_ratio``. A list with a single
    value fixes that setting and adds no decision. Stage ``s`` has ``ceil(stage_depths[s] * depth_mult)``
    blocks of ``make_divisible(stage_channels[s] * width_mult, channel_divisor)`` channels. A stride that would
    shrink the smallest feature map below 2x2 is turned into 1, so 8x8 inputs work with the defaults.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: number of logits.
        width_multipliers: channel multipliers, each in (0, 4].
        depth_multipliers: depth multipliers, each in (0, 4].
        kernel_sizes: odd depthwise kernel sizes.
        expansions: MBConv expansion factors (1 leaves the expand conv out).
        se_ratios: squeeze-excite widths relative to the block input, in [0, 1); 0 disables it.
        resolutions: input heights to search; None derives them from the input height
            (see :func:`default_resolutions`).
        stem_channels: stem width at ``width_mult`` 1 (or at ``stem_mult`` 1, see ``stem_multipliers``).
        stage_channels: output width of each stage at ``width_mult`` 1.
        stage_depths: blocks per stage at ``depth_mult`` 1.
        stage_strides: stride (1 or 2) of the first block of each stage.
        stem_stride: stride of the stem conv; None means 2 for inputs of 64 px or more, else 1.
        head_channels: width of the 1x1 conv before pooling at ``width_mult`` 1; 0 leaves it out.
        activation: one of ``relu``, ``relu6``, ``swish``, ``hswish``, ``gelu``.
        dropout: dropout probability before the classifier.
        pool_size: the head average-pools to ``pool_size`` x ``pool_size`` and flattens, so the classifier
            sees where a feature is (1: global pooling); ``pool_size**2`` times the classifier's weights.
        channel_divisor: the stem, stage and head widths are rounded to multiples of it (losing at most
            10%; MBConv's expanded width follows its input's). XNNPACK's float32 kernels on AVX-512 work on
            16 channels at a time: 16 there makes no width pay for padding (networks with a 24-channel
            ResNet block at 14x14 ran 1.2-1.4x slower per MAC than with 16 or 32 channels there).
        stem_multipliers: the stem's own width multipliers, each in (0, 4]: a decision ``stem_mult`` (none
            for a single value, which fixes the stem at ``stem_channels`` times it). None: the stem follows
            ``width_mult`` like every stage. On 28x28 inputs the stem runs at full resolution, so its width
            costs latency out of proportion to its MACs (XNNPACK: a 32-channel stem took 0.2x of the 2-conv
            CNN's time, 16 channels half of it; README).

    Example:
        >>> space = EfficientConvNetSpace((1, 8, 8), 10)
        >>> sorted(space.decisions)[:3]
        ['depth_mult', 'resolution', 'stage0/block0/expansion']
    """

    name = "efficient_convnet"

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
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
        pool_size: int = 1,
        channel_divisor: int = 8,
        stem_multipliers: Sequence[float] | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if not _is_int(pool_size) or pool_size < 1:
            raise ValueError(f"pool_size must be an int >= 1, got {pool_size!r}")
        if not _is_int(channel_divisor) or channel_divisor < 1:
            raise ValueError(f"channel_divisor must be a positive int, got {channel_divisor!r}")
        self.pool_size, self.channel_divisor = int(pool_size), int(channel_divisor)
        self.width_multipliers = _numbers(
            "width_multipliers", width_multipliers, _multiplier, "numbers in (0, 4]"
        )
        self.depth_multipliers = _numbers(
            "depth_multipliers", depth_multipliers, _multiplier, "numbers in (0, 4]"
        )
        self.stem_multipliers = None if stem_multipliers is None else _numbers(
            "stem_multipliers", stem_multipliers, _multiplier, "numbers in (0, 4]"
        )
        self.se_ratios = _numbers("se_ratios", se_ratios, lambda v: 0 <= v < 1, "numbers in [0, 1)")
        self.kernel_sizes = _ints("kernel_sizes", kernel_sizes, "odd positive ints", odd=True)
        self.expansions = _ints("expansions", expansions, "positive ints")
        height = self.input_shape[1]
        self.resolutions = _ints(
            "resolutions",
            default_resolutions(height) if resolutions is None else resolutions,
            "positive ints",
        )
        if not _is_int(stem_channels) or stem_channels < 1:
            raise ValueError(f"stem_channels must be a positive int, got {stem_channels!r}")
        if not _is_int(head_channels) or head_channels < 0:
            raise ValueError(f"head_channels must be a non-negative int, got {head_channels!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.stem_channels, self.head_channels = stem_channels, head_channels
        self.activation, self.dropout = activation, float(dropout)
        self.aspect = self.input_shape[2] / height
        self._set_layout(stage_channels, stage_depths, stage_strides, stem_stride)

    def _set_layout(
        self,
        stage_channels: Sequence[int],
        stage_depths: Sequence[int],
        stage_strides: Sequence[int],
        stem_stride: int | None,
    ) -> None:
        """Check the stage layout and adapt the strides to the smallest input resolution."""
        self.stage_channels = _ints("stage_channels", stage_channels, "positive ints", unique=False)
        self.stage_depths = _ints("stage_depths", stage_depths, "positive ints", unique=False)
        strides = check_values(
            "stage_strides", stage_strides, lambda v: _is_int(v) and v in (1, 2), "1 or 2", unique=False
        )
        lengths = {
            "stage_channels": len(self.stage_channels),
            "stage_depths": len(self.stage_depths),
            "stage_strides": len(strides),
        }
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"stage_channels, stage_depths and stage_strides need equal lengths, got {lengths}"
            )
        if stem_stride is not None and stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1, 2 or None, got {stem_stride!r}")
        low = min(self.resolutions)
        smallest = min(low, max(1, round(low * self.aspect)))
        if stem_stride is None:
            stem_stride = 2 if smallest >= 64 else 1
        adapted = adapt_strides(smallest, [stem_stride, *strides])
        self.stem_stride: int = adapted[0]
        self.stage_strides: list[int] = adapted[1:]

    def construct(self) -> nn.Module:
        width = choice(self.width_multipliers, "width_mult")
        depth = choice(self.depth_multipliers, "depth_mult")
        stem_mult = width if self.stem_multipliers is None else choice(self.stem_multipliers, "stem_mult")
        stem_width = make_divisible(stem_mult * self.stem_channels, self.channel_divisor)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["resize"] = Resize(choice(self.resolutions, "resolution"), self.aspect)
        layers["stem"] = conv_norm_act(
            self.input_shape[0],
            stem_width,
            3,
            self.stem_stride,
            ElasticBatchNorm2d,
            ACTIVATIONS[self.activation],
        )
        cin = stem_width
        for index, base in enumerate(self.stage_channels):
            cout = make_divisible(width * base, self.channel_divisor)
            layers[f"stage{index}"] = self._stage(index, cin, cout, depth)
            cin = cout
        if self.head_channels:
            head_width = make_divisible(width * self.head_channels, self.channel_divisor)
            layers["head"] = conv_norm_act(
                cin, head_width, 1, 1, ElasticBatchNorm2d, ACTIVATIONS[self.activation]
            )
            cin = head_width
        layers["pool"] = nn.AdaptiveAvgPool2d(self.pool_size)
        layers["flatten"] = nn.Flatten()
        layers["dropout"] = nn.Dropout(self.dropout)
        layers["classifier"] = ElasticLinear(cin * self.pool_size**2 if self.pool_size > 1 else cin, self.num_classes)
        return nn.Sequential(layers)

    def _stage(self, index: int, cin: Any, cout: Any, depth: Any) -> nn.Module:
        def block(b: int) -> nn.Module:
            prefix = f"stage{index}/block{b}"
            return MBConv(
                cin if b == 0 else cout,
                cout,
                choice(self.kernel_sizes, f"{prefix}/kernel"),
                choice(self.expansions, f"{prefix}/expansion"),
                choice(self.se_ratios, f"{prefix}/se_ratio"),
                stride=self.stage_strides[index] if b == 0 else 1,
                activation=self.activation,
            )

        return Repeat(block, derive(_scaled_depth, self.stage_depths[index], depth))
