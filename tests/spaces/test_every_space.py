"""Behaviour every registered search space must have; parametrised over the ``SPACES`` registry."""

from __future__ import annotations

import pickle
import re
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn import activate, decisions, freeze, has_choices
from lightning_nas.spaces import SPACES, SearchSpace

SHAPES = [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 10)]
SEEDS = [0, 1]
ARCHS_PER_SEED = 30

# Small configurations with every kind of decision, so that each supernet is quick to copy in ``freeze``.
# A space missing here is tested with its defaults: add an entry when those are slow.
SMALL: dict[str, dict[str, Any]] = {
    "efficient_convnet": {
        "width_multipliers": [0.5, 1.0],
        "depth_multipliers": [0.5, 1.0],
        "kernel_sizes": [3, 5],
        "expansions": [1, 3],
        "stem_channels": 8,
        "stage_channels": [8, 16],
        "stage_depths": [1, 2],
        "stage_strides": [1, 2],
        "head_channels": 16,
    },
    "hybrid_convnet": {
        "width_multipliers": [0.5, 1.0],
        "depth_multipliers": [0.5, 1.0],
        "kernel_sizes": [3],
        "expansions": [1, 3],
        "stem_channels": 8,
        "stage_channels": [8, 16],
        "stage_depths": [1, 2],
        "stage_strides": [1, 2],
        "stage_stride_choices": [[1], [1, 2]],
        "head_channels": 16,
    },
    "macro_convnet": {
        "num_layers": [2, 3],
        "channels": [8, 16],
        "num_reductions": 1,
        "ops": ["conv3x3", "sep_conv3x3", "max_pool", "skip_connect"],  # test_macro_convnet covers them all
        "stem_channels": 8,
        "norms": ["batch"],
    },
    "darts_cell": {"num_cells": 3, "channels": 4, "ops": ["skip_connect", "max_pool_3x3", "dil_conv_3x3"]},
    "nb201": {"cells_per_stage": 1, "channels": 4},
    "vit": {"num_layers": [1, 2], "num_heads": [1, 2], "mlp_ratios": [1.0, 2.0], "embed_dims": [8, 16]},
}


@cache
def small_space(name: str, shape: tuple[int, int, int], num_classes: int) -> SearchSpace:
    return SPACES.get(name)(shape, num_classes, **SMALL.get(name, {}))


@cache
def warm_supernet(name: str, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A supernet whose batch-norm statistics have moved away from their initial values."""
    space = small_space(name, shape, num_classes)
    supernet = space.supernet().train()
    rng = np.random.default_rng(123)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(123)) * 3 + 1
    with torch.no_grad():
        for _ in range(4):
            activate(supernet, space.sample(rng))
            supernet(x)
    return supernet.eval()


def _check_candidate(space: SearchSpace, supernet: nn.Module, arch: Architecture, x: torch.Tensor) -> None:
    model = space.build(arch).train()
    assert not has_choices(model)
    logits = model(x)
    assert logits.shape == (x.shape[0], space.num_classes)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    frozen = freeze(supernet, arch).eval()
    assert not has_choices(frozen)
    assert list(frozen.state_dict()) == list(model.state_dict())
    activate(supernet, arch)
    with torch.no_grad():
        expected = supernet(x)
        torch.testing.assert_close(frozen(x), expected, rtol=1e-4, atol=1e-5)
        model.load_state_dict(frozen.state_dict())
        torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("shape", "num_classes"), SHAPES)
@pytest.mark.parametrize("name", SPACES.names())
def test_sampled_architectures_build_train_and_freeze(
    name: str, shape: Any, num_classes: int, seed: int
) -> None:
    space = small_space(name, shape, num_classes)
    supernet = warm_supernet(name, shape, num_classes)
    rng = np.random.default_rng(seed)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    archs = [space.sample(rng) for _ in range(ARCHS_PER_SEED)]
    assert len(set(archs)) > ARCHS_PER_SEED // 2
    for arch in archs:
        _check_candidate(space, supernet, arch, x)


@pytest.mark.parametrize("name", SPACES.names())
def test_decisions_match_the_supernet_and_sampling_is_seeded(name: str) -> None:
    space = small_space(name, (1, 8, 8), 10)
    assert set(decisions(warm_supernet(name, (1, 8, 8), 10))) == set(space.decisions)
    assert space.cardinality > 1
    first = space.sample(np.random.default_rng(5))
    assert first == space.sample(np.random.default_rng(5))
    assert space.validate(Architecture.from_json(first.to_json())) == first


@pytest.mark.parametrize("name", SPACES.names())
def test_supernet_pickles_and_trains_on_sampled_paths(name: str) -> None:
    space = small_space(name, (3, 32, 32), 10)
    original = warm_supernet(name, (3, 32, 32), 10)
    supernet = pickle.loads(pickle.dumps(original)).train()
    assert set(decisions(supernet)) == set(space.decisions)
    rng = np.random.default_rng(3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        supernet.zero_grad()
        activate(supernet, space.sample(rng))
        loss = supernet(x).logsumexp(dim=1).mean()
        loss.backward()
        grads = [p.grad for p in supernet.parameters() if p.grad is not None]
        assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    arch = space.sample(rng)
    activate(supernet.eval(), arch)
    with torch.no_grad():
        torch.testing.assert_close(freeze(supernet, arch)(x), supernet(x))


@pytest.mark.parametrize("name", SPACES.names())
def test_validate_names_bad_labels_and_values(name: str) -> None:
    space = small_space(name, (1, 8, 8), 10)
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="'no_such_decision'"):
        space.validate({**arch, "no_such_decision": 1})
    label = next(iter(space.decisions))
    with pytest.raises(ValueError, match=re.escape(f"value 'bogus' for decision {label!r}")):
        space.validate(arch.with_value(label, "bogus"))
    with pytest.raises(ValueError, match=re.escape(f"value 'bogus' for decision {label!r}")):
        space.build(arch.with_value(label, "bogus"))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("name", SPACES.names())
def test_frozen_candidate_exports(name: str, shape: tuple[int, int, int]) -> None:
    space = small_space(name, shape, 10)
    supernet = warm_supernet(name, shape, 10)
    arch = space.sample(np.random.default_rng(11))
    frozen = freeze(supernet, arch).eval()
    x = space.example_input(1)
    program = torch.export.export(frozen, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), frozen(x))
