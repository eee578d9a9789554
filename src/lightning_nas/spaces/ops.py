"""Building blocks shared by the search spaces: activations, norms, squeeze-excite, MBConv, macro ops.

Every block takes sizes that may be plain numbers or choice expressions, so the same code
builds a supernet layer or, inside :func:`~lightning_nas.nn.fixed_arch`, a plain one.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.nn import (
    ChoiceExpr,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticGroupNorm,
    LayerChoice,
    ValueChoice,
    derive,
    resolve,
)
from lightning_nas.nn.choices import Switchable
from lightning_nas.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "MACRO_OPS",
    "NORMS",
    "Activation",
    "Conditional",
    "MBConv",
    "Pick",
    "Resize",
    "SqueezeExcite",
    "check_values",
    "choice",
    "conditional",
    "conv_norm_act",
    "make_activation",
    "make_norm",
    "pick",
    "projection",
    "register_op",
]

ModuleFactory = Callable[[], nn.Module]
NormFactory = Callable[[Any], nn.Module]
OpFactory = Callable[[Any, Any, int, NormFactory, ModuleFactory], nn.Module]

ACTIVATIONS: dict[str, ModuleFactory] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "swish": nn.SiLU,
    "hswish": nn.Hardswish,
    "gelu": nn.GELU,
}
_ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "swish": F.silu,
    "hswish": F.hardswish,
    "gelu": F.gelu,
}
NORMS = ("batch", "group", "layer")
GROUPS = 8  # groups of the "group" norm (fewer when the channel count is not divisible)


def check_values(
    name: str, values: Any, ok: Callable[[Any], bool], expected: str, *, unique: bool = True
) -> list[Any]:
    """``values`` as a list; a ``ValueError`` naming ``name`` if empty, repeated or a value fails ``ok``."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of {expected}, got {values!r}")
    items = list(values)
    if not items:
        raise ValueError(f"{name} must not be empty")
    for value in items:
        if not ok(value):
            raise ValueError(f"{name} has invalid value {value!r}: expected {expected}")
    if unique and len(set(items)) != len(items):
        raise ValueError(f"{name} has duplicate values: {items}")
    return items


def choice(candidates: Sequence[Any], label: str) -> Any:
    """A decision over ``candidates``, or the only candidate itself (then no decision is made)."""
    return candidates[0] if len(candidates) == 1 else ValueChoice(list(candidates), label=label)


class Pick(ChoiceExpr):
    """``options[index]`` for a chosen ``index``; e.g. the width of the last layer of a stack.

    Unlike a derived value its possible values are the union over the options, so no
    product over every option's decisions is ever enumerated (the options must not share
    decisions with ``index``).
    """

    def __init__(self, index: ChoiceExpr, options: Sequence[Any]) -> None:
        self.index = index
        self.options = tuple(options)

    def leaves(self) -> list[ValueChoice]:
        found: dict[str, ValueChoice] = {}
        for part in (self.index, *self.options):
            if isinstance(part, ChoiceExpr):
                for leaf in part.leaves():
                    found.setdefault(leaf.label, leaf)
        return list(found.values())

    def evaluate(self, values: Any = None) -> Any:
        option = self.options[int(self.index.evaluate(values))]
        return option.evaluate(values) if isinstance(option, ChoiceExpr) else option

    def possible_values(self) -> list[Any]:
        found: set[Any] = set()
        for i in self.index.possible_values():
            option = self.options[int(i)]
            found.update(option.possible_values() if isinstance(option, ChoiceExpr) else [option])
        return sorted(found)

    def __repr__(self) -> str:
        return f"Pick({self.index!r}, {list(self.options)!r})"


def pick(index: Any, options: Sequence[Any]) -> Any:
    """``options[index]``: now when ``index`` is a plain number, else a lazy :class:`Pick`."""
    return Pick(index, options) if isinstance(index, ChoiceExpr) else options[int(index)]


