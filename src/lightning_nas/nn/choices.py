"""Choice primitives: value choices (and expressions over them), layer, input and depth choices.

Every decision in a search space is a :class:`ValueChoice` leaf with a stable label.
:class:`LayerChoice`, :class:`InputChoice` and :class:`Repeat` hold one internally.

Inside :func:`fixed_arch` the same constructors build the chosen network directly:
``ValueChoice`` returns the chosen value, ``LayerChoice`` the chosen module, and so on,
so a space's code builds either the supernet or one plain candidate.
"""

from __future__ import annotations

import contextvars
import itertools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from lightning_nas.arch import Architecture, ChoiceValue, normalise_value

__all__ = [
    "ChoiceExpr",
    "DerivedValue",
    "InputChoice",
    "LayerChoice",
    "Repeat",
    "SelectInputs",
    "Switchable",
    "ValueChoice",
    "derive",
    "fixed_arch",
    "make_divisible",
    "match_candidate",
    "max_of",
    "resolve",
]

_FIXED: contextvars.ContextVar[Architecture | None] = contextvars.ContextVar("lightning_nas_fixed", default=None)
_USED: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("lightning_nas_used", default=None)


@contextmanager
def fixed_arch(arch: Mapping[str, Any], used: set[str] | None = None) -> Iterator[Architecture]:
    """Within this context, choice constructors build the chosen candidate of ``arch``.

    Args:
        arch: label -> chosen value.
        used: when given, receives the labels the build actually consulted (its active decisions;
            e.g. the blocks beyond a chosen depth are not built, so their decisions are inactive).
    """
    frozen = arch if isinstance(arch, Architecture) else Architecture(arch)
    token, used_token = _FIXED.set(frozen), _USED.set(used)
    try:
        yield frozen
    finally:
        _FIXED.reset(token)
        _USED.reset(used_token)


def match_candidate(label: str, value: Any, candidates: Sequence[ChoiceValue]) -> ChoiceValue:
    """The candidate equal to ``value`` (ints match equal floats, bools match only bools).

    Raises:
        ValueError: naming the label and value when no candidate matches.
    """
    for candidate in candidates:
        same_kind = isinstance(candidate, bool) == isinstance(value, bool) and (
            isinstance(candidate, str) == isinstance(value, str)
        )
        if same_kind and candidate == value:
            return candidate
    raise ValueError(f"value {value!r} for decision {label!r} is not one of {list(candidates)}")


def _fixed_value(label: str, candidates: Sequence[ChoiceValue]) -> ChoiceValue | None:
    """The value chosen for ``label`` in the active fixed architecture, or None outside one."""
    arch = _FIXED.get()
    if arch is None:
        return None
    if label not in arch:
        raise ValueError(f"architecture has no value for decision {label!r}")
    used = _USED.get()
    if used is not None:
        used.add(label)
    return match_candidate(label, arch[label], candidates)


class Switchable(nn.Module):
    """A module whose constructor may return a plain module instead (see ``_plain_instance``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # copy/pickle reconstruct with no arguments
            plain = cls._plain_instance(*args, **kwargs)
            if plain is not None:
                return plain
        return super().__new__(cls)

    @classmethod
    def _plain_instance(cls, *args: Any, **kwargs: Any) -> nn.Module | None:
        """The plain module to build instead of ``cls``, or None to build ``cls``."""
        return None


class ChoiceExpr:
    """A value that depends on one or more decisions; supports + - * // with numbers."""

    def leaves(self) -> list[ValueChoice]:
        raise NotImplementedError

    def evaluate(self, values: Mapping[str, Any] | None = None) -> Any:
        """The value under ``values`` (label -> choice); the active choices when None."""
        raise NotImplementedError

    def possible_values(self) -> list[Any]:
        """Every value this expression can take, sorted where comparable."""
        leaves = {leaf.label: leaf for leaf in self.leaves()}
        found = {
            self.evaluate(dict(zip(leaves, combo, strict=True)))
            for combo in itertools.product(*(leaf.candidates for leaf in leaves.values()))
        }
        try:
            return sorted(found)
        except TypeError:
            return list(found)

    def max(self) -> Any:
        return max(self.possible_values())

    def min(self) -> Any:
        return min(self.possible_values())

    def __add__(self, other: Any) -> Any:
        return derive(operator.add, self, other)

    def __radd__(self, other: Any) -> Any:
        return derive(operator.add, other, self)

    def __sub__(self, other: Any) -> Any:
        return derive(operator.sub, self, other)

    def __rsub__(self, other: Any) -> Any:
        return derive(operator.sub, other, self)

    def __mul__(self, other: Any) -> Any:
        return derive(operator.mul, self, other)

    def __rmul__(self, other: Any) -> Any:
        return derive(operator.mul, other, self)

    def __floordiv__(self, other: Any) -> Any:
        return derive(operator.floordiv, self, other)


