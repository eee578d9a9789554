"""Fitted latency regressors as plain data: numbers in, numbers out, nothing that can name code.

A fitted scikit-learn model is converted right after ``fit`` (:func:`from_sklearn`) into one of the
two shapes below, which predict with numpy alone and round-trip through JSON (:func:`to_dict`,
:func:`from_dict`). Saved predictors are therefore data files: loading one never unpickles.

Example:
    >>> import numpy as np
    >>> model = LinearModel(np.array([2.0]), 1.0)
    >>> from_dict(to_dict(model)).predict(np.array([[3.0]]))
    array([7.])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["LinearModel", "Regressor", "TreeEnsemble", "from_dict", "from_sklearn", "to_dict"]

FloatArray = NDArray[np.float64]
_TREE_FIELDS = ("left", "right", "feature", "threshold", "value")


@dataclass(frozen=True)
class LinearModel:
    """``X @ coef + intercept``."""

    coef: FloatArray
    intercept: float

    def predict(self, features: FloatArray) -> FloatArray:
        return np.asarray(features, dtype=np.float64) @ self.coef + self.intercept


@dataclass(frozen=True)
class TreeEnsemble:
    """``offset + learning_rate * sum(tree(X))`` over regression trees stored as node arrays.

    Each tree is a dict of equal-length arrays (scikit-learn's ``tree_`` layout): ``left``/``right``
    child indices (-1 at a leaf), split ``feature`` and ``threshold`` (go left when ``x <= threshold``),
    and the leaf ``value``.
    """

    offset: float
    learning_rate: float
    trees: tuple[dict[str, NDArray[Any]], ...]

    def predict(self, features: FloatArray) -> FloatArray:
        features = np.asarray(features, dtype=np.float64)
        total = np.zeros(len(features))
        for tree in self.trees:
            total += _tree_predict(tree, features)
        return self.offset + self.learning_rate * total


Regressor = LinearModel | TreeEnsemble


def _tree_predict(tree: Mapping[str, NDArray[Any]], features: FloatArray) -> FloatArray:
    node = np.zeros(len(features), dtype=np.int64)
    rows = np.arange(len(features))
    for _ in range(len(tree["left"]) + 1):  # a path is never longer than the node count (no cycles)
        inner = tree["left"][node] >= 0
        if not inner.any():
            return np.asarray(tree["value"][node], dtype=np.float64)
        go_left = features[rows, np.maximum(tree["feature"][node], 0)] <= tree["threshold"][node]
        step = np.where(go_left, tree["left"][node], tree["right"][node])
        node = np.where(inner, step, node)
    raise ValueError("a tree's child indices form a cycle")


def from_sklearn(model: Any, features: FloatArray) -> Regressor:
    """The data form of a fitted ``LinearRegression`` or ``GradientBoostingRegressor``.

    Args:
        model: the fitted estimator.
        features: its training features (fixes the boosting offset so predictions agree exactly).
    """
    if hasattr(model, "coef_"):
        return LinearModel(np.asarray(model.coef_, dtype=np.float64).ravel(), float(np.ravel(model.intercept_)[0]))
    trees = tuple({
        "left": np.asarray(t.tree_.children_left, dtype=np.int64),
        "right": np.asarray(t.tree_.children_right, dtype=np.int64),
        "feature": np.asarray(t.tree_.feature, dtype=np.int64),
        "threshold": np.asarray(t.tree_.threshold, dtype=np.float64),
        "value": np.asarray(t.tree_.value, dtype=np.float64).reshape(-1),
    } for t in np.asarray(model.estimators_).ravel())
    partial = TreeEnsemble(0.0, float(model.learning_rate), trees)
    sample = np.asarray(features[:1], dtype=np.float64)
    offset = float(model.predict(sample)[0] - partial.predict(sample)[0])
    return TreeEnsemble(offset, partial.learning_rate, trees)


def to_dict(model: Regressor) -> dict[str, Any]:
    """JSON-ready form of ``model``."""
    if isinstance(model, LinearModel):
        return {"type": "linear", "coef": model.coef.tolist(), "intercept": model.intercept}
    return {"type": "trees", "offset": model.offset, "learning_rate": model.learning_rate,
            "trees": [{name: tree[name].tolist() for name in _TREE_FIELDS} for tree in model.trees]}


def _tree_from(raw: Any) -> dict[str, NDArray[Any]]:
    if not isinstance(raw, Mapping) or set(raw) != set(_TREE_FIELDS):
        raise ValueError(f"a tree must hold exactly {list(_TREE_FIELDS)}")
    tree = {name: np.asarray(raw[name], dtype=np.float64 if name in ("threshold", "value") else np.int64)
            for name in _TREE_FIELDS}
    size = len(tree["left"])
    if size == 0 or any(array.shape != (size,) for array in tree.values()):
        raise ValueError("a tree's arrays must be non-empty and of one length")
    children = np.concatenate([tree["left"], tree["right"]])
    if children.max() >= size or children.min() < -1:
        raise ValueError("a tree's child index is out of range")
    return tree


def from_dict(data: Any) -> Regressor:
    """Rebuild a regressor written by :func:`to_dict`; ``ValueError`` for anything else."""
    if not isinstance(data, Mapping) or data.get("type") not in ("linear", "trees"):
        raise ValueError("the regressor must be an object with type 'linear' or 'trees'")
    try:
        if data["type"] == "linear":
            return LinearModel(np.asarray(data["coef"], dtype=np.float64).reshape(-1), float(data["intercept"]))
        trees = tuple(_tree_from(raw) for raw in data["trees"])
        return TreeEnsemble(float(data["offset"]), float(data["learning_rate"]), trees)
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed regressor: {error!r}") from error
