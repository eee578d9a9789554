"""Objectives: metrics, scalarisation, constraints and Pareto utilities."""

from lightning_nas.objectives.constraints import Constraint, parse_constraints
from lightning_nas.objectives.multi import MultiObjective
from lightning_nas.objectives.pareto import (
    correlation_matrix,
    crowding_distance,
    hypervolume,
    knee_point,
    non_dominated_sort,
    pareto_front,
    ranks,
)
from lightning_nas.objectives.score import METRIC_ALIASES, METRIC_SCALES, Objective, metric_key

__all__ = [
    "METRIC_ALIASES",
    "METRIC_SCALES",
    "Constraint",
    "MultiObjective",
    "Objective",
    "correlation_matrix",
    "crowding_distance",
    "hypervolume",
    "knee_point",
    "metric_key",
    "non_dominated_sort",
    "pareto_front",
    "parse_constraints",
    "ranks",
]
