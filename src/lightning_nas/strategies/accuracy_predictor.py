"""An accuracy predictor fitted on an earlier run's history: architecture decisions -> validation accuracy.

Features are the space's decisions as :func:`~lightning_nas.hardware.predictor.architecture_features`
gives them (numbers as they are, other values one-hot): no model is built and no data is read, so
fitting and predicting are cheap and deterministic given the training set and the seed.

Example:
    >>> predictor = AccuracyPredictor().fit(space, archs, accuracies)  # doctest: +SKIP
    >>> predictor.cross_validate(space, archs, accuracies)["spearman"]  # doctest: +SKIP
    0.71
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lightning_nas.arch import Architecture
from lightning_nas.hardware.predictor import architecture_features
from lightning_nas.results.history import Record
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ACCURACY_REGRESSORS", "AccuracyPredictor", "training_set"]

ACCURACY_REGRESSORS = ("ridge", "gbr")
LOO_MAX = 30
"""Up to this many examples, :meth:`AccuracyPredictor.cross_validate` is leave-one-out; above, 5-fold."""

FloatArray = NDArray[np.float64]


def _decisions(space: SearchSpace, arch: Architecture) -> dict[str, float]:
    return architecture_features(space, arch)


def training_set(space: SearchSpace, records: Iterable[Record], metric: str = "search/val_acc"
                 ) -> tuple[list[Architecture], list[float]]:
    """The successful records of ``records`` that ``space`` accepts, with a finite ``metric``
    (first occurrence of an architecture kept), as ``(architectures, values)``."""
    found: dict[Architecture, float] = {}
    for record in records:
        value = record.result.metrics.get(metric, math.nan)
        if not record.result.ok or value is None or not math.isfinite(value) or record.arch in found:
            continue
        try:
            found[space.validate(record.arch)] = float(value)
        except ValueError:
            continue
    return list(found), list(found.values())


class AccuracyPredictor:
    """Regresses validation accuracy on architecture decisions.

    Args:
        regressor: ``"ridge"`` (standardised features, ridge regression; default, suits a few dozen
            examples) or ``"gbr"`` (gradient boosting).
        alpha: ridge penalty.
        seed: seed of the gradient-boosting regressor and of the cross-validation folds.

    Example:
        >>> AccuracyPredictor("ridge").fitted
        False
    """

    def __init__(self, regressor: str = "ridge", alpha: float = 1.0, seed: int = 0) -> None:
        if regressor not in ACCURACY_REGRESSORS:
            raise ValueError(f"accuracy predictor must be one of {list(ACCURACY_REGRESSORS)}, got {regressor!r}")
        if not (isinstance(alpha, int | float) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        self.regressor_name, self.alpha, self.seed = regressor, float(alpha), int(seed)
        self.feature_names: list[str] = []
        self.model: Any = None

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def features(self, space: SearchSpace, archs: Sequence[Architecture]) -> FloatArray:
        """One row per architecture (columns ``feature_names``, fixed at :meth:`fit`)."""
        rows = [_decisions(space, arch) for arch in archs]
        names = self.feature_names or sorted({name for row in rows for name in row})
        return np.array([[row.get(name, 0.0) for name in names] for row in rows], dtype=np.float64).reshape(
            len(rows), len(names))

    def _new_model(self) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.regressor_name == "ridge":
            return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        return GradientBoostingRegressor(n_estimators=200, learning_rate=0.05, max_depth=2, subsample=0.8,
                                         random_state=self.seed)

    def fit(self, space: SearchSpace, archs: Sequence[Architecture], accuracies: Sequence[float] | FloatArray
            ) -> AccuracyPredictor:
        """Fit on ``archs`` and their accuracies (at least 3); returns ``self``."""
        values = np.asarray(accuracies, dtype=np.float64).reshape(-1)
        if values.shape[0] != len(archs) or len(archs) < 3 or not np.all(np.isfinite(values)):
            raise ValueError(f"an accuracy predictor needs at least 3 architectures with finite accuracies, "
                             f"got {len(archs)} architectures and {values.shape[0]} values")
        self.feature_names = sorted({name for arch in archs for name in _decisions(space, arch)})
        self.model = self._new_model().fit(self.features(space, archs), values)
        return self

    def predict(self, space: SearchSpace, archs: Sequence[Architecture]) -> FloatArray:
        """Predicted accuracies of ``archs``."""
        if not self.fitted:
            raise RuntimeError("the accuracy predictor is not fitted; call fit() first")
        if not archs:
            return np.zeros(0)
        return np.asarray(self.model.predict(self.features(space, archs)), dtype=np.float64)

    def cross_validate(self, space: SearchSpace, archs: Sequence[Architecture], accuracies: Sequence[float]
                       ) -> dict[str, Any]:
        """Held-out fit quality: out-of-fold predictions (leave-one-out up to :data:`LOO_MAX` examples,
        else 5 seeded folds) against the truth. Leaves this predictor as it was.

        Returns:
            ``spearman`` (NaN when undefined), ``kendall``, ``method`` and ``n``.
        """
        from scipy.stats import kendalltau, spearmanr

        truth = np.asarray(accuracies, dtype=np.float64)
        n = len(archs)
        if n < 4:  # each fold must keep 3 to fit on
            return {"spearman": math.nan, "kendall": math.nan, "method": "none", "n": n}
        folds = n if n <= LOO_MAX else 5
        order = np.random.default_rng(self.seed).permutation(n)
        predicted = np.empty(n)
        for fold in range(folds):
            held = order[fold::folds]
            kept = np.setdiff1d(order, held)
            helper = AccuracyPredictor(self.regressor_name, self.alpha, self.seed)
            helper.fit(space, [archs[int(i)] for i in kept], truth[kept])
            predicted[held] = helper.predict(space, [archs[int(i)] for i in held])
        constant = np.ptp(predicted) == 0 or np.ptp(truth) == 0
        return {
            "spearman": math.nan if constant else float(spearmanr(predicted, truth).statistic),
            "kendall": math.nan if constant else float(kendalltau(predicted, truth).statistic),
            "method": "leave-one-out" if folds == n else f"{folds}-fold",
            "n": n,
        }

    def __repr__(self) -> str:
        return f"AccuracyPredictor(regressor={self.regressor_name!r}, fitted={self.fitted})"
