"""Evaluators: how a candidate gets its score."""

from lightning_nas.evaluators.base import EvalResult, Evaluator, Status
from lightning_nas.evaluators.classifier import (
    ClassificationModule,
    RecalibrateBatchNorm,
    recalibrate_batchnorm,
)
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded

__all__ = [
    "ClassificationModule",
    "EvalResult",
    "Evaluator",
    "RecalibrateBatchNorm",
    "Status",
    "TrainEvaluator",
    "derive_seed",
    "recalibrate_batchnorm",
    "seeded",
]
