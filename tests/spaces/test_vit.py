"""The Vision Transformer space: adapted patch sizes, rejected settings, and candidates that export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_nas.export.codegen import model_source
from lightning_nas.export.codegen_templates import PackageInfo
from lightning_nas.nn import activate, freeze, has_choices
from lightning_nas.spaces import SPACES
from lightning_nas.spaces.vit import VisionTransformerSpace, default_patch_sizes

SMALL = {"num_layers": [1, 2], "num_heads": [1, 2], "mlp_ratios": [1.0, 2.0], "embed_dims": [8, 16]}


def test_registered() -> None:
    assert SPACES.get("vit") is VisionTransformerSpace


@pytest.mark.parametrize(("size", "expected"), [(8, [2, 4]), (28, [4, 7, 14]), (32, [8, 16]), (224, [8, 16, 32])])
def test_default_patch_sizes_adapt_to_the_resolution(size: int, expected: list[int]) -> None:
    assert default_patch_sizes(size, size) == expected


@pytest.mark.parametrize(
    ("patches", "message"), [([4, 16], "16, larger than the 8x8"), ([3], "3, which does not divide")]
)
def test_bad_patch_sizes_are_rejected_with_value_and_resolution(patches: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisionTransformerSpace((1, 8, 8), 10, patch_sizes=patches)


def test_embed_dims_not_divisible_by_heads_are_rejected() -> None:
    with pytest.raises(ValueError, match="embed_dims 12 is not divisible by num_heads 8"):
        VisionTransformerSpace((1, 8, 8), 10, num_heads=[4, 8], embed_dims=[12, 16])


def test_default_space_decisions() -> None:
    space = VisionTransformerSpace((3, 32, 32), 10)
    assert space.decisions["embed_dim"].candidates == (64, 128, 192)
    assert space.decisions["depth"].candidates == (4, 6, 8, 10, 12)
    assert "layer11/heads" in space.decisions and space.patch_sizes == [8, 16]


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_sampled_candidates_train_freeze_and_export(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    space = VisionTransformerSpace(shape, 10, **SMALL)
    supernet = space.supernet().eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    for _ in range(6):
        arch = space.sample(rng)
        model = space.build(arch)
        assert not has_choices(model)
        model(x).logsumexp(1).mean().backward()
        assert all(p.grad is not None for p in model.parameters())
        activate(supernet, arch)
        frozen = freeze(supernet, arch).eval()
        assert list(frozen.state_dict()) == list(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(frozen(x), supernet(x))
    program = torch.export.export(frozen, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), frozen(x))


def test_frozen_candidate_generates_code() -> None:
    space = VisionTransformerSpace((1, 8, 8), 10, **SMALL)
    arch = space.sample(np.random.default_rng(1))
    info = PackageInfo("VitNet", arch, (1, 8, 8), 10, "digits", None, None, None)
    source = model_source(freeze(space.supernet(), arch), info)
    assert "import lightning_nas" not in source and "class Attention" in source
    namespace: dict[str, object] = {}
    exec(compile(source, "model.py", "exec"), namespace)
    assert callable(namespace["build_model"])
