"""Search strategies (what to try next), registered by name in :data:`STRATEGIES`."""

from lightning_nas.strategies.base import STRATEGIES, ScoreFn, Strategy, default_score, register_strategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.operators import crossover, mutate, sample_unseen
from lightning_nas.strategies.random_search import RandomSearch

__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "RandomSearch",
    "ScoreFn",
    "Strategy",
    "crossover",
    "default_score",
    "mutate",
    "register_strategy",
    "sample_unseen",
]
