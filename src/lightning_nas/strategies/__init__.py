"""Search strategies (what to try next), registered by name in :data:`STRATEGIES`."""

from lightning_nas.strategies.base import STRATEGIES, ScoreFn, Strategy, default_score, register_strategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.nsga2 import NSGA2Strategy
from lightning_nas.strategies.operators import crossover, mutate, sample_unseen
from lightning_nas.strategies.random_search import RandomSearch
from lightning_nas.strategies.supernet import PathSampler, SupernetModule, SupernetSpace, path_extremes

__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "NSGA2Strategy",
    "PathSampler",
    "RandomSearch",
    "ScoreFn",
    "Strategy",
    "SupernetModule",
    "SupernetSpace",
    "crossover",
    "default_score",
    "mutate",
    "path_extremes",
    "register_strategy",
    "sample_unseen",
]