class Conditional(nn.Module):
    """Apply ``module`` while ``condition`` (a choice expression) is true, else pass the input on."""

    def __init__(self, module: nn.Module, condition: ChoiceExpr) -> None:
        super().__init__()
        self.module = module
        self.condition = condition

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) if resolve(self.condition) else x

    def freeze_module(self) -> nn.Module:
        return self.module if resolve(self.condition) else nn.Identity()


def conditional(condition: Any, factory: ModuleFactory) -> nn.Module:
    """``factory()`` if ``condition`` holds, else ``nn.Identity()``; a :class:`Conditional` if chosen."""
    if isinstance(condition, ChoiceExpr):
        return Conditional(factory(), condition)
    return factory() if condition else nn.Identity()


class Activation(Switchable):
    """An activation chosen by name from :data:`ACTIVATIONS`; the plain layer when the name is fixed."""

    @classmethod
    def _plain_instance(cls, kind: Any) -> nn.Module | None:
        return None if isinstance(kind, ChoiceExpr) else ACTIVATIONS[str(kind)]()

    def __init__(self, kind: Any) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATION_FUNCTIONS[str(resolve(self.kind))](x)

    def freeze_module(self) -> nn.Module:
        return ACTIVATIONS[str(resolve(self.kind))]()


def make_activation(kind: Any) -> nn.Module:
    """The activation named ``kind`` (a plain layer, or an :class:`Activation` when ``kind`` is a choice)."""
    return Activation(kind)


def _plain_norm(kind: str, channels: Any) -> nn.Module:
    if kind == "batch":
        return ElasticBatchNorm2d(channels)
    return ElasticGroupNorm(GROUPS if kind == "group" else 1, channels)


def make_norm(kind: Any, channels: Any) -> nn.Module:
    """Batch, group (8 groups) or layer norm (1 group) of ``channels``; a shared-label choice if chosen."""
    if isinstance(kind, ValueChoice):
        factories = {str(k): partial(_plain_norm, str(k), channels) for k in kind.candidates}
        return LayerChoice(factories, label=kind.label)
    return _plain_norm(str(kind), channels)


def conv_norm_act(
    in_channels: Any,
    out_channels: Any,
    kernel_size: Any,
    stride: int,
    norm: NormFactory,
    act: ModuleFactory | None,
    *,
    dilation: int = 1,
    depthwise: bool = False,
) -> nn.Sequential:
    """Conv (same padding) -> norm -> activation (none when ``act`` is None)."""
    conv = ElasticConv2d(
        in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, depthwise=depthwise
    )
    layers = [conv, norm(in_channels if depthwise else out_channels)]
    return nn.Sequential(*layers, *([] if act is None else [act()]))


class Resize(nn.Module):
    """Resize the input to a (chosen) height, keeping the aspect ratio; a no-op at the input's size."""

    def __init__(self, height: Any, aspect: float = 1.0) -> None:
        super().__init__()
        self.height = height
        self.aspect = float(aspect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = int(resolve(self.height))
        width = max(1, round(height * self.aspect))
        if x.shape[-2] == height and x.shape[-1] == width:
            return x
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"height={self.height!r}, aspect={self.aspect}"


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> 1x1 reduce -> activation -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: Any, hidden: Any, activation: str = "relu") -> None:
        super().__init__()
        self.reduce = ElasticConv2d(channels, hidden, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = ElasticConv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(scale))))


def _se_width(channels: int, ratio: float) -> int:
    return max(1, int(channels * ratio))


