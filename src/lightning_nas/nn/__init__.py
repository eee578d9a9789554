"""Choice modules for search spaces, and the operations on models that contain them."""

from lightning_nas.nn.batchnorm import recalibrate_bn
from lightning_nas.nn.choices import (
    ChoiceExpr,
    DerivedValue,
    InputChoice,
    LayerChoice,
    Repeat,
    SelectInputs,
    ValueChoice,
    derive,
    fixed_arch,
    make_divisible,
    max_of,
    resolve,
)
from lightning_nas.nn.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticGroupNorm, ElasticLinear
from lightning_nas.nn.fusion import fold_batchnorm, inplace_activations
from lightning_nas.nn.mutation import activate, cardinality, decisions, freeze, has_choices, sample, validate

__all__ = [
    "ChoiceExpr",
    "DerivedValue",
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticGroupNorm",
    "ElasticLinear",
    "InputChoice",
    "LayerChoice",
    "Repeat",
    "SelectInputs",
    "ValueChoice",
    "activate",
    "cardinality",
    "decisions",
    "derive",
    "fixed_arch",
    "fold_batchnorm",
    "freeze",
    "has_choices",
    "inplace_activations",
    "make_divisible",
    "max_of",
    "recalibrate_bn",
    "resolve",
    "sample",
    "validate",
]
