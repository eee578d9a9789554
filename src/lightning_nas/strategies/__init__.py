"""Search strategies (what to try next), registered by name in :data:`STRATEGIES`."""

from lightning_nas.strategies.accuracy_predictor import AccuracyPredictor
from lightning_nas.strategies.base import (
    STRATEGIES,
    SearchContext,
    SearchMethod,
    Strategy,
    register_strategy,
)
from lightning_nas.strategies.bayesian import BayesianStrategy
from lightning_nas.strategies.bohb import BOHBSearch
from lightning_nas.strategies.darts import BilevelDataModule, DartsModule
from lightning_nas.strategies.ensemble import EnsembleStrategy
from lightning_nas.strategies.evolution import EvolutionStrategy
from lightning_nas.strategies.hyperband import HyperbandSearch
from lightning_nas.strategies.nni_tuner import NNITunerStrategy
from lightning_nas.strategies.nsga2 import NSGA2Strategy
from lightning_nas.strategies.operators import crossover, mutate, sample_unseen
from lightning_nas.strategies.random_search import RandomSearch
from lightning_nas.strategies.rl import RLStrategy
from lightning_nas.strategies.supernet import PathSampler, SupernetModule, path_extremes
from lightning_nas.strategies.transfer import WarmStartEvolution

__all__ = [
    "STRATEGIES",
    "AccuracyPredictor",
    "BOHBSearch",
    "BayesianStrategy",
    "BilevelDataModule",
    "DartsModule",
    "EnsembleStrategy",
    "EvolutionStrategy",
    "HyperbandSearch",
    "NNITunerStrategy",
    "NSGA2Strategy",
    "PathSampler",
    "RLStrategy",
    "RandomSearch",
    "SearchContext",
    "SearchMethod",
    "Strategy",
    "SupernetModule",
    "WarmStartEvolution",
    "crossover",
    "mutate",
    "path_extremes",
    "register_strategy",
    "sample_unseen",
]
