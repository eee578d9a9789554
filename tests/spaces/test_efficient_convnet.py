"""EfficientConvNetSpace: decisions, layout adaptation, block structure and argument checks."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.nn import activate, freeze
from lightning_nas.spaces import SPACES, EfficientConvNetSpace
from lightning_nas.spaces.efficient_convnet import adapt_strides, default_resolutions

SMALL: dict[str, Any] = {
    "width_multipliers": [0.5, 1.0],
    "depth_multipliers": [1.0, 2.0],
    "kernel_sizes": [3, 5],
    "expansions": [1, 6],
    "se_ratios": [0.0, 0.25],
    "resolutions": [8, 12],
    "stem_channels": 8,
    "stage_channels": [8, 16],
    "stage_depths": [1, 2],
    "stage_strides": [1, 2],
    "head_channels": 16,
}


def _arch(space: EfficientConvNetSpace, **values: Any) -> dict[str, Any]:
    """The first candidate of every decision, with ``values`` (suffix -> value) applied."""
    arch = {label: d.candidates[0] for label, d in space.decisions.items()}
    for label in arch:
        for suffix, value in values.items():
            if label == suffix or label.endswith("/" + suffix):
                arch[label] = value
    return arch


def _final_feature_size(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    seen: list[tuple[int, ...]] = []
    handle = model.pool.register_forward_hook(lambda _m, inputs, _o: seen.append(tuple(inputs[0].shape[-2:])))
    model(x)
    handle.remove()
    return seen[0]


def test_registered_and_labels_and_cardinality_by_hand() -> None:
    assert SPACES.get("efficient_convnet") is EfficientConvNetSpace
    space = EfficientConvNetSpace((1, 8, 8), 10, **SMALL)
    # max depths: ceil(1 * 2.0) = 2 and ceil(2 * 2.0) = 4 -> 6 blocks with kernel x expansion x se = 8 each
    blocks = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    expected = {"width_mult", "depth_mult", "resolution"} | {
        f"stage{s}/block{b}/{k}" for s, b in blocks for k in ("kernel", "expansion", "se_ratio")
    }
    assert set(space.decisions) == expected
    assert space.cardinality == 2 * 2 * 2 * 8**6
    assert space.decisions["width_mult"].candidates == (0.5, 1.0)


def test_single_candidates_add_no_decision() -> None:
    space = EfficientConvNetSpace(
        (1, 8, 8), 10, **{**SMALL, "width_multipliers": [1], "resolutions": [8], "se_ratios": [0]}
    )
    assert not {"width_mult", "resolution"} & set(space.decisions)
    assert not any(label.endswith("se_ratio") for label in space.decisions)
    model = space.build(space.sample(np.random.default_rng(0)))
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())
    assert model.stem[0].out_channels == 8


@pytest.mark.parametrize(("depth_mult", "depths"), [(1.0, [1, 2]), (2.0, [2, 4])])
def test_depth_multiplier_sets_blocks_per_stage(depth_mult: float, depths: list[int]) -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10, **SMALL)
    model = space.build(_arch(space, depth_mult=depth_mult))
    assert [len(model.stage0), len(model.stage1)] == depths


def test_width_multiplier_scales_channels_to_multiples_of_eight() -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10, **{**SMALL, "width_multipliers": [0.75, 1.5]})
    model = space.build(_arch(space, width_mult=1.5))
    assert model.stem[0].out_channels == 16  # make_divisible(1.5 * 8) = 16
    assert model.stage1[0].project[0].out_channels == 24
    assert model.classifier.in_features == 24


def test_block_structure_follows_its_decisions() -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10, **SMALL)
    model = space.build(_arch(space, kernel=5, expansion=1, se_ratio=0.25, width_mult=1.0))
    first = model.stage1[0]
    assert isinstance(first.expand, nn.Identity) and first.depthwise[0].kernel_size == (5, 5)
    assert first.depthwise[0].stride == (2, 2) and first.residual is False
    assert first.se.reduce.out_channels == 2  # int(8 input channels * 0.25)
    second = model.stage1[1]
    assert second.residual is True
    model = space.build(_arch(space, expansion=6, se_ratio=0.0))
    assert model.stage1[1].expand[0].out_channels == 16 * 6 // 2  # width 0.5: 8 channels * 6
    assert isinstance(model.stage1[1].se, nn.Identity)


def test_residual_adds_the_input() -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10, **SMALL)
    block = space.build(_arch(space, width_mult=1.0)).stage1[1].eval()
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        body = block.project(block.se(block.depthwise(block.expand(x))))
        torch.testing.assert_close(block(x), body + x)


def test_resolution_resizes_the_input() -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10, **SMALL)
    model = space.build(_arch(space, resolution=12))
    x = torch.randn(2, 1, 8, 8)
    assert model.resize(x).shape[-2:] == (12, 12)
    assert _final_feature_size(model, x) == (6, 6)
    assert space.build(_arch(space, resolution=8)).resize(x) is x


def test_default_resolutions_follow_the_input_size() -> None:
    assert default_resolutions(8) == [8, 12, 16]
    assert default_resolutions(28) == [28, 35, 42]
    assert default_resolutions(224) == [112, 168, 224]
    assert EfficientConvNetSpace((3, 32, 32), 10).decisions["resolution"].candidates == (32, 40, 48)


def test_non_square_inputs_keep_their_aspect() -> None:
    space = EfficientConvNetSpace((1, 8, 16), 10, **{**SMALL, "resolutions": [8, 12]})
    model = space.build(_arch(space, resolution=12))
    assert model.resize(torch.randn(1, 1, 8, 16)).shape[-2:] == (12, 24)


def test_strides_adapt_to_tiny_inputs() -> None:
    assert adapt_strides(8, [1, 1, 2, 2, 1]) == [1, 1, 2, 2, 1]
    assert adapt_strides(4, [2, 2, 2]) == [2, 1, 1]
    space = EfficientConvNetSpace((1, 8, 8), 10, resolutions=[4, 8], stage_strides=[2, 2, 2, 1])
    assert (space.stem_stride, space.stage_strides) == (1, [2, 1, 1, 1])
    model = space.build(_arch(space, resolution=4))
    assert _final_feature_size(model, torch.randn(2, 1, 8, 8)) == (2, 2)
    assert EfficientConvNetSpace((3, 96, 96), 10).stem_stride == 1  # smallest default resolution is 48
    assert EfficientConvNetSpace((3, 160, 160), 10).stem_stride == 2


@pytest.mark.parametrize(
    ("shape", "final"), [((1, 8, 8), (2, 2)), ((1, 28, 28), (7, 7)), ((3, 32, 32), (8, 8))]
)
def test_default_layout_on_small_inputs(shape: tuple[int, int, int], final: tuple[int, int]) -> None:
    space = EfficientConvNetSpace(shape, 10)
    with torch.device("meta"):
        model = space.build(_arch(space, resolution=shape[1]))
    assert _final_feature_size(model, torch.randn(1, *shape, device="meta")) == final


def test_default_width_is_laptop_sized() -> None:
    space = EfficientConvNetSpace((1, 8, 8), 10)
    arch = _arch(space, width_mult=1.0, depth_mult=1.0, kernel=7, expansion=6, se_ratio=0.25)
    with torch.device("meta"):
        params = sum(p.numel() for p in space.build(arch).parameters())
        supernet = sum(p.numel() for p in space.supernet().parameters())
    assert 100_000 < params < 400_000
    assert supernet < 2_000_000


def test_supernet_path_matches_frozen_with_default_options() -> None:
    space = EfficientConvNetSpace(
        (1, 8, 8),
        10,
        stage_channels=[8, 16],
        stage_depths=[1, 1],
        stage_strides=[1, 2],
        width_multipliers=[0.5, 1.0],
        head_channels=0,
    )
    supernet = space.supernet().eval()
    x = torch.randn(2, 1, 8, 8)
    for seed in range(3):
        arch = space.sample(np.random.default_rng(seed))
        activate(supernet, arch)
        torch.testing.assert_close(freeze(supernet, arch).eval()(x), supernet(x))
    assert math.isfinite(float(supernet(x).sum()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width_multipliers": [1.0, 0.0]}, "width_multipliers has invalid value 0.0"),
        ({"width_multipliers": []}, "width_multipliers must not be empty"),
        ({"depth_multipliers": [1.0, 1.0]}, "depth_multipliers has duplicate values"),
        ({"depth_multipliers": "1.0"}, "depth_multipliers must be a list"),
        ({"kernel_sizes": [3, 4]}, "kernel_sizes has invalid value 4"),
        ({"expansions": [0]}, "expansions has invalid value 0"),
        ({"se_ratios": [1.5]}, "se_ratios has invalid value 1.5"),
        ({"resolutions": [8, -1]}, "resolutions has invalid value -1"),
        ({"stem_channels": 0}, "stem_channels must be a positive int, got 0"),
        ({"stage_channels": [16, "x"]}, "stage_channels has invalid value 'x'"),
        ({"stage_depths": [1, 0, 1, 1]}, "stage_depths has invalid value 0"),
        ({"stage_strides": [1, 3, 2, 1]}, "stage_strides has invalid value 3"),
        ({"stage_strides": [1, 2]}, "need equal lengths"),
        ({"stem_stride": 4}, "stem_stride must be 1, 2 or None, got 4"),
        ({"head_channels": -1}, "head_channels must be a non-negative int, got -1"),
        ({"activation": "tanh"}, "activation must be one of .* got 'tanh'"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    pattern = message if ".*" in message else re.escape(message)
    with pytest.raises(ValueError, match=pattern):
        EfficientConvNetSpace((1, 8, 8), 10, **kwargs)
