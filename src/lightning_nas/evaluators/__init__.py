"""Evaluators: how a candidate gets its score."""

from lightning_nas.evaluators.base import EvalResult, Evaluator, Status
from lightning_nas.evaluators.classifier import (
    ClassificationModule,
    RecalibrateBatchNorm,
    recalibrate_batchnorm,
)
from lightning_nas.evaluators.proxy import ProxyEvaluator, proxy_features
from lightning_nas.evaluators.robust import RobustnessEvaluator
from lightning_nas.evaluators.supernet import SupernetEvaluator, recalibrate_bn, retrain
from lightning_nas.evaluators.tabular import ArchitectureNotInTable, TabularEvaluator
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded

__all__ = [
    "ArchitectureNotInTable",
    "ClassificationModule",
    "EvalResult",
    "Evaluator",
    "ProxyEvaluator",
    "RecalibrateBatchNorm",
    "RobustnessEvaluator",
    "Status",
    "SupernetEvaluator",
    "TabularEvaluator",
    "TrainEvaluator",
    "derive_seed",
    "proxy_features",
    "recalibrate_batchnorm",
    "recalibrate_bn",
    "retrain",
    "seeded",
]
