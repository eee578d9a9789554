"""Operations on any ``nn.Module`` that contains choices: list, sample, validate, activate, freeze."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn.choices import ChoiceExpr, ValueChoice, match_candidate

__all__ = [
    "activate",
    "cardinality",
    "decisions",
    "freeze",
    "has_choices",
    "sample",
    "validate",
]


def _exprs_in(module: nn.Module) -> Iterator[ChoiceExpr]:
    for value in vars(module).values():
        if isinstance(value, ChoiceExpr):
            yield value
        elif isinstance(value, list | tuple):
            yield from (v for v in value if isinstance(v, ChoiceExpr))


def _leaves(model: nn.Module) -> Iterator[ValueChoice]:
    for module in model.modules():
        for expr in _exprs_in(module):
            yield from expr.leaves()


def decisions(model: nn.Module) -> dict[str, ValueChoice]:
    """The decisions of ``model`` by label, in the order they first appear.

    Raises:
        ValueError: when two different decisions share a label but not their candidates.
    """
    found: dict[str, ValueChoice] = {}
    for leaf in _leaves(model):
        seen = found.setdefault(leaf.label, leaf)
        if seen.candidates != leaf.candidates:
            raise ValueError(
                f"decision label {leaf.label!r} is used with different candidates: "
                f"{list(seen.candidates)} and {list(leaf.candidates)}"
            )
    return found


def has_choices(model: nn.Module) -> bool:
    return any(True for _ in _leaves(model))


def cardinality(choices: Mapping[str, ValueChoice]) -> int:
    """Number of distinct architectures: the product of the candidate counts."""
    return math.prod(len(c.candidates) for c in choices.values())


def sample(choices: Mapping[str, ValueChoice], rng: np.random.Generator) -> Architecture:
    """A uniformly random architecture drawn with ``rng``."""
    return Architecture({label: c.candidates[int(rng.integers(len(c.candidates)))] for label, c in choices.items()})


def validate(choices: Mapping[str, ValueChoice], arch: Mapping[str, Any]) -> Architecture:
    """Return ``arch`` as an :class:`Architecture`; raise ``ValueError`` naming any bad label or value."""
    frozen = arch if isinstance(arch, Architecture) else Architecture(arch)
    unknown = sorted(set(frozen) - set(choices))
    if unknown:
        raise ValueError(f"unknown decision label {unknown[0]!r} (known: {sorted(choices)[:8]}...)")
    missing = sorted(set(choices) - set(frozen))
    if missing:
        raise ValueError(f"architecture has no value for decision {missing[0]!r}")
    return Architecture({label: match_candidate(label, v, choices[label].candidates) for label, v in frozen.items()})


def activate(model: nn.Module, arch: Mapping[str, Any]) -> None:
    """Set every decision of ``model`` to its value in ``arch`` (the supernet's active path)."""
    frozen = validate(decisions(model), arch)
    for leaf in _leaves(model):
        leaf.value = frozen[leaf.label]


def _freeze_children(module: nn.Module) -> nn.Module:
    for name, child in list(module.named_children()):
        module._modules[name] = _freeze_children(child)
    freeze_module = getattr(module, "freeze_module", None)
    if callable(freeze_module):
        replacement: nn.Module = freeze_module()
        return replacement.train(module.training)
    for attr, value in list(vars(module).items()):
        if isinstance(value, ChoiceExpr):
            setattr(module, attr, value.evaluate())
        elif isinstance(value, list | tuple) and any(isinstance(v, ChoiceExpr) for v in value):
            setattr(module, attr, type(value)(v.evaluate() if isinstance(v, ChoiceExpr) else v for v in value))
    return module


def freeze(model: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """A plain copy of ``model`` with every choice replaced by its value in ``arch``.

    Weights of the chosen path are copied (sliced for elastic layers), so the frozen
    model computes exactly what the supernet computes on that path. ``model`` is unchanged.
    """
    frozen_arch = validate(decisions(model), arch)
    clone = copy.deepcopy(model)
    activate(clone, frozen_arch)
    result = _freeze_children(clone)
    if has_choices(result):
        raise TypeError(f"{type(result).__name__} still holds choices after freezing")
    return result
