"""Objectives: metrics, scalarisation (and, later, constraints and Pareto utilities)."""

from lightning_nas.objectives.score import METRIC_ALIASES, METRIC_SCALES, Objective, metric_key

__all__ = ["METRIC_ALIASES", "METRIC_SCALES", "Objective", "metric_key"]
