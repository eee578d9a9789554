"""MacroConvNetSpace: decisions, stage split, ops, shortcuts, global norm/activation and argument checks."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.nn import activate, freeze, has_choices
from lightning_nas.spaces import MACRO_OPS, SPACES, MacroConvNetSpace
from lightning_nas.spaces.macro_convnet import DEFAULT_OPS, stage_depth
from lightning_nas.spaces.ops import make_activation, make_norm

TINY: dict[str, Any] = {
    "num_layers": [2, 3],
    "ops": ["conv3x3", "skip_connect"],
    "channels": [8, 16],
    "num_reductions": 1,
    "activations": ["relu"],
    "norms": ["batch"],
    "residual": [False, True],
    "squeeze_excite": [False],
    "stem_channels": 8,
}


def _arch(space: MacroConvNetSpace, **values: Any) -> dict[str, Any]:
    """The first candidate of every decision, with ``values`` (label or label suffix -> value) applied."""
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
    assert SPACES.get("macro_convnet") is MacroConvNetSpace
    space = MacroConvNetSpace((1, 8, 8), 10, **TINY)
    # 2 stages; 2 layers split 1 + 1, 3 layers split 1 + 2 -> 3 layer slots, each op x channels x residual
    slots = ["stage0/layer0", "stage1/layer0", "stage1/layer1"]
    expected = {"num_layers"} | {f"{s}/{k}" for s in slots for k in ("op", "channels", "residual")}
    assert set(space.decisions) == expected
    assert space.cardinality == 2 * (2 * 2 * 2) ** 3


def test_default_space_decisions() -> None:
    space = MacroConvNetSpace((1, 28, 28), 10)
    assert space.num_reductions == 3
    per_layer = ("op", "channels", "residual", "se")
    assert len(space.decisions) == 3 + 22 * len(per_layer)
    assert space.decisions["stage0/layer0/op"].candidates == DEFAULT_OPS
    assert space.decisions["norm"].candidates == ("batch", "group", "layer")
    assert space.decisions["activation"].candidates == ("relu", "swish", "gelu")


def test_stage_split_is_even_with_later_stages_taking_the_rest() -> None:
    assert [stage_depth(6, 4, s) for s in range(4)] == [1, 1, 2, 2]
    assert [stage_depth(22, 4, s) for s in range(4)] == [5, 5, 6, 6]
    for n in range(3, 23):
        depths = [stage_depth(n, 3, s) for s in range(3)]
        assert sum(depths) == n and min(depths) >= 1 and depths == sorted(depths)


@pytest.mark.parametrize(
    ("shape", "reductions", "final"),
    [((1, 8, 8), 2, (2, 2)), ((1, 28, 28), 3, (4, 4)), ((3, 32, 32), 3, (4, 4)), ((1, 4, 4), 1, (2, 2))],
)
def test_reductions_adapt_to_the_input(
    shape: tuple[int, int, int], reductions: int, final: tuple[int, int]
) -> None:
    space = MacroConvNetSpace(shape, 10, **{**TINY, "num_reductions": None, "num_layers": [4, 5]})
    assert space.num_reductions == reductions
    for n in (4, 5):
        model = space.build(_arch(space, num_layers=n, op="skip_connect"))
        assert _final_feature_size(model, torch.randn(2, *shape)) == final


def test_number_of_layers_and_widths_follow_the_architecture() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, **TINY)
    arch = _arch(space, num_layers=3)
    arch.update({"stage1/layer0/channels": 16, "stage1/layer1/channels": 8})
    model = space.build(arch)
    assert (len(model.stage0), len(model.stage1)) == (1, 2)
    assert model.stage1[0].op[0].stride == (2, 2) and model.stage1[1].op[0].stride == (1, 1)
    assert model.stage1[0].op[0].out_channels == 16 and model.stage1[1].op[0].in_channels == 16
    assert model.classifier.in_features == 8
    assert space.build(_arch(space, num_layers=2)).classifier.in_features == 8


@pytest.mark.parametrize("name", MACRO_OPS.names())
@pytest.mark.parametrize(("cin", "cout", "stride"), [(8, 8, 1), (8, 16, 1), (16, 8, 2)])
def test_every_op_changes_channels_and_stride(name: str, cin: int, cout: int, stride: int) -> None:
    op = MACRO_OPS.get(name)(cin, cout, stride, partial(make_norm, "batch"), partial(make_activation, "relu"))
    assert not has_choices(op)
    assert op(torch.randn(2, cin, 7, 7)).shape == (2, cout, 4 if stride == 2 else 7, 4 if stride == 2 else 7)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    if name == "skip_connect" and (cin, cout, stride) == (8, 8, 1):
        assert isinstance(op, nn.Identity)
    if name in ("skip_connect", "max_pool", "avg_pool"):
        assert len(convs) == (0 if (cin, cout) == (8, 8) and (stride == 1 or name != "skip_connect") else 1)
        assert all(c.kernel_size == (1, 1) for c in convs)


def test_every_op_freezes_to_its_supernet_path() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, **{**TINY, "ops": list(DEFAULT_OPS), "squeeze_excite": [False, True]})
    supernet = space.supernet().eval()
    x = torch.randn(2, 1, 8, 8)
    rng = np.random.default_rng(0)
    for name in DEFAULT_OPS:
        arch = {**space.sample(rng), **{label: name for label in space.decisions if label.endswith("/op")}}
        activate(supernet, arch)
        frozen = freeze(supernet, arch).eval()
        assert list(frozen.state_dict()) == list(space.build(arch).state_dict())
        torch.testing.assert_close(frozen(x), supernet(x))


def test_residual_shortcut_is_projected_only_when_the_shape_changes() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, **TINY)
    arch = _arch(space, num_layers=3, residual=True, op="conv3x3", channels=8)
    model = space.build({**arch, "stage1/layer1/channels": 16})
    down, wider = model.stage1[0], model.stage1[1]
    assert isinstance(model.stage0[0].shortcut, nn.Identity) and model.stage0[0].residual is True
    assert down.shortcut[0].stride == (2, 2) and down.shortcut[0].kernel_size == (1, 1)
    assert wider.shortcut[0].stride == (1, 1) and wider.shortcut[0].out_channels == 16
    layer = model.stage0[0].eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.op(x) + x)
    no_residual = space.build(_arch(space, residual=False)).stage0[0]
    assert no_residual.residual is False and isinstance(no_residual.shortcut, nn.Identity)


@pytest.mark.parametrize(
    ("norm", "activation", "norm_type", "act_type"),
    [
        ("batch", "relu", nn.BatchNorm2d, nn.ReLU),
        ("group", "gelu", nn.GroupNorm, nn.GELU),
        ("layer", "swish", nn.GroupNorm, nn.SiLU),
    ],
)
def test_global_norm_and_activation(norm: str, activation: str, norm_type: type, act_type: type) -> None:
    space = MacroConvNetSpace(
        (1, 8, 8),
        10,
        **{**TINY, "norms": ["batch", "group", "layer"], "activations": ["relu", "swish", "gelu"]},
    )
    arch = _arch(space, norm=norm, activation=activation, op="conv3x3", squeeze_excite=True)
    model = space.build(arch)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.SiLU | nn.GELU)]
    assert norms and all(type(m) is norm_type for m in norms)
    assert acts and all(type(m) is act_type for m in acts)
    if norm == "layer":
        assert all(m.num_groups == 1 for m in norms)
    supernet = space.supernet().eval()
    activate(supernet, arch)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(freeze(supernet, arch).eval()(x), supernet(x))


def test_squeeze_excite_decision() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, **{**TINY, "squeeze_excite": [False, True]})
    with_se = space.build(_arch(space, se=True, channels=16))
    assert with_se.stage0[0].se.reduce.out_channels == 4
    assert isinstance(space.build(_arch(space, se=False)).stage0[0].se, nn.Identity)


def test_default_supernet_shares_widths_across_layers() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, **{**TINY, "channels": [16, 32, 64]})
    with torch.device("meta"):
        supernet = space.supernet()
    conv = supernet.stage1.blocks[1].op.candidates["conv3x3"][0]
    assert conv.weight.shape == (64, 64, 3, 3)
    assert supernet.classifier.weight.shape == (10, 64)
    arch = _arch(space, num_layers=3, channels=32)
    with torch.device("meta"):
        assert freeze(supernet, arch).stage1[1].op[0].weight.shape == (32, 32, 3, 3)


def test_sampling_covers_every_op() -> None:
    space = MacroConvNetSpace((1, 8, 8), 10, num_layers=[4], num_reductions=1, channels=[8])
    rng = np.random.default_rng(0)
    seen = {space.sample(rng)["stage0/layer0/op"] for _ in range(100)}
    assert seen == set(DEFAULT_OPS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": [4, 2]}, "num_layers has invalid value 2: expected ints >= num_reductions + 1 = 3"),
        ({"num_layers": []}, "num_layers must not be empty"),
        ({"ops": ["conv3x3", "conv9x9"]}, "ops has invalid value 'conv9x9'"),
        ({"ops": "conv3x3"}, "ops must be a list"),
        ({"channels": [16, 0]}, "channels has invalid value 0"),
        ({"channels": [16, 16]}, "channels has duplicate values"),
        ({"num_reductions": 4}, "num_reductions must be an int in [0, log2(8)], got 4"),
        ({"num_reductions": -1}, "num_reductions must be an int in [0, log2(8)], got -1"),
        ({"activations": ["relu", "tanh"]}, "activations has invalid value 'tanh'"),
        ({"norms": ["instance"]}, "norms has invalid value 'instance'"),
        ({"residual": [0, 1]}, "residual has invalid value 0"),
        ({"squeeze_excite": ["yes"]}, "squeeze_excite has invalid value 'yes'"),
        ({"stem_channels": 0}, "stem_channels must be a positive int, got 0"),
        ({"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MacroConvNetSpace((1, 8, 8), 10, **{"num_layers": [4, 6], **kwargs})
