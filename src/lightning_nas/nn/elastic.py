"""Elastic layers: one set of weights at the largest size, sliced to the chosen size.

Each constructor returns the plain ``torch.nn`` layer when every size is a plain number
(which is what happens inside :func:`~lightning_nas.nn.fixed_arch`), so frozen candidates
and supernets share parameter names and a frozen candidate can inherit supernet weights.
``freeze_module`` returns a plain layer whose parameters are views of the elastic layer's
(no copy) and whose BatchNorm statistics are copies; :func:`~lightning_nas.nn.freeze` copies
the views unless asked to share them.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.nn.choices import ChoiceExpr, Switchable, max_of, resolve

__all__ = ["ElasticBatchNorm2d", "ElasticConv2d", "ElasticGroupNorm", "ElasticLinear"]


def _has_choice(*values: Any) -> bool:
    return any(isinstance(v, ChoiceExpr) for v in values)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


@functools.lru_cache(maxsize=1024)
def _template(kind: type[nn.Module], args: tuple[Any, ...], options: tuple[tuple[str, Any], ...]) -> nn.Module:
    return kind(*args, **dict(options), device="meta")


def _layer(kind: type[ModuleT], *args: Any, **options: Any) -> ModuleT:
    """``kind(*args, **options)`` on the meta device, without running its initialisation each time: a copy
    of a cached instance with containers of its own (its parameters are replaced by :func:`_share`)."""
    template = _template(cast(Any, kind), args, tuple(sorted(options.items())))  # classes hash by identity
    layer = object.__new__(kind)
    layer.__dict__.update({k: type(v)(v) if isinstance(v, dict | list) else v for k, v in vars(template).items()})
    return layer


def _share(plain: nn.Module, name: str, source: torch.Tensor | None) -> None:
    """Make ``plain.<name>`` a parameter viewing ``source`` (no copy): the frozen layer uses the supernet's storage."""
    if source is not None and getattr(plain, name, None) is not None:
        setattr(plain, name, nn.Parameter(source.detach(), requires_grad=source.requires_grad))


