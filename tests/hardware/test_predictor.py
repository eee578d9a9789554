"""Latency predictors rank held-out architectures like the CPU measures them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.arch import Architecture
from lightning_nas.hardware.lookup_table import LookupTable
from lightning_nas.hardware.predictor import LatencyPredictor, PredictedLatencyTarget
from lightning_nas.hardware.targets import CpuTarget
from lightning_nas.spaces import EfficientConvNetSpace
from lightning_nas.spaces.base import SearchSpace

TRAIN, TEST = 40, 20
ROUNDS = 10  # interleaved passes over all architectures; the minimum median resists a busy CPU (5 was not enough on CI)


@pytest.fixture(scope="module")
def measured() -> tuple[SearchSpace, list[Architecture], np.ndarray]:
    """60 distinct efficient_convnet architectures at (1, 16, 16) and their CPU latencies (ms)."""
    space = EfficientConvNetSpace((1, 16, 16), 10)  # resolutions 16/24/32: about 1.4 to 15 ms
    rng = np.random.default_rng(7)
    archs: list[Architecture] = []
    while len(archs) < TRAIN + TEST:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    with torch.random.fork_rng(devices=[]):
        models = [space.build(arch) for arch in archs]
    target = CpuTarget(threads=1, repeats=3, warmup=1, clock="cpu")  # thread CPU time: stable on a shared CPU
    rounds = [[target.latency(model, space.input_shape) for model in models] for _ in range(ROUNDS)]
    return space, archs, np.min(rounds, axis=0)


@pytest.fixture(scope="module")
def fitted(measured: tuple[SearchSpace, list[Architecture], np.ndarray]) -> dict[str, LatencyPredictor]:
    space, archs, latency = measured
    table_target = CpuTarget(threads=1, repeats=20, warmup=2, clock="cpu")
    return {
        "lut": LatencyPredictor("lut", target=table_target).fit(space, archs[:TRAIN], latency[:TRAIN]),
        "learned": LatencyPredictor("learned").fit(space, archs[:TRAIN], latency[:TRAIN]),
        "gbr": LatencyPredictor("learned", "gbr").fit(space, archs[:TRAIN], latency[:TRAIN]),
    }


@pytest.mark.parametrize("name", ["lut", "learned"])
def test_predictor_ranks_held_out_architectures(measured, fitted, name: str) -> None:
    space, archs, latency = measured
    figures = fitted[name].evaluate(space, archs[TRAIN:], latency[TRAIN:])
    assert figures["spearman"] >= 0.9, figures
    assert figures["kendall"] > 0.7 and figures["mape"] < 60 and figures["rmse"] > 0, figures


def test_gradient_boosting_variant_predicts_positive_and_correlates(measured, fitted) -> None:
    space, archs, latency = measured
    predicted = fitted["gbr"].predict(space, archs[TRAIN:])
    assert predicted.shape == (TEST,) and np.all(predicted > 0)
    assert fitted["gbr"].evaluate(space, archs[TRAIN:], latency[TRAIN:])["spearman"] > 0.6


@pytest.mark.parametrize("name", ["lut", "learned", "gbr"])
def test_save_load_round_trip_predicts_identically(measured, fitted, tmp_path: Path, name: str) -> None:
    space, archs, _ = measured
    path = fitted[name].save(tmp_path / f"{name}.json")
    loaded = LatencyPredictor.load(path)
    np.testing.assert_array_equal(loaded.predict(space, archs[TRAIN:]), fitted[name].predict(space, archs[TRAIN:]))


def test_predicted_target_uses_the_saved_predictor(measured, fitted, tmp_path: Path) -> None:
    space, archs, _ = measured
    lut = PredictedLatencyTarget(str(fitted["lut"].save(tmp_path / "lut.json")))
    expected = float(fitted["lut"].predict(space, archs[-1:])[0])
    assert lut.measure_candidate(space, archs[-1]) == {"hw/latency_ms": expected, "hw/latency_p90_ms": expected}
    assert lut.measure(space.build(archs[-1]), space.input_shape)["hw/latency_ms"] == pytest.approx(expected)
    learned = PredictedLatencyTarget(str(fitted["learned"].save(tmp_path / "learned.json")))
    assert learned.measure_candidate(space, archs[0])["hw/latency_ms"] > 0
    with pytest.raises(ValueError, match="decisions"):
        learned.measure(space.build(archs[0]), space.input_shape)
    with pytest.raises(ValueError, match=r"hardware\.predictor_path"):
        PredictedLatencyTarget(str(tmp_path / "missing.json"))


def test_lut_predictor_estimates_signatures_missing_from_its_table(measured, fitted) -> None:
    space, archs, _ = measured
    full = fitted["lut"]
    assert full.table is not None
    half = dict(list(full.table.entries.items())[::2])
    partial = LatencyPredictor("lut", table=LookupTable(half))
    partial.fit(space, archs[:TRAIN], full.predict(space, archs[:TRAIN]))
    predicted = partial.predict(space, archs[TRAIN:])
    assert np.all(np.isfinite(predicted)) and np.all(predicted > 0)


def test_bad_inputs_are_rejected(toy_space: SearchSpace) -> None:
    archs = [toy_space.sample(np.random.default_rng(i)) for i in range(3)]
    with pytest.raises(ValueError, match="kind"):
        LatencyPredictor("oracle")
    with pytest.raises(ValueError, match="regressor"):
        LatencyPredictor("learned", "svm")
    with pytest.raises(ValueError, match="3 latencies"):
        LatencyPredictor().fit(toy_space, archs[:2] * 2, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        LatencyPredictor().fit(toy_space, archs, [1.0, 0.0, 2.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        LatencyPredictor().predict(toy_space, archs)


def test_a_pickled_predictor_file_is_refused_without_running_it(crafted_pickle, tmp_path: Path) -> None:
    path, marker = crafted_pickle
    with pytest.raises(ValueError, match=r"hardware\.predictor_path: .* not a lightning_nas latency predictor"):
        PredictedLatencyTarget(str(path))
    joblib_file = tmp_path / "old.joblib"  # the former format: a plain pickle stream
    joblib_file.write_bytes(pickle.dumps({"format": "lightning_nas.latency_predictor/1", "x": _marker(marker)}))
    with pytest.raises(ValueError, match="not a lightning_nas latency predictor"):
        LatencyPredictor.load(joblib_file)
    assert not marker.exists()


class _Opens:
    """Unpickling this would create ``marker`` (the former joblib format was such a pickle stream)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.marker, "w")


def _marker(marker: Path) -> object:
    return _Opens(str(marker))


def test_saved_predictor_is_plain_json(fitted, tmp_path: Path) -> None:
    path = fitted["gbr"].save(tmp_path / "gbr.json")
    payload = json.loads(path.read_text())
    assert payload["regressor"]["type"] == "trees" and len(payload["regressor"]["trees"]) == 300
