"""The DARTS cell space: sampled cells build, freeze to the same network, and the relaxation runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_nas.nn import activate, freeze, has_choices
from lightning_nas.spaces.cell_ops import CELL_OPS, DARTS_OPS, channel_shuffle
from lightning_nas.spaces.darts_cell import DartsCellSpace


@pytest.fixture(scope="module")
def space() -> DartsCellSpace:
    return DartsCellSpace((1, 8, 8), 10, num_cells=3, channels=4)


def test_decisions_exclude_none_and_cover_both_cell_kinds(space: DartsCellSpace) -> None:
    assert len(space.decisions) == 2 * 4 * 3
    assert space.decisions["normal/node2/inputs"].candidates == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    assert space.decisions["reduce/node0/op1"].candidates == DARTS_OPS[1:]


def test_sampled_cells_build_and_match_the_frozen_supernet(space: DartsCellSpace) -> None:
    supernet = space.supernet().eval()
    rng = np.random.default_rng(0)
    x = space.example_input(2)
    for _ in range(4):
        arch = space.sample(rng)
        model = space.build(arch).eval()
        assert not has_choices(model)
        frozen = freeze(supernet, arch).eval()
        assert list(frozen.state_dict()) == list(model.state_dict())
        activate(supernet, arch)
        with torch.no_grad():
            torch.testing.assert_close(frozen(x), supernet(x))
            model.load_state_dict(frozen.state_dict())
            torch.testing.assert_close(model(x), supernet(x))


def test_reductions_at_one_and_two_thirds_double_the_channels() -> None:
    space = DartsCellSpace((3, 16, 16), 10, num_cells=5, channels=4)
    net = space.build(space.sample(np.random.default_rng(1)))
    assert net.kinds == ["normal", "reduce", "normal", "reduce", "normal"]
    assert net.classifier.in_features == 4 * 4 * 4  # 4 nodes x (4 channels doubled twice)
    assert net(space.example_input(1)).shape == (1, 10)


@pytest.mark.parametrize("partial", [1, 2])
def test_relaxed_network_mixes_every_op(space: DartsCellSpace, partial: int) -> None:
    net = space.relaxed(partial)
    probs = {k: torch.softmax(torch.randn(*shape), -1) for k, shape in space.alpha_shapes().items()}
    betas = {k: torch.zeros(shape[0]) for k, shape in space.alpha_shapes().items()} if partial > 1 else None
    out = net(space.example_input(2), space.node_weights(probs, betas))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible"):
        space.relaxed(3)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", sorted(CELL_OPS))
def test_cell_ops_keep_channels_and_stride(name: str, stride: int) -> None:
    out = CELL_OPS[name](4, stride, False)(torch.randn(2, 4, 7, 7))
    assert out.shape == (2, 4, 4 if stride == 2 else 7, 4 if stride == 2 else 7)


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(4.0).view(1, 4, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="num_cells"):
        DartsCellSpace((1, 8, 8), 10, num_cells=2)
    with pytest.raises(ValueError, match="ops"):
        DartsCellSpace((1, 8, 8), 10, ops=["none", "skip_connect"])