class ElasticConv2d(Switchable):
    """Conv2d whose input/output channels and (odd) kernel size may be choices.

    The kernel is the centre crop of the largest kernel; channels are the leading slice.
    ``depthwise=True`` makes ``groups`` follow the channel count (then in == out).
    """

    @classmethod
    def _plain_instance(cls, in_channels: Any, out_channels: Any, kernel_size: Any, stride: int = 1,
                dilation: int = 1, depthwise: bool = False, bias: bool = False) -> nn.Module | None:
        if not _has_choice(in_channels, out_channels, kernel_size):
            groups = int(in_channels) if depthwise else 1
            out = int(in_channels) if depthwise else int(out_channels)
            k = int(kernel_size)
            return nn.Conv2d(int(in_channels), out, k, stride=stride, padding=dilation * (k - 1) // 2,
                             dilation=dilation, groups=groups, bias=bias)
        return None

    def __init__(self, in_channels: Any, out_channels: Any, kernel_size: Any, stride: int = 1,
                 dilation: int = 1, depthwise: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels if depthwise else out_channels
        self.kernel_size = kernel_size
        self.stride, self.dilation, self.depthwise = stride, dilation, depthwise
        max_in, max_out, max_k = int(max_of(in_channels)), int(max_of(self.out_channels)), int(max_of(kernel_size))
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in, max_k, max_k))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        if self.weight.device.type != "meta":  # a meta supernet only lists decisions
            nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def _active(self) -> tuple[int, int, int]:
        return int(resolve(self.in_channels)), int(resolve(self.out_channels)), int(resolve(self.kernel_size))

    def _sliced(self, cin: int, cout: int, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = (self.weight.shape[-1] - k) // 2
        weight = self.weight[:cout, : (1 if self.depthwise else cin), start : start + k, start : start + k]
        return weight, None if self.bias is None else self.bias[:cout]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        _, cout, k = self._active()
        cout = cin if self.depthwise else cout
        weight, bias = self._sliced(cin, cout, k)
        return F.conv2d(x, weight, bias, self.stride, self.dilation * (k - 1) // 2, self.dilation,
                        cin if self.depthwise else 1)

    def freeze_module(self) -> nn.Module:
        cin, cout, k = self._active()
        plain = _layer(nn.Conv2d, cin, cin if self.depthwise else cout, k, stride=self.stride,
                       padding=self.dilation * (k - 1) // 2, dilation=self.dilation,
                       groups=cin if self.depthwise else 1, bias=self.bias is not None, dtype=self.weight.dtype)
        weight, bias = self._sliced(cin, plain.out_channels, k)
        _share(plain, "weight", weight)
        _share(plain, "bias", bias)
        return plain


class ElasticBatchNorm2d(Switchable):
    """BatchNorm2d over a chosen number of leading channels (statistics are sliced too)."""

    @classmethod
    def _plain_instance(cls, num_features: Any, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module | None:
        if not _has_choice(num_features):
            return nn.BatchNorm2d(int(num_features), eps=eps, momentum=momentum)
        return None

    def __init__(self, num_features: Any, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        size = int(max_of(num_features))
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.num_batches_tracked: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, self.momentum, self.eps)

    def freeze_module(self) -> nn.Module:
        c = int(resolve(self.num_features))
        plain = _layer(nn.BatchNorm2d, c, eps=self.eps, momentum=self.momentum, dtype=self.weight.dtype)
        for name in ("weight", "bias"):
            _share(plain, name, getattr(self, name)[:c])
        plain.running_mean = self.running_mean[:c].clone()  # statistics of its own
        plain.running_var = self.running_var[:c].clone()
        plain.num_batches_tracked = self.num_batches_tracked.clone()
        return plain


class ElasticGroupNorm(Switchable):
    """GroupNorm over a chosen number of channels; ``num_groups=1`` is channel layer norm.

    The group count used is the largest divisor of the channel count not above ``num_groups``.
    """

    @classmethod
    def _plain_instance(cls, num_groups: int, num_channels: Any, eps: float = 1e-5) -> nn.Module | None:
        if not _has_choice(num_channels):
            return nn.GroupNorm(_groups_for(num_groups, int(num_channels)), int(num_channels), eps=eps)
        return None

    def __init__(self, num_groups: int, num_channels: Any, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        size = int(max_of(num_channels))
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.group_norm(x, _groups_for(self.num_groups, c), self.weight[:c], self.bias[:c], self.eps)

    def freeze_module(self) -> nn.Module:
        c = int(resolve(self.num_channels))
        plain = _layer(nn.GroupNorm, _groups_for(self.num_groups, c), c, eps=self.eps)
        _share(plain, "weight", self.weight[:c])
        _share(plain, "bias", self.bias[:c])
        return plain


def _groups_for(num_groups: int, channels: int) -> int:
    return next(g for g in range(min(num_groups, channels), 0, -1) if channels % g == 0)


class ElasticLinear(Switchable):
    """Linear layer whose input and output widths may be choices (leading slices)."""

    @classmethod
    def _plain_instance(cls, in_features: Any, out_features: Any, bias: bool = True) -> nn.Module | None:
        if not _has_choice(in_features, out_features):
            return nn.Linear(int(in_features), int(out_features), bias=bias)
        return None

    def __init__(self, in_features: Any, out_features: Any, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        reference = nn.Linear(int(max_of(in_features)), int(max_of(out_features)), bias=bias)
        self.weight = reference.weight
        self.bias = reference.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cout = int(resolve(self.out_features))
        bias = None if self.bias is None else self.bias[:cout]
        return F.linear(x, self.weight[:cout, : x.shape[-1]], bias)

    def freeze_module(self) -> nn.Module:
        cin, cout = int(resolve(self.in_features)), int(resolve(self.out_features))
        plain = _layer(nn.Linear, cin, cout, bias=self.bias is not None, dtype=self.weight.dtype)
        _share(plain, "weight", self.weight[:cout, :cin])
        _share(plain, "bias", None if self.bias is None else self.bias[:cout])
        return plain
