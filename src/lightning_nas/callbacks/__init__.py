"""Search listeners and Lightning callbacks."""

from lightning_nas.callbacks.evolution_controller import SearchController, find_supernet, pareto_front
from lightning_nas.callbacks.nas_callback import NASCallback
from lightning_nas.callbacks.pareto_logger import ParetoFrontLogger
from lightning_nas.callbacks.wandb_logger import WandbSearchLogger, candidate_rows

__all__ = [
    "NASCallback",
    "ParetoFrontLogger",
    "SearchController",
    "WandbSearchLogger",
    "candidate_rows",
    "find_supernet",
    "pareto_front",
]
