"""Search strategies (what to try next), registered by name in :data:`STRATEGIES`."""

from lightning_nas.strategies.base import STRATEGIES, ScoreFn, Strategy, default_score, register_strategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.nsga2 import NSGA2Strategy
from lightning_nas.strategies.operators import crossover, mutate, sample_unseen
from lightning_nas.strategies.random_search import RandomSearch

__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "NSGA2Strategy",
    "RandomSearch",
    "ScoreFn",
    "Strategy",
    "crossover",
    "default_score",
    "mutate",
    "register_strategy",
    "sample_unseen",
]
