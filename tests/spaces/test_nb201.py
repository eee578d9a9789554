"""The NAS-Bench-201 space: string format round trip, builds, freezing and the relaxed cell."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightning_nas.arch import Architecture
from lightning_nas.nn import activate, freeze
from lightning_nas.spaces.cell_ops import NB201_OPS
from lightning_nas.spaces.nb201 import EDGES, NB201Space, edge_label, nb201_from_string, nb201_to_string

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space((3, 8, 8), 10, cells_per_stage=1, channels=4)


def test_string_round_trip_for_all_15625_cells(space: NB201Space) -> None:
    labels = [edge_label(j, i) for j, i in EDGES]
    strings = set()
    for ops in itertools.product(NB201_OPS, repeat=6):
        arch = Architecture(dict(zip(labels, ops, strict=True)))
        text = nb201_to_string(arch)
        assert nb201_from_string(text) == arch
        strings.add(text)
    assert len(strings) == 15625 == space.cardinality
    assert set(space.decisions) == set(labels)


def test_known_string_parses_to_the_expected_edges() -> None:
    arch = nb201_from_string(BEST)
    assert arch["cell/edge_3_0"] == "skip_connect" and arch["cell/edge_1_0"] == "nor_conv_3x3"
    assert nb201_to_string(arch) == BEST


@pytest.mark.parametrize(
    "text", ["", "|nor_conv_3x3~0|", BEST.replace("~2", "~1"), BEST.replace("skip_connect", "conv7x7"), BEST[1:]]
)
def test_malformed_strings_raise(text: str) -> None:
    with pytest.raises(ValueError):
        nb201_from_string(text)


def test_sampled_cells_build_and_match_the_frozen_supernet(space: NB201Space) -> None:
    supernet = space.supernet().eval()
    rng = np.random.default_rng(0)
    x = space.example_input(2)
    for arch in [nb201_from_string(BEST), *(space.sample(rng) for _ in range(4))]:
        model = space.build(arch).eval()
        frozen = freeze(supernet, arch).eval()
        assert list(frozen.state_dict()) == list(model.state_dict())
        activate(supernet, arch)
        with torch.no_grad():
            model.load_state_dict(frozen.state_dict())
            torch.testing.assert_close(model(x), supernet(x))
    assert space.describe(nb201_from_string(BEST)) == BEST


@pytest.mark.parametrize("partial", [1, 2])
def test_relaxed_network_runs_with_edge_alphas(space: NB201Space, partial: int) -> None:
    net = space.relaxed(partial)
    weights = space.node_weights({"cell": torch.softmax(torch.randn(6, 5), -1)})
    out = net(space.example_input(2), weights)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_derive_takes_the_argmax_without_none_and_caps_skips(space: NB201Space) -> None:
    probs = np.full((6, 5), 0.1)
    probs[:, NB201_OPS.index("none")] = 0.5
    probs[:, NB201_OPS.index("skip_connect")] = 0.3
    probs[:, NB201_OPS.index("nor_conv_1x1")] = 0.2
    probs[0, NB201_OPS.index("skip_connect")] = 0.35  # the strongest skip
    assert set(space.derive({"cell": probs}).values()) == {"skip_connect"}
    capped = space.derive({"cell": probs}, max_skip_connections=1)
    assert capped["cell/edge_1_0"] == "skip_connect"
    assert sum(v == "skip_connect" for v in capped.values()) == 1
    assert sum(v == "nor_conv_1x1" for v in capped.values()) == 5
