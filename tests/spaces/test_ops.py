"""Shared building blocks: lazy picks, conditional layers, chosen activations and norms, MBConv."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from lightning_nas.nn import ValueChoice, activate, decisions, fixed_arch, freeze, has_choices
from lightning_nas.spaces.ops import (
    ACTIVATIONS,
    Conditional,
    MBConv,
    Pick,
    check_values,
    conditional,
    make_activation,
    make_norm,
    pick,
)


def test_pick_values_are_the_union_without_enumerating_the_product() -> None:
    depth = ValueChoice([1, 2, 3], label="depth")
    widths = [ValueChoice(list(range(10 * i, 10 * i + 30)), label=f"w{i}") for i in range(3)]
    last = pick(depth - 1, widths)
    assert isinstance(last, Pick)
    assert {leaf.label for leaf in last.leaves()} == {"depth", "w0", "w1", "w2"}
    assert last.max() == 49 and last.min() == 0  # 30**3 * 3 combinations are never listed
    assert last.evaluate({"depth": 2, "w1": 17}) == 17
    assert pick(1, widths) is widths[1] and pick(0, [5, 6]) == 5
    assert pickle.loads(pickle.dumps(last)).evaluate({"depth": 3, "w2": 33}) == 33


def test_conditional_layer_freezes_to_the_layer_or_identity() -> None:
    flag = ValueChoice([False, True], label="on")
    model = nn.Sequential(conditional(flag, lambda: nn.Linear(3, 3)))
    assert isinstance(model[0], Conditional) and set(decisions(model)) == {"on"}
    x = torch.randn(2, 3)
    activate(model, {"on": False})
    assert torch.equal(model(x), x)
    assert isinstance(freeze(model, {"on": False})[0], nn.Identity)
    frozen = freeze(model, {"on": True})
    assert isinstance(frozen[0], nn.Linear) and not has_choices(frozen)
    assert isinstance(conditional(False, lambda: nn.Linear(3, 3)), nn.Identity)
    with fixed_arch({"on": True}):
        assert isinstance(
            conditional(ValueChoice([False, True], label="on"), lambda: nn.Linear(3, 3)), nn.Linear
        )


def test_chosen_activation_and_norm_freeze_to_plain_layers() -> None:
    act = ValueChoice(["relu", "gelu"], label="act")
    norm = ValueChoice(["batch", "layer"], label="norm")
    model = nn.Sequential(make_norm(norm, ValueChoice([4, 8], label="w")), make_activation(act)).eval()
    x = torch.randn(2, 4, 3, 3)
    arch = {"act": "gelu", "norm": "layer", "w": 4}
    activate(model, arch)
    frozen = freeze(model, arch)
    assert [type(m) for m in frozen] == [nn.GroupNorm, nn.GELU] and frozen[0].num_groups == 1
    torch.testing.assert_close(frozen(x), model(x))
    assert isinstance(make_activation("swish"), nn.SiLU)


def test_mbconv_in_a_supernet_matches_its_frozen_block() -> None:
    width = ValueChoice([8, 16], label="w")
    block = MBConv(
        width,
        width,
        ValueChoice([3, 5], label="k"),
        ValueChoice([1, 4], label="e"),
        ValueChoice([0.0, 0.5], label="se"),
    ).eval()
    x = torch.randn(2, 16, 5, 5)
    for arch in ({"w": 8, "k": 5, "e": 4, "se": 0.5}, {"w": 16, "k": 3, "e": 1, "se": 0.0}):
        activate(block, arch)
        frozen = freeze(block, arch)
        with fixed_arch(arch):
            plain = MBConv(
                ValueChoice([8, 16], label="w"),
                ValueChoice([8, 16], label="w"),
                5 if arch["k"] == 5 else 3,
                arch["e"],
                arch["se"],
            )
        assert list(frozen.state_dict()) == list(plain.state_dict())
        inputs = x[:, : arch["w"]]
        torch.testing.assert_close(frozen(inputs), block(inputs))
        torch.testing.assert_close(
            frozen(inputs), frozen.project(frozen.se(frozen.depthwise(frozen.expand(inputs)))) + inputs
        )


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_chosen_activation_computes_the_plain_layer(name: str) -> None:
    module = make_activation(ValueChoice(sorted(ACTIVATIONS), label="act"))
    activate(module, {"act": name})
    x = torch.linspace(-5, 5, 41)
    torch.testing.assert_close(module(x), ACTIVATIONS[name]()(x))
    assert type(freeze(module, {"act": name})) is type(ACTIVATIONS[name]())


def test_check_values_names_the_argument() -> None:
    assert check_values("sizes", (1, 2), lambda v: v > 0, "positive") == [1, 2]
    assert check_values("sizes", [1, 1], lambda v: v > 0, "positive", unique=False) == [1, 1]
    with pytest.raises(ValueError, match="sizes has invalid value -1: expected positive"):
        check_values("sizes", [1, -1], lambda v: v > 0, "positive")
    with pytest.raises(ValueError, match="sizes must be a list of positive, got 3"):
        check_values("sizes", 3, lambda v: v > 0, "positive")
