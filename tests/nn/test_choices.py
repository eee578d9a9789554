import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticGroupNorm,
    ElasticLinear,
    InputChoice,
    LayerChoice,
    Repeat,
    SelectInputs,
    ValueChoice,
    activate,
    cardinality,
    decisions,
    fixed_arch,
    freeze,
    has_choices,
    make_divisible,
    sample,
    validate,
)


class TwoBranch(nn.Module):
    """Uses an InputChoice over two branches and a layer choice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = LayerChoice({"lin": lambda: nn.Linear(4, 4), "id": nn.Identity}, label="b")
        self.pick = InputChoice(3, 2, label="pick")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pick([x, self.a(x), self.b(x)])


def test_decisions_cardinality_and_labels(toy_space) -> None:
    found = toy_space.decisions
    assert set(found) == {"width", "kernel", "depth", "block0/op", "block1/op", "block2/op"}
    assert found["depth"].candidates == (1, 2, 3)
    assert cardinality(found) == 2 * 2 * 3 * 8 == toy_space.cardinality


def test_input_choice_candidates_and_freeze() -> None:
    model = TwoBranch()
    found = decisions(model)
    assert found["pick"].candidates == ((0, 1), (0, 2), (1, 2))
    assert cardinality(found) == 6
    x = torch.randn(3, 4)
    arch = Architecture({"b": "lin", "pick": (0, 2)})
    activate(model, arch)
    frozen = freeze(model, arch)
    assert isinstance(frozen.pick, SelectInputs) and frozen.pick.indices == (0, 2)
    assert torch.allclose(frozen(x), model(x))
    assert torch.allclose(frozen(x), x + model.b.candidates["lin"](x))


def test_sample_is_seeded_and_valid(toy_space) -> None:
    first = [toy_space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = np.random.default_rng(0)
    archs = {toy_space.sample(rng) for _ in range(300)}
    assert len(archs) > 60
    assert all(toy_space.validate(a) == a for a in archs)


def test_validate_names_the_bad_label_or_value(toy_space) -> None:
    arch = toy_space.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="'nope'"):
        toy_space.validate({**arch, "nope": 1})
    with pytest.raises(ValueError, match="value 6 for decision 'width'"):
        toy_space.validate({**arch, "width": 6})
    with pytest.raises(ValueError, match="no value for decision 'kernel'"):
        toy_space.validate({k: v for k, v in arch.items() if k != "kernel"})


@pytest.mark.parametrize("seed", range(10))
def test_freeze_matches_supernet_path_and_fixed_build(toy_space, seed: int) -> None:
    supernet = toy_space.supernet().eval()
    arch = toy_space.sample(np.random.default_rng(seed))
    activate(supernet, arch)
    x = torch.randn(2, 1, 8, 8)
    frozen = freeze(supernet, arch).eval()
    assert not has_choices(frozen)
    assert not any(isinstance(m, LayerChoice | Repeat | ElasticConv2d) for m in frozen.modules())
    assert torch.allclose(frozen(x), supernet(x), atol=1e-6)
    built = toy_space.build(arch)
    assert list(built.state_dict()) == list(frozen.state_dict())
    built.load_state_dict(frozen.state_dict())
    assert torch.allclose(built.eval()(x), supernet(x), atol=1e-6)


def test_freeze_leaves_the_supernet_unchanged(toy_space) -> None:
    supernet = toy_space.supernet()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    freeze(supernet, toy_space.sample(np.random.default_rng(1)))
    assert has_choices(supernet)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_frozen_model_exports(toy_space) -> None:
    arch = toy_space.sample(np.random.default_rng(3))
    frozen = freeze(toy_space.supernet(), arch).eval()
    program = torch.export.export(frozen, (torch.randn(1, 1, 8, 8),))
    assert program.module()(torch.ones(1, 1, 8, 8)).shape == (1, 10)


def test_fixed_arch_builds_only_the_chosen_candidate() -> None:
    built: list[str] = []

    def factory(name: str):
        def make() -> nn.Module:
            built.append(name)
            return nn.Identity()

        return make

    with fixed_arch({"op": "b"}):
        module = LayerChoice({"a": factory("a"), "b": factory("b")}, label="op")
    assert built == ["b"] and isinstance(module, nn.Identity)


def test_fixed_arch_missing_or_bad_value() -> None:
    with fixed_arch({}), pytest.raises(ValueError, match="no value for decision 'k'"):
        ValueChoice([3, 5], label="k")
    with fixed_arch({"k": 4}), pytest.raises(ValueError, match="value 4 for decision 'k'"):
        ValueChoice([3, 5], label="k")


def test_expressions() -> None:
    width = ValueChoice([0.5, 1.0, 2.0], label="w")
    channels = make_divisible(width * 24, 8)
    assert channels.possible_values() == [16, 24, 48]
    assert channels.max() == 48 and channels.min() == 16
    assert make_divisible(0.5 * 24, 8) == 16  # plain numbers stay plain
    depth = ValueChoice([1, 2], label="d")
    assert (depth * 2 + 1).possible_values() == [3, 5]


def test_shared_label_conflict_is_an_error() -> None:
    model = nn.Module()
    model.a = ElasticLinear(ValueChoice([4, 8], label="w"), 2)
    model.b = ElasticLinear(ValueChoice([4, 16], label="w"), 2)
    with pytest.raises(ValueError, match="'w' is used with different candidates"):
        decisions(model)


def test_bad_choice_arguments() -> None:
    with pytest.raises(ValueError, match="duplicate candidates"):
        ValueChoice([3, 3], label="k")
    with pytest.raises(ValueError, match="no candidates"):
        ValueChoice([], label="k")
    with pytest.raises(ValueError, match="non-empty string label"):
        ValueChoice([1], label="")
    with pytest.raises(ValueError, match=r"contain no '\.'"):
        LayerChoice({"a.b": nn.Identity}, label="x")


def test_elastic_layers_freeze_to_plain_torch_layers() -> None:
    width = ValueChoice([4, 8], label="w")
    kernel = ValueChoice([3, 5], label="k")
    model = nn.Sequential(
        ElasticConv2d(3, width, kernel), ElasticBatchNorm2d(width), ElasticGroupNorm(2, width),
        ElasticConv2d(width, width, kernel, depthwise=True), nn.Flatten(), ElasticLinear(width * 16, 5),
    )
    arch = {"w": 4, "k": 3}
    activate(model, arch)
    model.eval()
    x = torch.randn(2, 3, 4, 4)
    frozen = freeze(model, arch)
    kinds = [type(m) for m in frozen]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.Conv2d, nn.Flatten, nn.Linear]
    assert frozen[0].weight.shape == (4, 3, 3, 3) and frozen[3].groups == 4
    assert frozen[5].in_features == 64
    assert torch.allclose(frozen(x), model(x), atol=1e-6)


def test_elastic_kernel_is_centre_crop() -> None:
    kernel = ValueChoice([3, 5], label="k")
    conv = ElasticConv2d(1, 1, kernel)
    activate(conv, {"k": 3})
    frozen = freeze(conv, {"k": 3})
    assert torch.equal(frozen.weight, conv.weight[:, :, 1:4, 1:4])


def test_models_with_choices_copy_and_pickle(toy_space) -> None:
    supernet = toy_space.supernet()
    for clone in (copy.deepcopy(supernet), pickle.loads(pickle.dumps(supernet))):
        assert set(decisions(clone)) == set(toy_space.decisions)
        arch = toy_space.sample(np.random.default_rng(0))
        activate(clone, arch)
        assert clone(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_activate_sets_shared_choices_everywhere(toy_space) -> None:
    supernet = toy_space.supernet()
    arch = Architecture({**toy_space.sample(np.random.default_rng(0)), "width": 8})
    activate(supernet, arch)
    assert all(d.value == arch[label] for label, d in decisions(supernet).items())
    assert validate(decisions(supernet), arch) == arch
    assert sample(decisions(supernet), np.random.default_rng(5)) == toy_space.sample(np.random.default_rng(5))


def test_validate_canonicalises_numbers_but_not_bools(toy_space) -> None:
    arch = dict(toy_space.sample(np.random.default_rng(0)))
    as_float = toy_space.validate({**arch, "kernel": 3.0})
    assert type(as_float["kernel"]) is int and as_float == toy_space.validate({**arch, "kernel": 3})
    with pytest.raises(ValueError, match="value True for decision 'depth'"):
        toy_space.validate({**arch, "depth": True})
    with fixed_arch({"k": 3.0}):
        assert type(ValueChoice([3, 5], label="k")) is int


def test_repeat_accepts_a_shared_depth_choice_in_fixed_mode() -> None:
    with fixed_arch({"d": 2}):
        stack = Repeat(lambda i: nn.Linear(2, 2), [1, 2, 3], label="d")
    assert isinstance(stack, nn.Sequential) and len(stack) == 2


def test_active_labels_skip_blocks_beyond_the_chosen_depth(toy_space) -> None:
    arch = Architecture({**toy_space.sample(np.random.default_rng(0)), "depth": 1})
    assert toy_space.active_labels(arch) == {"width", "kernel", "depth", "block0/op"}
    assert "block2/op" not in toy_space.describe(arch) and "depth=1" in toy_space.describe(arch)
