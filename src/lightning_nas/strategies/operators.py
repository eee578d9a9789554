"""Variation operators over architectures of a :class:`SearchSpace`: mutation, crossover, novel samples.

Every operator takes its randomness from the ``numpy.random.Generator`` it is given and
returns a valid architecture of the space, so strategies built on them replay exactly.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from lightning_nas.arch import Architecture, ChoiceValue
from lightning_nas.spaces.base import SearchSpace

__all__ = ["arch_index", "crossover", "mutate", "sample_unseen"]

MAX_RETRIES = 100
"""Default number of rejection-sampling attempts before a fallback."""

_MAX_INDEXED = 2**62
"""Largest cardinality whose architectures are drawn by index (``Generator.integers`` bound)."""


def _index_of(candidates: tuple[ChoiceValue, ...], value: ChoiceValue) -> int:
    """Position of ``value`` among ``candidates``, comparing types too (``1`` is not ``True``)."""
    for i, candidate in enumerate(candidates):
        if candidate == value and type(candidate) is type(value):
            return i
    raise ValueError(f"value {value!r} is not one of {list(candidates)}")


def mutate(space: SearchSpace, arch: Architecture, rng: np.random.Generator, rate: float) -> Architecture:
    """Re-draw each decision with probability ``rate`` to a *different* candidate.

    At least one decision changes whenever the space has a decision with two or more
    candidates (otherwise ``arch`` is returned unchanged).

    Args:
        space: the search space ``arch`` belongs to.
        arch: the parent architecture (validated against ``space``).
        rng: source of randomness.
        rate: per-decision mutation probability in ``[0, 1]``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mutation rate must be in [0, 1], got {rate!r}")
    parent = space.validate(arch)
    mutable = [(label, c.candidates) for label, c in space.decisions.items() if len(c.candidates) > 1]
    if not mutable:
        return parent
    chosen = [i for i, flip in enumerate(rng.random(len(mutable)) < rate) if flip]
    if not chosen:
        chosen = [int(rng.integers(len(mutable)))]
    changes: dict[str, ChoiceValue] = {}
    for i in chosen:
        label, candidates = mutable[i]
        current = _index_of(candidates, parent[label])
        new = int(rng.integers(len(candidates) - 1))
        changes[label] = candidates[new + 1 if new >= current else new]
    return Architecture({**parent, **changes})


def crossover(space: SearchSpace, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
    """Uniform crossover: each decision's value comes from ``a`` or ``b`` with equal probability.

    Args:
        space: the search space both parents belong to.
        a: first parent.
        b: second parent.
        rng: source of randomness.
    """
    first, second = space.validate(a), space.validate(b)
    labels = list(space.decisions)
    from_first = rng.random(len(labels)) < 0.5
    return Architecture(
        {label: (first if pick else second)[label] for label, pick in zip(labels, from_first, strict=True)}
    )


def arch_index(space: SearchSpace, arch: Architecture) -> int:
    """The position of ``arch`` in the mixed-radix enumeration of ``space`` (decision order).

    Args:
        space: the search space.
        arch: a valid architecture of ``space``.
    """
    index = 0
    for label, choice in space.decisions.items():
        index = index * len(choice.candidates) + _index_of(choice.candidates, arch[label])
    return index


def _arch_at(space: SearchSpace, index: int) -> Architecture:
    """Inverse of :func:`arch_index`."""
    values: dict[str, ChoiceValue] = {}
    for label, choice in reversed(space.decisions.items()):
        index, position = divmod(index, len(choice.candidates))
        values[label] = choice.candidates[position]
    return Architecture(values)


def _draw_unseen_by_index(
    space: SearchSpace, rng: np.random.Generator, seen: Collection[Architecture]
) -> Architecture | None:
    """A uniformly drawn architecture outside ``seen`` by enumeration index; None if exhausted."""
    taken: set[int] = set()
    for arch in seen:
        try:
            taken.add(arch_index(space, space.validate(arch)))
        except ValueError:  # not an architecture of this space: cannot collide
            continue
    free = space.cardinality - len(taken)
    if free <= 0:
        return None
    target = int(rng.integers(free))
    for index in sorted(taken):  # shift past every taken index at or below the target
        if index > target:
            break
        target += 1
    return _arch_at(space, target)


def sample_unseen(
    space: SearchSpace,
    rng: np.random.Generator,
    seen: Collection[Architecture],
    max_retries: int = MAX_RETRIES,
) -> Architecture:
    """A uniformly random architecture not in ``seen`` while any is left.

    Rejection sampling for up to ``max_retries`` draws; then, for spaces small enough to
    enumerate (cardinality below 2**62), an exact draw among the unseen ones. Only when
    the space is exhausted (or too large to enumerate) is a duplicate returned.

    Args:
        space: the search space.
        rng: source of randomness.
        seen: architectures to avoid.
        max_retries: rejection-sampling attempts before the exact fallback.
    """
    arch = space.sample(rng)
    for _ in range(max(0, max_retries - 1)):
        if arch not in seen:
            return arch
        arch = space.sample(rng)
    if arch not in seen:
        return arch
    if space.cardinality < _MAX_INDEXED:
        fresh = _draw_unseen_by_index(space, rng, seen)
        if fresh is not None:
            return fresh
    return arch
