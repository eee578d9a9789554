"""Operations on any ``nn.Module`` that contains choices: list, sample, validate, activate, freeze."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping
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
    return _by_label(_leaves(model))


def _by_label(leaves: Iterable[ValueChoice]) -> dict[str, ValueChoice]:
    found: dict[str, ValueChoice] = {}
    for leaf in leaves:
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


def _evaluate_choices(module: nn.Module) -> None:
    """Replace the choice expressions held by ``module`` (directly or in lists/tuples) by their values."""
    for attr, value in list(vars(module).items()):
        if isinstance(value, ChoiceExpr):
            setattr(module, attr, value.evaluate())
        elif isinstance(value, list | tuple) and any(isinstance(v, ChoiceExpr) for v in value):
            setattr(module, attr, type(value)(v.evaluate() if isinstance(v, ChoiceExpr) else v for v in value))


def _freeze_path(module: nn.Module, memo: dict[int, tuple[nn.Module, nn.Module]]) -> nn.Module:
    """A structural copy of the active path of ``module``: the same Parameter objects, copied buffers.

    Only the chosen path is visited; a module reached twice (shared in the supernet) is copied once.
    ``memo`` maps ``id(source)`` to ``(source, copy)``: holding the source keeps its id from being reused.
    """
    if id(module) in memo:
        return memo[id(module)][1]
    freeze_module = getattr(module, "freeze_module", None)
    if callable(freeze_module):
        replacement: nn.Module = freeze_module()
        result = _freeze_path(replacement, memo).train(module.training)
        memo[id(module)] = (module, result)
        return result
    clone: nn.Module = object.__new__(type(module))
    clone.__dict__.update(
        {k: type(v)(v) if isinstance(v, dict | list) else v for k, v in vars(module).items()}
    )  # fresh containers (parameters, hooks, ...) holding the same objects
    memo[id(module)] = (module, clone)
    for name, buffer in module._buffers.items():
        clone._buffers[name] = None if buffer is None else buffer.clone()
    for name, child in module._modules.items():
        clone._modules[name] = None if child is None else _freeze_path(child, memo)
    _evaluate_choices(clone)
    return clone


def freeze(model: nn.Module, arch: Mapping[str, Any], share_weights: bool = False) -> nn.Module:
    """A plain module: ``model`` with every choice replaced by its value in ``arch``.

    Only the chosen path is visited (the supernet is never deep-copied), and the frozen model
    computes exactly what the supernet computes on that path. ``model``, its active path
    included, is unchanged.

    Args:
        model: a supernet (any module containing choices).
        arch: label -> chosen value for every decision.
        share_weights: False: the path's weights are copied, so nothing done to the result
            touches ``model``. True: no weight is copied: parameters are the supernet's own
            ``Parameter`` objects, or views of them (sliced elastic layers), so an optimizer step
            on the result trains the supernet; buffers (BatchNorm statistics) are still copies, so
            recalibrating or running the result in train mode leaves the supernet's statistics alone.

    Example:
        >>> from lightning_nas.nn import LayerChoice
        >>> net = nn.Sequential(LayerChoice({"a": nn.Linear(2, 2), "b": nn.Identity()}, label="op"))
        >>> frozen = freeze(net, {"op": "a"}, share_weights=True)
        >>> frozen[0].weight is net[0].candidates["a"].weight
        True
    """
    leaves = list(_leaves(model))  # one walk over the supernet
    frozen_arch = validate(_by_label(leaves), arch)
    previous = [leaf.value for leaf in leaves]
    try:
        for leaf in leaves:
            leaf.value = frozen_arch[leaf.label]
        result = _freeze_path(model, {})
    finally:
        for leaf, value in zip(leaves, previous, strict=True):
            leaf.value = value
    if not share_weights:
        result = copy.deepcopy(result)
    if has_choices(result):
        raise TypeError(f"{type(result).__name__} still holds choices after freezing")
    return result
