"""Evaluators: how a candidate gets its score."""

from lightning_nas.evaluators.base import Evaluator, evaluate_job, safe_evaluate
from lightning_nas.evaluators.classifier import (
    ClassificationModule,
    RecalibrateBatchNorm,
    recalibrate_batchnorm,
)
from lightning_nas.evaluators.hardware import HardwareEvaluator
from lightning_nas.evaluators.multi_fidelity import TrainMultiFidelity
from lightning_nas.evaluators.proxy import ProxyEvaluator, proxy_features
from lightning_nas.evaluators.robust import RobustnessEvaluator
from lightning_nas.evaluators.supernet import SupernetEvaluator, recalibrate_bn, retrain
from lightning_nas.evaluators.tabular import ArchitectureNotInTable, TabularEvaluator
from lightning_nas.evaluators.train import TrainEvaluator, derive_seed, seeded

__all__ = [
    "ArchitectureNotInTable",
    "ClassificationModule",
    "Evaluator",
    "HardwareEvaluator",
    "ProxyEvaluator",
    "RecalibrateBatchNorm",
    "RobustnessEvaluator",
    "SupernetEvaluator",
    "TabularEvaluator",
    "TrainEvaluator",
    "TrainMultiFidelity",
    "derive_seed",
    "evaluate_job",
    "proxy_features",
    "recalibrate_batchnorm",
    "recalibrate_bn",
    "retrain",
    "safe_evaluate",
    "seeded",
]
