"""A :class:`SupernetSpace`: the search space over the paths of an existing supernet module."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, cast

import torch
from torch import nn

from lightning_nas.nn import ValueChoice, decisions, freeze, has_choices
from lightning_nas.spaces.base import SearchSpace

__all__ = ["SupernetSpace"]


class SupernetSpace(SearchSpace):
    """A :class:`SearchSpace` over the paths of an existing supernet module.

    ``build(arch)`` returns the frozen path *with the supernet's weights* (``freeze``), not a
    freshly initialised network; ``input_shape`` may be any per-sample shape.

    Args:
        supernet: a module containing ``lightning_nas.nn`` choices.
        input_shape: shape of one input sample (without the batch dimension).
        num_classes: number of output logits.

    Example:
        >>> space = SupernetSpace(model.net, input_shape=(1, 8, 8), num_classes=10)  # doctest: +SKIP
    """

    name = "supernet"

    def __init__(self, supernet: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
        if not has_choices(supernet):
            raise ValueError(f"{type(supernet).__name__} contains no lightning_nas choices")
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1 or int(num_classes) < 1:
            raise ValueError(f"need a positive input_shape and num_classes, "
                             f"got {input_shape!r}, {num_classes!r}")
        self.module = supernet
        self.input_shape = cast(tuple[int, int, int], shape)
        self.num_classes = int(num_classes)

    def construct(self) -> nn.Module:
        return self.module

    @cached_property
    def decisions(self) -> dict[str, ValueChoice]:
        return decisions(self.module)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        return freeze(self.module, self.validate(arch))

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        return torch.randn(batch_size, *self.input_shape)
