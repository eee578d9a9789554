"""The :class:`SearchSpace` base class: what can be built."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn import ValueChoice, cardinality, decisions, fixed_arch, sample, validate
from lightning_nas.registry import Registry

__all__ = ["SPACES", "SearchSpace", "register_space"]

SPACES: Registry[type[SearchSpace]] = Registry("search space")
register_space = SPACES.register


class SearchSpace(ABC):
    """A family of networks for one input shape and class count.

    Subclasses implement :meth:`construct` with ``lightning_nas.nn`` choices; the same code
    builds the weight-sharing supernet (outside :func:`fixed_arch`) or one plain candidate
    (inside it), so ``build(arch)`` never allocates the whole supernet.

    Args:
        input_shape: ``(channels, height, width)`` of one input sample.
        num_classes: number of output logits.
    """

    name: str = "space"

    def __init__(self, input_shape: tuple[int, int, int] | list[int], num_classes: int) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
        self.input_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.num_classes = int(num_classes)

    @abstractmethod
    def construct(self) -> nn.Module:
        """Build the network with choice modules (a supernet, or a candidate inside ``fixed_arch``)."""

    def supernet(self) -> nn.Module:
        """The weight-sharing supernet holding every candidate."""
        return self.construct()

    @cached_property
    def decisions(self) -> dict[str, ValueChoice]:
        """The decisions by label (found on a weightless ``meta`` copy of the supernet)."""
        with torch.device("meta"):
            return decisions(self.construct())

    @property
    def cardinality(self) -> int:
        return cardinality(self.decisions)

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random architecture."""
        return sample(self.decisions, rng)

    def validate(self, arch: Mapping[str, Any]) -> Architecture:
        """``arch`` as an :class:`Architecture`; ``ValueError`` names a bad label or value."""
        return validate(self.decisions, arch)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        """A freshly initialised plain ``nn.Module`` for ``arch`` (no choice modules inside)."""
        with fixed_arch(self.validate(arch)):
            return self.construct()

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        return torch.randn(batch_size, *self.input_shape)

    def active_labels(self, arch: Mapping[str, Any]) -> set[str]:
        """The decisions ``arch`` actually uses (e.g. not those of blocks beyond its chosen depth)."""
        used: set[str] = set()
        with torch.device("meta"), fixed_arch(self.validate(arch), used=used):
            self.construct()
        return used

    def describe(self, arch: Mapping[str, Any]) -> str:
        """A compact one-line human description of ``arch``'s active decisions."""
        frozen = self.validate(arch)
        active = self.active_labels(frozen)
        return ", ".join(f"{k}={v}" for k, v in frozen.items() if k in active)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape}, num_classes={self.num_classes})"
