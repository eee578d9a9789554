"""Fixtures for strategy tests: synthetic spaces that need no training."""

from __future__ import annotations

import pytest
from torch import nn

from lightning_nas.nn import LayerChoice
from lightning_nas.spaces.base import SearchSpace

WIDE_OPS = ("a", "b", "c", "d")
WIDE_DEPTH = 16


class WideSpace(SearchSpace):
    """16 decisions of 4 ops each (4**16 architectures): big enough for selection pressure to show."""

    name = "wide"

    def construct(self) -> nn.Module:
        ops = {op: nn.Identity for op in WIDE_OPS}
        return nn.Sequential(*(LayerChoice(ops, label=f"layer{i}/op") for i in range(WIDE_DEPTH)))


class PinnedSpace(SearchSpace):
    """One decision with a single candidate and one with two: only ``free`` can ever change."""

    name = "pinned"

    def construct(self) -> nn.Module:
        return nn.Sequential(
            LayerChoice({"only": nn.Identity}, label="pinned"),
            LayerChoice({"x": nn.Identity, "y": nn.Identity}, label="free"),
        )


@pytest.fixture
def wide_space() -> WideSpace:
    return WideSpace(input_shape=(1, 4, 4), num_classes=2)


@pytest.fixture
def pinned_space() -> PinnedSpace:
    return PinnedSpace(input_shape=(1, 4, 4), num_classes=2)
