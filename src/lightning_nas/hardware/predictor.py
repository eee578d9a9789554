"""Latency predictors: estimate a candidate's latency in milliseconds instead of measuring it.

Two kinds:

* ``"lut"``: the sum of a per-layer lookup table (built at :meth:`LatencyPredictor.fit` by timing
  every layer of the training architectures when none is given), calibrated with a linear fit
  ``measured ~ a * sum + b``. A signature missing from the table is estimated from the table's
  entries of the same layer type (a linear fit on MACs, or on output size for layers without MACs).
* ``"learned"``: a scikit-learn regressor on architecture features. ``regressor="linear"``
  (default) is non-negative least squares on additive costs (layer calls, MACs and output
  sizes per layer group): eager latency at batch 1 is close to a sum of per-call overheads and
  per-MAC costs, and this generalises from ~40 measurements. ``regressor="gbr"`` is gradient
  boosting on the log latency from the space's decisions (numbers as they are, other values
  one-hot) plus log-scaled parameters, MACs and the same per-group costs.

Features come from one batch-1 forward pass of the built candidate (about 40 ms for a small
network); they are cached per architecture (the last ``CACHE_SIZE`` per space).
Predictors are saved as JSON (:mod:`lightning_nas.hardware.regressors` holds the fitted regressor as
plain numbers): loading a predictor file never unpickles, so a file cannot run code.

Example:
    >>> predictor = LatencyPredictor("learned").fit(space, train_archs, measured_ms)  # doctest: +SKIP
    >>> predictor.evaluate(space, test_archs, test_ms)["spearman"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import json
import math
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.hardware.base import HardwareTarget, register_hardware
from lightning_nas.hardware.lookup_table import LayerCall, LookupTable, layer_calls, measure_layers
from lightning_nas.hardware.regressors import Regressor, from_dict, from_sklearn, to_dict
from lightning_nas.hardware.targets import CpuTarget
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "CACHE_SIZE",
    "KINDS",
    "REGRESSORS",
    "LatencyPredictor",
    "LayerSummary",
    "architecture_features",
    "cost_features",
    "model_features",
    "summarize",
]

KINDS = ("lut", "learned")
REGRESSORS = ("linear", "gbr")
CACHE_SIZE = 1024
_FORMAT = "lightning_nas.latency_predictor/2"  # /1 was a joblib pickle: refused
FloatArray = NDArray[np.float64]


class LayerSummary(NamedTuple):
    """What a predictor keeps of one layer call (no module reference)."""

    signature: str
    kind: str
    group: str
    macs: int
    elements: int


Profile = tuple[tuple[LayerSummary, ...], int]
"""The layer summaries and the parameter count of one architecture."""


def _group(call: LayerCall) -> str:
    module = call.module
    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "conv_dw"
        return "conv_pw" if tuple(module.kernel_size) == (1, 1) else "conv"
    return call.kind


def summarize(calls: Sequence[LayerCall]) -> tuple[LayerSummary, ...]:
    """The :class:`LayerSummary` of each call (convolutions grouped as ``conv_dw``, ``conv_pw``, ``conv``)."""
    return tuple(LayerSummary(c.signature, c.kind, _group(c), c.macs, c.elements) for c in calls)


def cost_features(layers: Sequence[LayerSummary]) -> dict[str, float]:
    """Additive costs: layer calls in all, and per layer group the calls, MACs and output values.

    Args:
        layers: the model's layer summaries (:func:`summarize`).
    """
    counts: dict[str, float] = defaultdict(float)
    counts["calls"] = float(len(layers))
    for layer in layers:
        counts[f"calls/{layer.group}"] += 1
        counts[f"elements/{layer.group}"] += layer.elements
        if layer.macs:
            counts[f"macs/{layer.group}"] += layer.macs
    return dict(counts)


def model_features(layers: Sequence[LayerSummary], params: int) -> dict[str, float]:
    """``log1p`` of the parameters, the MACs and every :func:`cost_features` value.

    Args:
        layers: the model's layer summaries.
        params: the model's parameter count.
    """
    raw = {"params": float(params), "macs": float(sum(layer.macs for layer in layers)), **cost_features(layers)}
    return {name: math.log1p(value) for name, value in raw.items()}


def architecture_features(space: SearchSpace, arch: Architecture) -> dict[str, float]:
    """The decisions of ``arch``: numeric values as they are, other values one-hot.

    Args:
        space: the search space (its ``decisions`` give the candidates).
        arch: the architecture.
    """
    features: dict[str, float] = {}
    for label, decision in space.decisions.items():
        value = arch[label]
        if all(isinstance(c, int | float) and not isinstance(c, bool) for c in decision.candidates):
            features[f"arch/{label}"] = float(value)  # type: ignore[arg-type]
        else:
            for candidate in decision.candidates:
                features[f"arch/{label}={candidate}"] = float(value == candidate)
    return features


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_latencies(archs: Sequence[Architecture], latencies_ms: Sequence[float] | FloatArray) -> FloatArray:
    values = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(archs):
        raise ValueError(f"got {values.shape[0]} latencies for {len(archs)} architectures")
    if len(archs) < 3:
        raise ValueError(f"fitting a latency predictor needs at least 3 architectures, got {len(archs)}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("latencies_ms must be finite and positive")
    return values


class LatencyPredictor:
    """Predicts batch-1 latency (ms) of architectures of a search space.

    Args:
        kind: ``"lut"`` (calibrated lookup-table sum) or ``"learned"`` (a regressor on features).
        regressor: for ``"learned"``: ``"linear"`` or ``"gbr"`` (see the module docstring).
        table: for ``"lut"``: a :class:`LookupTable` or a table file; ``None`` builds one at
            :meth:`fit` by timing every layer of the training architectures on ``target``.
        target: where :meth:`fit` times layers when it builds the table (default ``CpuTarget()``).
        seed: seed of the gradient-boosting regressor.

    Example:
        >>> predictor = LatencyPredictor("lut").fit(space, archs, measured_ms)  # doctest: +SKIP
        >>> predictor.save("latency.json")  # doctest: +SKIP
    """

    def __init__(self, kind: str = "learned", regressor: str = "linear", table: LookupTable | str | Path | None = None,
                 target: HardwareTarget | None = None, seed: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"predictor kind must be one of {list(KINDS)}, got {kind!r}")
        if regressor not in REGRESSORS:
            raise ValueError(f"predictor regressor must be one of {list(REGRESSORS)}, got {regressor!r}")
        if table is not None and kind != "lut":
            raise ValueError("a lookup table is used by kind='lut' only")
        self.kind, self.regressor_name, self.seed = kind, regressor, int(seed)
        self.table = LookupTable.load(table) if isinstance(table, str | Path) else table
        self.target = target
        self.feature_names: list[str] = []
        self.regressor: Regressor | None = None
        self.calibration = (1.0, 0.0)
        self.fallback: dict[str, tuple[float, float]] = {}
        self._cache: weakref.WeakKeyDictionary[SearchSpace, OrderedDict[Architecture, Profile]] = (
            weakref.WeakKeyDictionary())

    @property
    def fitted(self) -> bool:
        return self.regressor is not None if self.kind == "learned" else bool(self.fallback)

    # --- features -----------------------------------------------------------------------------
    def _remember(self, space: SearchSpace, arch: Architecture, profile: Profile) -> Profile:
        cache = self._cache.setdefault(space, OrderedDict())
        cache[arch] = profile
        cache.move_to_end(arch)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return profile

    @staticmethod
    def _build(space: SearchSpace, arch: Architecture) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # weights do not matter; keep the global RNG
            return space.build(arch)

    def profiles(self, space: SearchSpace, archs: Sequence[Architecture]) -> list[Profile]:
        """Layer summaries and parameter count of each architecture (built and run once, then cached)."""
        found = []
        for arch in archs:
            cache = self._cache.get(space)
            cached = cache.get(arch) if cache is not None else None
            if cached is None:
                model = self._build(space, arch)
                cached = (summarize(layer_calls(model, space.input_shape)), _params(model))
            found.append(self._remember(space, arch, cached))
        return found

    def features(self, space: SearchSpace, archs: Sequence[Architecture]) -> FloatArray:
        """The ``"learned"`` feature matrix, one row per architecture (columns: ``feature_names``,
        fixed by :meth:`fit`; a feature unseen then is dropped, one missing now counts 0)."""
        profiles = self.profiles(space, archs)
        if self.regressor_name == "linear":
            rows = [cost_features(layers) for layers, _ in profiles]
        else:
            rows = [{**architecture_features(space, arch), **model_features(layers, params)}
                    for arch, (layers, params) in zip(archs, profiles, strict=True)]
        if not self.feature_names:
            self.feature_names = sorted({name for row in rows for name in row})
        return np.array([[row.get(name, 0.0) for name in self.feature_names] for row in rows], dtype=np.float64)

    def _lut_sum(self, layers: Sequence[LayerSummary]) -> float:
        entries = self._require_table().entries
        return float(sum(entries[x.signature] if x.signature in entries else self._estimate(x) for x in layers))

    def _estimate(self, layer: LayerSummary) -> float:
        slope, intercept = self.fallback.get(layer.kind, self.fallback.get("*", (0.0, 0.0)))
        return max(0.0, intercept + slope * (layer.macs or layer.elements))

    def _require_table(self) -> LookupTable:
        if self.table is None:
            raise RuntimeError("this 'lut' predictor has no lookup table; call fit() first")
        return self.table

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, space: SearchSpace, archs: Sequence[Architecture], latencies_ms: Sequence[float] | FloatArray
            ) -> LatencyPredictor:
        """Fit on measured latencies (ms) of ``archs``; returns ``self``.

        Args:
            space: the search space the architectures belong to.
            archs: the training architectures.
            latencies_ms: their measured latencies.
        """
        measured = _check_latencies(archs, latencies_ms)
        if self.kind == "learned":
            self._fit_learned(space, archs, measured)
        else:
            self._fit_lut(space, archs, measured)
        return self

    def _fit_learned(self, space: SearchSpace, archs: Sequence[Architecture], measured: FloatArray) -> None:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.linear_model import LinearRegression

        self.feature_names = []
        features = self.features(space, archs)
        if self.regressor_name == "linear":
            fitted: Any = LinearRegression(positive=True).fit(features, measured)
        else:
            fitted = GradientBoostingRegressor(
                n_estimators=300, learning_rate=0.05, max_depth=2, subsample=0.8, random_state=self.seed
            ).fit(features, np.log(measured))
        self.regressor = from_sklearn(fitted, features)  # plain numbers from here on (saved as JSON)

    def _measure_table(self, space: SearchSpace, archs: Sequence[Architecture]) -> LookupTable:
        target = self.target or CpuTarget()
        entries: dict[str, float] = {}
        for arch in archs:
            model = self._build(space, arch)
            calls = layer_calls(model, space.input_shape)
            entries.update(measure_layers([c for c in calls if c.signature not in entries], target))
            self._remember(space, arch, (summarize(calls), _params(model)))
        return LookupTable(entries, target.name, {"input_shape": list(space.input_shape), "target": repr(target)})

    def _fit_lut(self, space: SearchSpace, archs: Sequence[Architecture], measured: FloatArray) -> None:
        if self.table is None:
            self.table = self._measure_table(space, archs)
        layers = [found for found, _ in self.profiles(space, archs)]
        self.fallback = self._fit_fallback(layers)
        sums = np.array([self._lut_sum(found) for found in layers])
        if np.ptp(sums) > 0:
            slope, intercept = np.polyfit(sums, measured, 1)
        else:
            slope, intercept = 0.0, float(np.mean(measured))
        self.calibration = (float(slope), float(intercept))

    def _fit_fallback(self, layers: Sequence[Sequence[LayerSummary]]) -> dict[str, tuple[float, float]]:
        """Per layer type, ``ms ~ slope * work + intercept`` over the table entries seen in ``layers``."""
        entries = self._require_table().entries
        points: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        for layer in (layer for found in layers for layer in found):
            if layer.signature in entries:
                point = (float(layer.macs or layer.elements), entries[layer.signature])
                points[layer.kind][layer.signature] = points["*"][layer.signature] = point
        fits = {"*": (0.0, float(np.median(list(entries.values()) or [0.0])))}
        for kind, pairs in points.items():
            work, ms = np.array(list(pairs.values())).T
            if len(pairs) >= 2 and np.ptp(work) > 0:
                slope, intercept = np.polyfit(work, ms, 1)
                fits[kind] = (max(0.0, float(slope)), float(intercept))
            else:
                fits[kind] = (0.0, float(np.mean(ms)))
        return fits

    # --- prediction ---------------------------------------------------------------------------
    def predict(self, space: SearchSpace, archs: Sequence[Architecture]) -> FloatArray:
        """Predicted latencies (ms) of ``archs``, as a float array.

        Args:
            space: the search space the architectures belong to.
            archs: the architectures.
        """
        if not self.fitted:
            raise RuntimeError("the latency predictor is not fitted; call fit() or load()")
        if not archs:
            return np.zeros(0)
        if self.kind == "learned":
            assert self.regressor is not None  # fitted
            predicted = np.asarray(self.regressor.predict(self.features(space, archs)), dtype=np.float64)
            return np.maximum(predicted, 1e-6) if self.regressor_name == "linear" else np.exp(predicted)
        sums = np.array([self._lut_sum(found) for found, _ in self.profiles(space, archs)])
        return np.maximum(self.calibration[0] * sums + self.calibration[1], 1e-6)

    def predict_model(self, model: nn.Module, input_shape: Sequence[int]) -> float:
        """Predicted latency (ms) of a built model (``"lut"`` predictors only: they need no decisions)."""
        if self.kind != "lut" or not self.fitted:
            raise ValueError("predict_model needs a fitted 'lut' predictor; a 'learned' one reads the "
                             "architecture's decisions (use predict(space, archs))")
        total = self._lut_sum(summarize(layer_calls(model, input_shape)))
        return max(self.calibration[0] * total + self.calibration[1], 1e-6)

    def evaluate(self, space: SearchSpace, archs: Sequence[Architecture], measured: Sequence[float] | FloatArray
                 ) -> dict[str, float]:
        """Ranking and error figures of the predictions against ``measured`` latencies (ms).

        Returns:
            ``spearman`` and ``kendall`` rank correlations, ``mape`` (mean absolute percentage
            error, in percent) and ``rmse`` (ms).
        """
        from scipy.stats import kendalltau, spearmanr

        truth = _check_latencies(archs, measured)
        predicted = self.predict(space, archs)
        return {
            "spearman": float(spearmanr(predicted, truth).statistic),
            "kendall": float(kendalltau(predicted, truth).statistic),
            "mape": float(100.0 * np.mean(np.abs(predicted - truth) / truth)),
            "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        }

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor to ``path`` as JSON (data only; see :meth:`load`)."""
        if not self.fitted:
            raise RuntimeError("save() needs a fitted predictor")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = self.table
        payload = {
            "format": _FORMAT, "kind": self.kind, "regressor_name": self.regressor_name, "seed": self.seed,
            "feature_names": self.feature_names, "calibration": list(self.calibration),
            "regressor": None if self.regressor is None else to_dict(self.regressor),
            "fallback": {kind: list(fit) for kind, fit in self.fallback.items()},
            "table": None if table is None else {"entries": table.entries, "device": table.device, "meta": table.meta},
        }
        path.write_text(json.dumps(payload, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        """Read a predictor written by :meth:`save`; ``ValueError`` for any other file (nothing is unpickled)."""
        try:
            payload = json.loads(Path(path).read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a lightning_nas latency predictor (JSON expected, "
                             "e.g. a file saved by LatencyPredictor.save)") from error
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a lightning_nas latency predictor ({_FORMAT})")
        try:
            return cls._from_payload(payload, str(path))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: malformed latency predictor: {error!r}") from error

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], source: str) -> LatencyPredictor:
        predictor = cls(str(payload["kind"]), str(payload["regressor_name"]), seed=int(payload["seed"]))
        if payload["table"] is not None:
            predictor.table = LookupTable(source=source, **payload["table"])
        predictor.feature_names = [str(name) for name in payload["feature_names"]]
        predictor.regressor = None if payload["regressor"] is None else from_dict(payload["regressor"])
        slope, intercept = payload["calibration"]
        predictor.calibration = (float(slope), float(intercept))
        predictor.fallback = {str(k): (float(a), float(b)) for k, (a, b) in dict(payload["fallback"]).items()}
        return predictor

    def __repr__(self) -> str:
        return f"LatencyPredictor(kind={self.kind!r}, regressor={self.regressor_name!r}, fitted={self.fitted})"


@register_hardware("predicted")
class PredictedLatencyTarget(HardwareTarget):
    """Latency from a saved :class:`~lightning_nas.hardware.predictor.LatencyPredictor` instead of
    a measurement (the p90 equals the prediction). Fit the predictor on the same search space and
    input shape as the search: its features depend on both.

    Args:
        predictor_path: a file written by ``LatencyPredictor.save``.

    Example:
        >>> PredictedLatencyTarget("latency.json").measure_candidate(space, arch)  # doctest: +SKIP
        {'hw/latency_ms': 2.4, 'hw/latency_p90_ms': 2.4}
    """

    name = "predicted"

    def __init__(self, predictor_path: str) -> None:
        if not isinstance(predictor_path, str | Path) or not Path(predictor_path).is_file():
            raise ValueError(f"hardware.predictor_path: {predictor_path!r} does not exist")
        try:
            self.predictor = LatencyPredictor.load(predictor_path)
        except (ValueError, KeyError, EOFError) as error:
            raise ValueError(f"hardware.predictor_path: {error}") from error
        self.predictor_path = str(predictor_path)

    def measure_candidate(
        self, space: SearchSpace, arch: Architecture, model: nn.Module | None = None
    ) -> dict[str, float]:
        value = float(self.predictor.predict(space, [arch])[0])
        return {"hw/latency_ms": value, "hw/latency_p90_ms": value}

    def measure(self, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
        value = self.predictor.predict_model(model, input_shape)
        return {"hw/latency_ms": value, "hw/latency_p90_ms": value}

    def __repr__(self) -> str:
        return f"PredictedLatencyTarget(predictor_path={self.predictor_path!r})"
