"""SupernetModule: uniform path sampling, the sandwich rule, extremes, checkpointed RNG, DDP broadcast."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture
from lightning_nas.nn import ElasticLinear, LayerChoice, ValueChoice, activate
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.spaces.supernet import SupernetSpace
from lightning_nas.strategies.supernet import (
    PathSampler,
    SupernetModule,
    broadcast_paths,
    path_extremes,
)

TRAINER: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
           "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}


def loader(n: int = 64, shape: tuple[int, ...] = (1, 8, 8), classes: int = 10, batch: int = 8) -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, classes, (n,), generator=g)), batch_size=batch)


class MLPSupernet(nn.Module):
    """width in {2, 6}; op: "big" (most parameters), "mid" (42) or "small" (36, no bias)."""

    def __init__(self) -> None:
        super().__init__()
        width = ValueChoice([2, 6], label="width")
        self.stem = ElasticLinear(4, width)
        self.op = LayerChoice({
            "mid": lambda: ElasticLinear(width, width),
            "big": lambda: nn.Sequential(ElasticLinear(width, 16), nn.ReLU(), ElasticLinear(16, width)),
            "small": lambda: ElasticLinear(width, width, bias=False),
        }, label="op")
        self.head = ElasticLinear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.op(torch.relu(self.stem(x)))))  # type: ignore[no-any-return]


class Recorder(L.Callback):
    """Keeps the paths each training batch used."""

    def __init__(self) -> None:
        self.paths: list[list[Architecture]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.paths.append(list(pl_module.last_paths))


def test_path_extremes_numeric_and_layer_sizes() -> None:
    largest, smallest = path_extremes(MLPSupernet())
    assert largest == {"width": 6, "op": "big"}
    assert smallest == {"width": 2, "op": "small"}


def test_unordered_decisions_are_random_or_first() -> None:
    net = nn.Sequential(LayerChoice({"a": nn.Identity, "b": nn.Identity}, label="same"),
                        ElasticLinear(4, ValueChoice([3, 1], label="w")))
    sampler = PathSampler(net, np.random.default_rng(0))
    assert sampler.largest_values == {"w": 3} and sampler.smallest_values == {"w": 1}
    assert sampler.largest(random_fill=False) == Architecture({"same": "a", "w": 3})
    assert {sampler.smallest()["same"] for _ in range(30)} == {"a", "b"}
    assert [p["w"] for p in sampler.sandwich(num_random=0)] == [3, 1]


def test_uniform_sampling_visits_every_candidate(toy_space: SearchSpace) -> None:
    module = SupernetModule(toy_space, sampling="uniform", seed=3)
    recorder = Recorder()
    L.Trainer(max_steps=40, callbacks=[recorder], **TRAINER).fit(module, loader())
    assert len(recorder.paths) == 40 and all(len(p) == 1 for p in recorder.paths)
    seen: dict[str, set[Any]] = defaultdict(set)
    for (path,) in recorder.paths:
        for label, value in path.items():
            seen[label].add(value)
    assert {label: sorted(map(str, values)) for label, values in seen.items()} == {
        label: sorted(map(str, choice.candidates)) for label, choice in toy_space.decisions.items()
    }
    assert len(set(p[0] for p in recorder.paths)) > 10  # many different paths, not a fixed one


@pytest.mark.parametrize("distill", [True, False])
def test_sandwich_trains_largest_and_smallest_paths(distill: bool) -> None:
    torch.manual_seed(0)  # weights and data: no path may start with a dead ReLU
    module = SupernetModule(MLPSupernet(), sampling="sandwich", num_random_paths=0, distill=distill, lr=0.1)
    recorder = Recorder()
    L.Trainer(max_steps=1, callbacks=[recorder], **TRAINER).fit(module, loader(shape=(4,), classes=3))
    assert recorder.paths == [[Architecture({"width": 6, "op": "big"}), Architecture({"width": 2, "op": "small"})]]
    candidates = module.supernet.op.candidates
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in candidates["big"].parameters())
    assert candidates["small"].weight.grad[:2, :2].abs().sum() > 0  # the smallest path was trained
    assert candidates["small"].weight.grad[2:].abs().sum() == 0  # ...only at its own width
    assert all(p.grad is None for p in candidates["mid"].parameters())  # neither largest nor smallest
    assert module.supernet.stem.weight.grad[2:].abs().sum() > 0  # rows only the largest width uses


def test_sandwich_random_paths_accumulate_into_one_step(toy_space: SearchSpace) -> None:
    module = SupernetModule(toy_space, sampling="sandwich", num_random_paths=2)
    recorder = Recorder()
    trainer = L.Trainer(max_steps=3, callbacks=[recorder], **TRAINER)
    trainer.fit(module, loader())
    assert trainer.global_step == 3  # one optimizer step per batch, four paths each
    assert [len(p) for p in recorder.paths] == [4, 4, 4]
    largest = Architecture({"width": 8, "kernel": 5, "depth": 3, "block0/op": "conv", "block1/op": "conv",
                            "block2/op": "conv"})
    assert all(p[0] == largest for p in recorder.paths)
    assert all(p[1]["width"] == 4 and p[1]["depth"] == 1 and p[1]["block0/op"] == "skip" for p in recorder.paths)


def test_path_generator_is_checkpointed(toy_space: SearchSpace) -> None:
    module = SupernetModule(toy_space, seed=5)
    module.sample_paths()
    checkpoint: dict[str, Any] = {}
    module.on_save_checkpoint(checkpoint)
    expected = [module.sample_paths() for _ in range(5)]
    restored = SupernetModule(toy_space, seed=99)
    restored.on_load_checkpoint(checkpoint)
    assert [restored.sample_paths() for _ in range(5)] == expected


def test_broadcast_paths_takes_rank_zero_paths() -> None:
    rank_zero = [Architecture({"w": 1})]
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(
        broadcast=lambda obj, src: [a.to_dict() for a in rank_zero] if src == 0 else obj))
    assert broadcast_paths(trainer, [Architecture({"w": 7})]) == rank_zero  # type: ignore[arg-type]
    assert broadcast_paths(None, [Architecture({"w": 7})]) == [Architecture({"w": 7})]


def test_supernet_space_builds_inherited_paths() -> None:
    net = MLPSupernet()
    space = SupernetSpace(net, input_shape=(4,), num_classes=3)
    arch = Architecture({"width": 2, "op": "mid"})
    x = torch.randn(5, 4)
    activate(net, arch)
    assert torch.allclose(space.build(arch)(x), net(x))
    assert set(space.decisions) == {"width", "op"} and space.cardinality == 6


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"sampling": "random"}, "sampling"),
    ({"num_random_paths": -1}, "num_random_paths"),
    ({"temperature": 0.0}, "temperature"),
    ({"gradient_clip_val": -1.0}, "gradient_clip_val"),
    ({"lr": 0.0}, "lr"),
    ({"seed": -2}, "seed"),
])
def test_invalid_options_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        SupernetModule(MLPSupernet(), **kwargs)


def test_module_without_choices_is_rejected() -> None:
    with pytest.raises(ValueError, match="no lightning_nas choices"):
        SupernetModule(nn.Linear(2, 2))