def _same_shape(in_channels: int, out_channels: int, stride: int) -> bool:
    return stride == 1 and in_channels == out_channels


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> squeeze-excite -> 1x1 project (+ input).

    The expand conv is left out at expansion 1, squeeze-excite at ratio 0 and the residual
    whenever the output shape differs from the input's.

    Args:
        in_channels: input width (may be a choice expression).
        out_channels: output width (may be a choice expression).
        kernel_size: depthwise kernel, odd (may be a choice).
        expansion: hidden width factor (may be a choice).
        se_ratio: squeeze-excite width relative to ``in_channels``; 0 disables it (may be a choice).
        stride: depthwise stride, 1 or 2.
        activation: a name in :data:`ACTIVATIONS`.
    """

    def __init__(
        self,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        expansion: Any,
        se_ratio: Any,
        stride: int = 1,
        activation: str = "swish",
    ) -> None:
        super().__init__()
        hidden = derive(operator.mul, in_channels, expansion)
        act = ACTIVATIONS[activation]
        self.expand = conditional(
            derive(operator.ne, expansion, 1),
            lambda: conv_norm_act(in_channels, hidden, 1, 1, ElasticBatchNorm2d, act),
        )
        self.depthwise = conv_norm_act(
            hidden, hidden, kernel_size, stride, ElasticBatchNorm2d, act, depthwise=True
        )
        se_hidden = derive(_se_width, in_channels, se_ratio)
        self.se = conditional(
            derive(operator.gt, se_ratio, 0), lambda: SqueezeExcite(hidden, se_hidden, activation)
        )
        self.project = conv_norm_act(hidden, out_channels, 1, 1, ElasticBatchNorm2d, None)
        self.residual = derive(_same_shape, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if resolve(self.residual) else out


# --- macro ops: factories ``(in_channels, out_channels, stride, norm, act) -> nn.Module`` -------------

MACRO_OPS: Registry[OpFactory] = Registry("macro op")
register_op = MACRO_OPS.register


def _needs_projection(in_channels: int, out_channels: int, stride: int, enabled: bool) -> bool:
    return bool(enabled) and (stride != 1 or in_channels != out_channels)


def projection(
    in_channels: Any, out_channels: Any, stride: int, norm: NormFactory, enabled: Any = True
) -> nn.Module:
    """1x1 conv + norm when ``enabled`` and the channels or stride change, identity otherwise."""
    return conditional(
        derive(_needs_projection, in_channels, out_channels, stride, enabled),
        lambda: nn.Sequential(ElasticConv2d(in_channels, out_channels, 1, stride=stride), norm(out_channels)),
    )


def _separable(
    cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory, dilation: int = 1
) -> nn.Module:
    """Depthwise 3x3 -> pointwise 1x1 -> norm -> activation."""
    depthwise = ElasticConv2d(cin, cin, 3, stride=stride, dilation=dilation, depthwise=True)
    return nn.Sequential(depthwise, ElasticConv2d(cin, cout, 1), norm(cout), act())


@register_op("conv3x3")
def conv3x3(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    return conv_norm_act(cin, cout, 3, stride, norm, act)


@register_op("conv5x5")
def conv5x5(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    return conv_norm_act(cin, cout, 5, stride, norm, act)


@register_op("depthwise_conv")
def depthwise_conv(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    """MobileNetV1 unit: depthwise 3x3 -> norm -> act -> pointwise 1x1 -> norm -> act."""
    return nn.Sequential(
        conv_norm_act(cin, cin, 3, stride, norm, act, depthwise=True),
        conv_norm_act(cin, cout, 1, 1, norm, act),
    )


@register_op("sep_conv3x3")
def sep_conv3x3(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    """DARTS separable conv: two depthwise-separable units, the first strided."""
    return nn.Sequential(_separable(cin, cin, stride, norm, act), _separable(cin, cout, 1, norm, act))


@register_op("dil_conv3x3")
def dil_conv3x3(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    """Depthwise-separable 3x3 with dilation 2 (5x5 receptive field)."""
    return _separable(cin, cout, stride, norm, act, dilation=2)


@register_op("max_pool")
def max_pool(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(3, stride, padding=1), projection(cin, cout, 1, norm))


@register_op("avg_pool")
def avg_pool(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
    return nn.Sequential(pool, projection(cin, cout, 1, norm))


@register_op("skip_connect")
def skip_connect(cin: Any, cout: Any, stride: int, norm: NormFactory, act: ModuleFactory) -> nn.Module:
    """Identity, or a (strided) 1x1 projection when the shape changes."""
    return projection(cin, cout, stride, norm)
