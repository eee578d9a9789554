"""Shared fixtures: a tiny search space that builds in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_nas.nn import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, LayerChoice, Repeat, ValueChoice
from lightning_nas.spaces.base import SearchSpace

torch.set_num_threads(1)


class ToySpace(SearchSpace):
    """Width, kernel, depth and a per-block op: 2 * 2 * 3 * 2**3 = 96 architectures."""

    name = "toy"

    def construct(self) -> nn.Module:
        width = ValueChoice([4, 8], label="width")
        kernel = ValueChoice([3, 5], label="kernel")

        def block(i: int) -> nn.Module:
            return nn.Sequential(
                LayerChoice(
                    {"conv": lambda: ElasticConv2d(width, width, kernel), "skip": nn.Identity},
                    label=f"block{i}/op",
                ),
                ElasticBatchNorm2d(width),
                nn.ReLU(),
            )

        return nn.Sequential(
            ElasticConv2d(self.input_shape[0], width, 3),
            Repeat(block, [1, 2, 3], label="depth"),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            ElasticLinear(width, self.num_classes),
        )


@pytest.fixture
def toy_space() -> ToySpace:
    return ToySpace(input_shape=(1, 8, 8), num_classes=10)


class _Marker:
    """Unpickling this object would run ``open(marker, "w")``: proof that a loader executed file content."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.marker, "w")


@pytest.fixture
def crafted_pickle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(file, marker)``: a pickle (also a valid ``torch.save`` zip) that creates ``marker`` when unpickled."""
    folder = tmp_path_factory.mktemp("crafted")
    path, marker = folder / "payload.pt", folder / "ran_code"
    torch.save({"weight": _Marker(str(marker))}, path, _use_new_zipfile_serialization=True)
    assert not marker.exists()
    return path, marker
