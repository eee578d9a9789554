import numpy as np
import pytest

from lightning_nas.arch import Architecture
from lightning_nas.strategies import crossover, mutate, sample_unseen
from lightning_nas.strategies.operators import arch_index


def _changed(a: Architecture, b: Architecture) -> set[str]:
    return {label for label in a if a[label] != b[label]}


@pytest.mark.parametrize("space_name", ["toy_space", "wide_space"])
def test_mutate_stays_valid_and_always_changes(request, space_name: str) -> None:
    space = request.getfixturevalue(space_name)
    rng = np.random.default_rng(0)
    for seed in range(200):
        parent = space.sample(np.random.default_rng(seed))
        rate = float(rng.random())
        child = mutate(space, parent, rng, rate)
        assert space.validate(child) == child
        assert _changed(parent, child)


def test_mutate_rate_bounds(wide_space) -> None:
    rng = np.random.default_rng(1)
    parent = wide_space.sample(rng)
    assert all(len(_changed(parent, mutate(wide_space, parent, rng, 0.0))) == 1 for _ in range(50))
    assert _changed(parent, mutate(wide_space, parent, rng, 1.0)) == set(parent)
    with pytest.raises(ValueError, match="rate"):
        mutate(wide_space, parent, rng, 1.5)


def test_mutate_only_touches_decisions_with_alternatives(pinned_space) -> None:
    rng = np.random.default_rng(2)
    parent = Architecture({"pinned": "only", "free": "x"})
    for rate in (0.0, 0.5, 1.0):
        assert mutate(pinned_space, parent, rng, rate) == Architecture({"pinned": "only", "free": "y"})


def test_mutate_rejects_invalid_parent(toy_space) -> None:
    with pytest.raises(ValueError, match="width"):
        mutate(toy_space, toy_space.sample(np.random.default_rng(0)).with_value("width", 7),
               np.random.default_rng(0), 0.5)


@pytest.mark.parametrize("space_name", ["toy_space", "wide_space"])
def test_crossover_takes_each_value_from_a_parent(request, space_name: str) -> None:
    space = request.getfixturevalue(space_name)
    rng = np.random.default_rng(3)
    mixed = 0
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        child = crossover(space, a, b, rng)
        assert space.validate(child) == child
        assert all(child[label] in (a[label], b[label]) for label in child)
        mixed += bool(_changed(child, a)) and bool(_changed(child, b))
    assert mixed > 50  # uniform crossover really mixes the parents


def test_crossover_of_identical_parents_is_the_parent(wide_space) -> None:
    rng = np.random.default_rng(4)
    a = wide_space.sample(rng)
    assert crossover(wide_space, a, a, rng) == a


@pytest.mark.parametrize("max_retries", [1, 100])
def test_sample_unseen_exhausts_the_space_before_repeating(toy_space, max_retries: int) -> None:
    rng = np.random.default_rng(5)
    seen: set[Architecture] = set()
    for _ in range(toy_space.cardinality):
        arch = sample_unseen(toy_space, rng, seen, max_retries=max_retries)
        assert arch not in seen and toy_space.validate(arch) == arch
        seen.add(arch)
    duplicate = sample_unseen(toy_space, rng, seen, max_retries=max_retries)
    assert duplicate in seen
    assert {arch_index(toy_space, a) for a in seen} == set(range(toy_space.cardinality))


def test_sample_unseen_ignores_foreign_architectures(toy_space) -> None:
    foreign = {Architecture({"other": 1})}
    arch = sample_unseen(toy_space, np.random.default_rng(6), foreign, max_retries=0)
    assert toy_space.validate(arch) == arch