class ValueChoice(ChoiceExpr):
    """One decision: a label and its candidate values.

    Inside :func:`fixed_arch` the constructor returns the chosen value itself.

    Args:
        candidates: the values to choose from (int, float, str, bool or tuples of ints).
        label: stable, unique name of the decision (e.g. ``"stage2/kernel"``).

    Example:
        >>> k = ValueChoice([3, 5, 7], label="kernel")
        >>> (k * 2 + 1).possible_values()
        [7, 11, 15]
    """

    label: str
    candidates: tuple[ChoiceValue, ...]
    value: ChoiceValue

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # copy/pickle reconstruct with no arguments
            candidates, label = cls._arguments(*args, **kwargs)
            fixed = _fixed_value(label, tuple(normalise_value(c) for c in candidates))
            if fixed is not None:
                return fixed
        return super().__new__(cls)

    @staticmethod
    def _arguments(candidates: Sequence[Any], label: str) -> tuple[Sequence[Any], str]:
        return candidates, label

    def __init__(self, candidates: Sequence[Any], label: str) -> None:
        if not label or not isinstance(label, str):
            raise ValueError(f"a choice needs a non-empty string label, got {label!r}")
        normalised = tuple(normalise_value(c) for c in candidates)
        if not normalised:
            raise ValueError(f"decision {label!r} has no candidates")
        if len(set(normalised)) != len(normalised):
            raise ValueError(f"decision {label!r} has duplicate candidates {list(normalised)}")
        self.label = label
        self.candidates = normalised
        self.value = normalised[0]

    def leaves(self) -> list[ValueChoice]:
        return [self]

    def evaluate(self, values: Mapping[str, Any] | None = None) -> Any:
        if values is None:
            return self.value
        return values.get(self.label, self.value)

    def __repr__(self) -> str:
        return f"ValueChoice({list(self.candidates)}, label={self.label!r})"


class DerivedValue(ChoiceExpr):
    """A function applied to choices and constants, evaluated lazily."""

    def __init__(self, fn: Callable[..., Any], operands: Sequence[Any]) -> None:
        self.fn = fn
        self.operands = tuple(operands)

    def leaves(self) -> list[ValueChoice]:
        found: dict[str, ValueChoice] = {}
        for op in self.operands:
            if isinstance(op, ChoiceExpr):
                for leaf in op.leaves():
                    found.setdefault(leaf.label, leaf)
        return list(found.values())

    def evaluate(self, values: Mapping[str, Any] | None = None) -> Any:
        args = [op.evaluate(values) if isinstance(op, ChoiceExpr) else op for op in self.operands]
        return self.fn(*args)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        return f"{name}({', '.join(map(repr, self.operands))})"


def derive(fn: Callable[..., Any], *operands: Any) -> Any:
    """``fn(*operands)`` now when no operand is a choice, else a lazy :class:`DerivedValue`."""
    if any(isinstance(op, ChoiceExpr) for op in operands):
        return DerivedValue(fn, operands)
    return fn(*operands)


def resolve(value: Any) -> Any:
    """The current value of a choice expression; plain values pass through."""
    return value.evaluate() if isinstance(value, ChoiceExpr) else value


def max_of(value: Any) -> Any:
    """The largest value a choice expression can take; plain values pass through."""
    return value.max() if isinstance(value, ChoiceExpr) else value


def _make_divisible(value: float, divisor: int) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def make_divisible(value: Any, divisor: int = 8) -> Any:
    """Round a (possibly chosen) channel count to a multiple of ``divisor``, losing at most 10%."""
    return derive(_make_divisible, value, divisor)


def _build(candidate: nn.Module | Callable[[], nn.Module]) -> nn.Module:
    module = candidate if isinstance(candidate, nn.Module) else candidate()
    if not isinstance(module, nn.Module):
        raise TypeError(f"a layer candidate factory returned {type(module).__name__}, not an nn.Module")
    return module


def _named_candidates(
    candidates: Mapping[str, Any] | Sequence[Any],
) -> dict[str, nn.Module | Callable[[], nn.Module]]:
    if isinstance(candidates, Mapping):
        named = {str(k): v for k, v in candidates.items()}
    else:
        named = {str(i): v for i, v in enumerate(candidates)}
    for name in named:
        if not name or "." in name:
            raise ValueError(f"layer candidate name {name!r} must be non-empty and contain no '.'")
    return named


