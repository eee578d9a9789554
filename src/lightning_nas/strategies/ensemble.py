"""Ensemble: split one budget between member strategies run in sequence, sharing what earlier ones found."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import STRATEGIES, Strategy, register_strategy
from lightning_nas.strategies.bayesian import BayesianStrategy
from lightning_nas.strategies.operators import MAX_RETRIES, sample_unseen
from lightning_nas.strategies.transfer import load_source_run, select_valid

__all__ = ["EnsembleStrategy", "split_budget"]

NOT_MEMBERS = ("ensemble", "hyperband")
"""Registered strategies that cannot be members (Hyperband brings its own driver)."""

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"name": "random", "fraction": 0.3},
    {"name": "evolution", "fraction": 0.7, "population_size": 8, "tournament_size": 3},
)


def split_budget(fractions: Sequence[float], total: int) -> list[int]:
    """``total`` split in proportion to ``fractions`` (largest remainder, earlier first on ties), each >= 1.

    Example:
        >>> split_budget([0.3, 0.7], 12)
        [4, 8]
    """
    if total < len(fractions):
        raise ValueError(f"strategy.num_samples={total} cannot give each of {len(fractions)} members one evaluation")
    raw = [f / sum(fractions) * total for f in fractions]
    shares = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - shares[i]), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):  # a tiny fraction still gets one evaluation, from the largest share
        if share == 0:
            shares[max(range(len(shares)), key=lambda j: (shares[j], -j))] -= 1
            shares[i] = 1
    return shares


def _parse_member(spec: object, index: int) -> tuple[str, float, dict[str, Any]]:
    """``(name, fraction, arguments)`` of member ``index``; ``ValueError`` names the bad key."""
    key = f"strategy.members[{index}]"
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{key} must be a mapping with a strategy 'name', got {spec!r}")
    name = str(spec["name"])
    allowed = [n for n in STRATEGIES.names() if n not in NOT_MEMBERS]
    if name not in allowed:
        raise ValueError(f"{key}.name: unknown or unsupported member strategy {name!r}; choose from {allowed}")
    fraction = spec.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < math.inf:
        raise ValueError(f"{key}.fraction must be a positive number, got {fraction!r}")
    kwargs = {str(k): v for k, v in spec.items() if k not in ("name", "fraction")}
    if "num_samples" in kwargs:
        raise ValueError(f"{key}.num_samples: a member's budget comes from its fraction; remove num_samples")
    return name, float(fraction), kwargs


def _build_member(name: str, kwargs: dict[str, Any], index: int, share: int, seed: int) -> Strategy:
    try:
        return STRATEGIES.get(name)(num_samples=share, **{"seed": seed + index, **kwargs})
    except (TypeError, ValueError) as error:
        raise ValueError(f"strategy.members[{index}] ({name}): {error}") from error


@register_strategy("ensemble")
class EnsembleStrategy(Strategy):
    """Member strategies run one after another, each on its share of the budget, sharing results.

    The budget ``num_samples`` is split between ``members`` in proportion to their ``fraction``
    (largest remainder, at least one evaluation each). Members run in sequence, in list order: a
    member proposes until it has used its share of *new* evaluations, then the next one starts.
    History is shared: before its first ask a later member is told the ``top_k`` best results so far,
    best first, without re-evaluating them (an evolutionary member's first population opens with
    them; a model-based member fits them), and any other earlier result it proposes is answered from
    the shared history without evaluation. With ``source`` (a previous run's folder or
    ``history.jsonl``, e.g. a DARTS, supernet or random run), its ``top_k`` best architectures that
    this space accepts are evaluated first, on the first member's share, and told to it.

    A member is ``{"name": <registered strategy>, "fraction": <share>, **its own arguments}``; its
    ``seed`` defaults to ``seed + position``. Hyperband (its own driver) cannot be a member. A member
    that keeps proposing known architectures (``MAX_RETRIES`` times) gets a random unseen one instead.
    Resume: everything is a function of the seeds and the told results, so replaying the history
    asks the same architectures; a checkpoint is restored by the same replay.

    Args:
        members: the member specs (default: 30% random search, then 70% evolution).
        num_samples: evaluation budget of the whole ensemble.
        seed: seed of the fallback ``numpy.random.Generator`` and base of the members' seeds.
        top_k: earlier best results told to each later member (and source architectures evaluated first).
        source: a previous run to seed the first member from (``None``: no warm start).

    Example:
        >>> ensemble = EnsembleStrategy([{"name": "random", "fraction": 1}, {"name": "evolution", "fraction": 3,
        ...                              "population_size": 4, "tournament_size": 2}], num_samples=12)
        >>> ensemble.shares
        [3, 9]
    """

    name = "ensemble"
    replays = True
    checked = ("seed",)

    def __init__(self, members: Sequence[Mapping[str, Any]] | None = None, num_samples: int = 20, seed: int = 0,
                 top_k: int = 5, source: str | None = None) -> None:
        super().__init__(num_samples, seed)
        specs = list(DEFAULT_MEMBERS if members is None else members)
        if not specs:
            raise ValueError("strategy.members must name at least one member strategy")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"strategy.top_k must be a non-negative integer, got {top_k!r}")
        parsed = [_parse_member(spec, i) for i, spec in enumerate(specs)]
        self.shares = split_budget([fraction for _, fraction, _ in parsed], self.num_samples)
        self.members = [_build_member(name, kwargs, i, share, self.seed)
                        for i, ((name, _, kwargs), share) in enumerate(zip(parsed, self.shares, strict=True))]
        self.top_k, self.source = top_k, source
        self.source_ranked = [] if source is None else load_source_run(source)[0]
        self.current = 0
        """Position of the member now proposing."""
        self._used = 0  # new evaluations of the current member
        self._queue: list[Architecture] = []
        self._from_member = False  # whether the pending ask came from the current member

    def _prepare(self, space: SearchSpace) -> None:
        """Bind the space and score to every member; pick the valid source seeds."""
        for member in self.members:
            member.setup(space, self.score)
        self._queue = select_valid(space, self.source_ranked, self.top_k) if self.source_ranked else []

    @property
    def member(self) -> Strategy:
        """The member now proposing."""
        return self.members[self.current]

    def _propose(self, space: SearchSpace) -> Architecture:
        self._queue = [arch for arch in self._queue if not self.seen(arch)]
        if self._queue:
            self._from_member = False
            return self._queue.pop(0)
        arch, self._from_member = self._ask_member(space)
        return arch

    def _ask_member(self, space: SearchSpace) -> tuple[Architecture, bool]:
        for _ in range(MAX_RETRIES):
            arch = self.member.ask()
            if not self.seen(arch):
                return arch, True
            self.member.tell(arch, self._results[arch])  # known already: answered from the shared history
        return sample_unseen(space, self.rng, self._results), False

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        asked = self._told[-1].asked
        if not asked and self._pending is not None and self._from_member:
            raise ValueError(f"EnsembleStrategy was told {arch.digest()} but asked {self._pending.arch.digest()}")
        if asked and self._from_member:
            self.member.tell(arch, result)
        else:
            self._feed(self.member, arch, result)
        self._from_member = False
        self._used += 1
        if self._used >= self.shares[self.current] and self.current + 1 < len(self.members):
            self.current, self._used = self.current + 1, 0
            for best, best_result in self.best(self.top_k):
                self._feed(self.member, best, best_result)

    def _feed(self, member: Strategy, arch: Architecture, result: EvalResult) -> None:
        """Tell ``member`` a result it did not ask for (Optuna's study must ask it first: enqueued)."""
        if isinstance(member, BayesianStrategy):
            assert self.space is not None
            decisions = self.space.decisions
            member.study.enqueue_trial({label: next(i for i, c in enumerate(decisions[label].candidates)
                                                    if c == arch[label] and type(c) is type(arch[label]))
                                        for label in decisions})
            asked = member.ask()
            if asked != arch:  # the member had told it before: nothing new to learn
                return
        member.tell(arch, result)

    def best(self, k: int) -> list[tuple[Architecture, EvalResult]]:
        """The ``k`` best successful results told so far, best first (earliest first on ties)."""
        scored = [(self.fitness(r), i, a, r) for i, (a, r) in enumerate(self._results.items()) if r.ok]
        ranked = sorted((t for t in scored if math.isfinite(t[0])), key=lambda t: (-t[0], t[1]))
        return [(a, r) for _, _, a, r in ranked[:k]]
