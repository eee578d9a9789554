"""hybrid_convnet: block types and stride choices build the networks they name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.baselines import resnet_small
from lightning_nas.hardware.profile import count_macs
from lightning_nas.spaces import HybridConvNetSpace
from lightning_nas.spaces.hybrid_convnet import ResidualBlock

SMALL = {"width_multipliers": [1.0], "depth_multipliers": [1.0], "kernel_sizes": [3], "expansions": [3],
         "se_ratios": [0.0], "resolutions": [28], "stem_stride": 2, "stem_channels": 8, "stage_channels": [8, 16],
         "stage_depths": [1, 1], "stage_strides": [1, 2], "head_channels": 0}


def _arch(space: HybridConvNetSpace, **values: str) -> dict[str, str]:
    return {label: values.get(label, str(choice.candidates[0])) for label, choice in space.decisions.items()}


@pytest.mark.parametrize(("kind", "module"), [("residual", ResidualBlock), ("conv", nn.Sequential)])
def test_block_type_builds_that_block(kind: str, module: type) -> None:
    space = HybridConvNetSpace((1, 28, 28), 10, **SMALL)
    arch = _arch(space, **{"stage0/block0/type": kind, "stage1/block0/type": kind})
    net = space.build(arch)
    block = net.stage0[0]
    assert isinstance(block, module)
    assert not any(isinstance(m, ResidualBlock) for m in net.modules()) or kind == "residual"
    assert "stage0/block0/kernel" not in space.active_labels(arch)  # MBConv's decisions do not count
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_stride_choice_sets_where_the_network_downsamples() -> None:
    space = HybridConvNetSpace((1, 28, 28), 10, stage_stride_choices=[[1], [1, 2]], **SMALL)
    assert "stage1/stride" in space.decisions
    macs = {s: count_macs(space.build(_arch(space, **{"stage1/stride": s})), (1, 28, 28)) for s in ("1", "2")}
    assert macs["1"] > 1.3 * macs["2"]  # stage 1 runs at 14x14 instead of 7x7


def test_bad_block_type_and_stride_lists_are_named() -> None:
    with pytest.raises(ValueError, match="block_types"):
        HybridConvNetSpace((1, 28, 28), 10, block_types=["transformer"], **SMALL)
    with pytest.raises(ValueError, match="stage_stride_choices"):
        HybridConvNetSpace((1, 28, 28), 10, stage_stride_choices=[[1]], **SMALL)


def test_resnet_small_baseline_has_about_the_two_conv_cnn_macs() -> None:
    model = resnet_small((1, 28, 28), 10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert 2.5e6 < count_macs(model, (1, 28, 28)) < 5e6


def test_stage_scope_gives_every_block_of_a_stage_the_same_choices() -> None:
    options = {**SMALL, "kernel_sizes": [3, 5], "expansions": [3, 6], "stage_depths": [2, 3]}
    per_block = HybridConvNetSpace((1, 28, 28), 10, **options)
    per_stage = HybridConvNetSpace((1, 28, 28), 10, decision_scope="stage", **options)
    assert {"stage0/type", "stage1/type", "stage1/kernel", "stage1/expansion"} <= set(per_stage.decisions)
    assert not any("/block" in label for label in per_stage.decisions)
    assert per_stage.cardinality < per_block.cardinality
    arch = {label: choice.candidates[0] for label, choice in per_stage.decisions.items()}
    arch.update({"stage0/type": "residual", "stage1/type": "mbconv", "stage1/kernel": 5})
    net = per_stage.build(arch)
    assert all(isinstance(block, ResidualBlock) for block in net.stage0)
    kernels = {m.kernel_size for block in net.stage1 for m in block.modules()
               if isinstance(m, nn.Conv2d) and m.groups > 1}
    assert len(net.stage1) == 3 and kernels == {(5, 5)}  # every MBConv of stage 1 takes the stage's kernel
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    supernet = per_stage.supernet()
    assert net(torch.zeros(1, 1, 28, 28)).shape == supernet(torch.zeros(1, 1, 28, 28)).shape


def test_bad_decision_scope_is_named() -> None:
    with pytest.raises(ValueError, match="decision_scope must be one of \\['block', 'stage'\\], got 'layer'"):
        HybridConvNetSpace((1, 28, 28), 10, decision_scope="layer", **SMALL)


def test_pool_size_gives_the_classifier_every_position() -> None:
    from lightning_nas.hardware.profile import count_params
    from lightning_nas.nn.mutation import activate, freeze

    options = {**SMALL, "width_multipliers": [0.75, 1.0], "stage_channels": [8, 16, 32], "stage_depths": [1, 1, 1],
               "stage_strides": [1, 2, 2]}
    pooled = HybridConvNetSpace((1, 28, 28), 10, pool_size=4, **options)
    arch = {label: choice.candidates[0] for label, choice in pooled.decisions.items()}  # width 0.75
    assert count_params(pooled.build(arch)) - count_params(HybridConvNetSpace((1, 28, 28), 10, **options).build(
        arch)) == 24 * 15 * 10  # width 0.75: 24 channels at 4x4, every position a classifier input
    supernet = pooled.supernet().eval()
    x = torch.randn(2, 1, 28, 28)
    for width in (0.75, 1.0):
        arch = {**arch, "width_mult": width}
        activate(supernet, arch)
        subnet = freeze(supernet, arch, share_weights=True).eval()
        assert torch.allclose(supernet(x), subnet(x), atol=1e-5)  # the classifier's leading columns, channel-major


def test_bad_pool_size_is_named() -> None:
    with pytest.raises(ValueError, match="pool_size must be an int >= 1, got 0"):
        HybridConvNetSpace((1, 28, 28), 10, pool_size=0, **SMALL)


def test_channel_divisor_rounds_every_width_to_its_multiples() -> None:
    options = {**SMALL, "width_multipliers": [1.0], "stem_channels": 24, "stage_channels": [24, 72]}
    eight = HybridConvNetSpace((1, 28, 28), 10, **options)
    sixteen = HybridConvNetSpace((1, 28, 28), 10, channel_divisor=16, **options)
    arch = _arch(eight, **{"stage0/block0/type": "conv", "stage1/block0/type": "residual"})

    def widths(space: HybridConvNetSpace) -> list[int]:
        return [m.out_channels for m in space.build(arch).modules() if isinstance(m, nn.Conv2d)]

    assert set(widths(eight)) == {24, 72}
    assert set(widths(sixteen)) == {32, 80}  # 24 -> 32 and 72 -> 80: no multiple of 16 within 10% below
    assert sixteen.build(arch)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="channel_divisor must be a positive int, got 0"):
        HybridConvNetSpace((1, 28, 28), 10, channel_divisor=0, **SMALL)


def test_stem_multipliers_size_the_stem_apart_from_the_stages() -> None:
    from lightning_nas.nn.mutation import activate, freeze

    options = {**SMALL, "width_multipliers": [1.0, 2.0], "stem_channels": 16, "stage_channels": [16, 32]}
    follows = HybridConvNetSpace((1, 28, 28), 10, **options)
    fixed = HybridConvNetSpace((1, 28, 28), 10, stem_multipliers=[1.0], **options)
    searched = HybridConvNetSpace((1, 28, 28), 10, stem_multipliers=[0.5, 1.0], **options)
    assert "stem_mult" not in follows.decisions and "stem_mult" not in fixed.decisions
    assert list(searched.decisions["stem_mult"].candidates) == [0.5, 1.0]
    wide = {"width_mult": 2.0, "stage0/block0/type": "conv", "stage1/block0/type": "conv"}

    def stem_and_stages(space: HybridConvNetSpace, **values: object) -> list[int]:
        arch = {label: values.get(label, wide.get(label, choice.candidates[0]))
                for label, choice in space.decisions.items()}
        return [m.out_channels for m in space.build(arch).modules() if isinstance(m, nn.Conv2d)]

    assert stem_and_stages(follows) == [32, 32, 64]
    assert stem_and_stages(fixed) == [16, 32, 64]  # width 2 leaves the stem at 16
    assert stem_and_stages(searched, stem_mult=0.5) == [8, 32, 64]
    supernet = searched.supernet().eval()
    x = torch.randn(2, 1, 28, 28)
    for stem_mult in (0.5, 1.0):
        arch = {label: wide.get(label, choice.candidates[0]) for label, choice in searched.decisions.items()}
        arch["stem_mult"] = stem_mult
        activate(supernet, arch)
        subnet = freeze(supernet, arch, share_weights=True).eval()
        assert torch.allclose(supernet(x), subnet(x), atol=1e-5)
    with pytest.raises(ValueError, match="stem_multipliers"):
        HybridConvNetSpace((1, 28, 28), 10, stem_multipliers=[0.0], **SMALL)