class LayerChoice(Switchable):
    """Choose one of several layers; candidates may be modules or zero-argument factories.

    Example:
        >>> op = LayerChoice({"conv3": lambda: nn.Conv2d(8, 8, 3, padding=1),
        ...                   "skip": nn.Identity}, label="op")
        >>> op.choice.candidates
        ('conv3', 'skip')
    """

    @classmethod
    def _plain_instance(cls, candidates: Mapping[str, Any] | Sequence[Any], label: str) -> nn.Module | None:
        named = _named_candidates(candidates)
        chosen = _fixed_value(label, tuple(named))
        return None if chosen is None else _build(named[str(chosen)])

    def __init__(self, candidates: Mapping[str, Any] | Sequence[Any], label: str) -> None:
        super().__init__()
        named = _named_candidates(candidates)
        self.candidates = nn.ModuleDict({name: _build(c) for name, c in named.items()})
        self.choice = ValueChoice(list(named), label=label)

    @property
    def label(self) -> str:
        return self.choice.label

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.candidates[str(self.choice.value)](*args, **kwargs)

    def freeze_module(self) -> nn.Module:
        return self.candidates[str(self.choice.value)]


class SelectInputs(nn.Module):
    """Reduce a fixed subset of a list of tensors (the frozen form of :class:`InputChoice`)."""

    def __init__(self, indices: Sequence[int], reduction: str = "sum") -> None:
        super().__init__()
        if reduction not in ("sum", "mean", "concat"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'concat', got {reduction!r}")
        self.indices = tuple(int(i) for i in indices)
        self.reduction = reduction

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        chosen = [inputs[i] for i in self.indices]
        if self.reduction == "concat":
            return torch.cat(chosen, dim=1)
        total = chosen[0]
        for tensor in chosen[1:]:
            total = total + tensor
        return total / len(chosen) if self.reduction == "mean" else total

    def extra_repr(self) -> str:
        return f"indices={self.indices}, reduction={self.reduction!r}"


class InputChoice(Switchable):
    """Choose ``n_chosen`` of ``n_candidates`` input tensors and reduce them.

    The decision's values are sorted index tuples, e.g. ``(0, 2)``.
    """

    @classmethod
    def _plain_instance(
        cls, n_candidates: int, n_chosen: int = 1, label: str = "", reduction: str = "sum"
    ) -> nn.Module | None:
        chosen = _fixed_value(label, cls.index_combinations(n_candidates, n_chosen))
        return None if chosen is None else SelectInputs(chosen, reduction)  # type: ignore[arg-type]

    def __init__(self, n_candidates: int, n_chosen: int = 1, label: str = "", reduction: str = "sum") -> None:
        super().__init__()
        self.choice = ValueChoice(self.index_combinations(n_candidates, n_chosen), label=label)
        self.n_candidates = n_candidates
        self.reduction = reduction

    @staticmethod
    def index_combinations(n_candidates: int, n_chosen: int) -> tuple[tuple[int, ...], ...]:
        if not 1 <= n_chosen <= n_candidates:
            raise ValueError(f"need 1 <= n_chosen <= n_candidates, got {n_chosen} of {n_candidates}")
        return tuple(itertools.combinations(range(n_candidates), n_chosen))

    @property
    def label(self) -> str:
        return self.choice.label

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.freeze_module()(inputs)

    def freeze_module(self) -> nn.Module:
        return SelectInputs(self.choice.value, self.reduction)  # type: ignore[arg-type]


class Repeat(Switchable):
    """Stack ``depth`` blocks built by ``block(index)``; the depth is a decision.

    The supernet holds the deepest stack and runs its first ``depth`` blocks.
    """

    @classmethod
    def _plain_instance(cls, block: Callable[[int], nn.Module], depth: Any, label: str = "") -> nn.Module | None:
        arch = _FIXED.get()
        if arch is None:
            return None
        if isinstance(depth, ChoiceExpr):
            chosen = depth.evaluate(arch)
        else:
            chosen = depth if isinstance(depth, int) else ValueChoice(list(depth), label=label)
        return nn.Sequential(*(block(i) for i in range(int(chosen))))

    def __init__(self, block: Callable[[int], nn.Module], depth: Any, label: str = "") -> None:
        super().__init__()
        if isinstance(depth, ChoiceExpr | int):
            self.depth = depth
        else:
            self.depth = ValueChoice(list(depth), label=label)
        deepest = int(max_of(self.depth))
        if deepest < 0:
            raise ValueError(f"depth of {label!r} must be non-negative, got {deepest}")
        self.blocks = nn.ModuleList(block(i) for i in range(deepest))

    def forward(self, x: Any) -> Any:
        for block in self.blocks[: int(resolve(self.depth))]:
            x = block(x)
        return x

    def freeze_module(self) -> nn.Module:
        return nn.Sequential(*self.blocks[: int(resolve(self.depth))])
