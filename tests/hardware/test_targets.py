"""Hardware targets: eager CPU, ExecuTorch/XNNPACK, per-layer lookup tables, the evaluator wrapper."""

from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.hardware import HardwareEvaluator
from lightning_nas.hardware.base import HARDWARE, HardwareTarget
from lightning_nas.hardware.lookup_table import (
    LookupTable,
    MissingEntryError,
    build_lookup_table,
    layer_calls,
    layer_signature,
)
from lightning_nas.hardware.predictor import PredictedLatencyTarget
from lightning_nas.hardware.targets import CpuTarget, LookupTableTarget, XnnpackTarget
from lightning_nas.spaces.base import SearchSpace

SHAPE = (1, 8, 8)
# The hand-made table for tiny(): every non-free leaf call, with the shapes it sees.
TINY_TABLE = {
    "Conv2d(cin=1,cout=4,k=3,s=1,g=1,h=8,w=8)": 0.125,
    "BatchNorm2d(c=4,h=8,w=8)": 0.0625,
    "ReLU(c=4,h=8,w=8)": 0.03125,
    "Conv2d(cin=4,cout=4,k=3,s=2,g=4,h=8,w=8)": 0.25,
    "AdaptiveAvgPool2d(c=4,h=4,w=4,oh=1,ow=1)": 0.015625,
    "Linear(cin=4,cout=3)": 0.5,
}


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )


def _positive_finite(metrics: dict[str, float], *keys: str) -> None:
    for key in keys:
        assert math.isfinite(metrics[key]) and metrics[key] > 0, (key, metrics)


def test_registry_names_every_target() -> None:
    assert {"cpu", "xnnpack", "lookup_table", "predicted"} <= set(HARDWARE.names())
    assert HARDWARE.get("predicted") is PredictedLatencyTarget
    assert all(issubclass(HARDWARE.get(name), HardwareTarget) for name in HARDWARE.names())


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_cpu_target_reports_positive_latency_and_memory(clock: str) -> None:
    model = tiny().train()
    metrics = CpuTarget(threads=1, repeats=5, warmup=1, clock=clock).measure(model, SHAPE)
    _positive_finite(metrics, "hw/latency_ms", "hw/latency_p90_ms", "hw/memory_mb")
    assert metrics["hw/latency_p90_ms"] >= metrics["hw/latency_ms"]
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_xnnpack_target_times_the_exported_program(clock: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        metrics = XnnpackTarget(threads=1, repeats=5, warmup=1, clock=clock).measure(tiny(), SHAPE)
    _positive_finite(metrics, "hw/latency_ms", "hw/latency_p90_ms", "hw/memory_mb")
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("lightning_nas.export")]
    assert logging.getLogger("lightning_nas.export").level == logging.NOTSET  # restored


def test_a_reference_timed_in_turn_scales_each_candidate_to_its_quiet_figure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_nas.export import profiler

    target = XnnpackTarget(threads=1, repeats=5, warmup=1, clock="cpu", reference="two_conv_cnn")
    with pytest.raises(RuntimeError, match=r"hardware\.reference='two_conv_cnn' needs calibrate"):
        target.measure(tiny(), SHAPE)
    quiet = target.calibrate(tiny(), SHAPE)
    assert quiet > 0 and target.reference == "two_conv_cnn"
    metrics = target.measure(tiny(), SHAPE)  # the reference itself, timed in turn with itself
    _positive_finite(metrics, "hw/latency_ms", "hw/latency_unscaled_ms", "hw/reference_ms", "hw/memory_mb")
    assert metrics["hw/latency_ms"] == pytest.approx(metrics["hw/latency_unscaled_ms"] * quiet
                                                     / metrics["hw/reference_ms"])
    # the machine got busy: everything reads 1.5x; the candidate is 2x the reference however busy
    monkeypatch.setattr(profiler, "time_in_turn", lambda paths, *args, **kwargs: [
        [3.0 * quiet] * 5, [1.5 * quiet] * 5])
    busy = pickle.loads(pickle.dumps(target)).measure(tiny(), SHAPE)  # a worker process gets the calibration
    assert busy["hw/latency_ms"] == pytest.approx(2.0 * quiet)
    assert busy["hw/latency_unscaled_ms"] == pytest.approx(3.0 * quiet)
    assert busy["hw/reference_ms"] == pytest.approx(1.5 * quiet)
    with pytest.raises(ValueError, match=r"hardware\.reference is null"):
        XnnpackTarget().calibrate(tiny(), SHAPE)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: CpuTarget(threads=0), r"hardware\.threads"),
        (lambda: CpuTarget(repeats=0), r"hardware\.repeats"),
        (lambda: CpuTarget(clock="gpu"), r"hardware\.clock"),
        (lambda: CpuTarget(threads=2, clock="cpu"), r"hardware\.threads=1"),
        (lambda: XnnpackTarget(warmup=-1), r"hardware\.warmup"),
        (lambda: XnnpackTarget(quantize="yes"), r"hardware\.quantize"),
        (lambda: XnnpackTarget(clock="gpu"), r"hardware\.clock"),
        (lambda: XnnpackTarget(threads=2, clock="cpu"), r"hardware\.threads=1"),
        (lambda: XnnpackTarget(reference=""), r"hardware\.reference must name a baseline network or be null"),
        (lambda: LookupTableTarget("no/such/table.json"), r"hardware\.table"),
    ],
)
def test_bad_arguments_name_the_key(build, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        build()


def test_lookup_table_args_are_checked(tmp_path: Path) -> None:
    path = LookupTable(TINY_TABLE).save(tmp_path / "t.json")
    with pytest.raises(ValueError, match=r"hardware\.fallback"):
        LookupTableTarget(str(path), fallback="gpu")
    with pytest.raises(ValueError, match=r"hardware\.scale"):
        LookupTableTarget(str(path), fallback="cpu", scale=0.0)
    (tmp_path / "bad.json").write_text(json.dumps({"entries": {"ReLU(n=3)": -1.0}}))
    with pytest.raises(ValueError, match=r"hardware\.table"):
        LookupTableTarget(str(tmp_path / "bad.json"))


def test_signatures_follow_the_documented_format() -> None:
    conv = nn.Conv2d(16, 24, 3, stride=2, padding=1)
    assert layer_signature(conv, (16, 14, 14)) == "Conv2d(cin=16,cout=24,k=3,s=2,g=1,h=14,w=14)"
    assert layer_signature(nn.Conv2d(8, 8, (1, 3), padding=0), (8, 5, 5)).endswith("k=1x3,s=1,g=1,h=5,w=5,p=0)")
    assert layer_signature(nn.Linear(240, 10), (240,)) == "Linear(cin=240,cout=10)"
    assert [c.signature for c in layer_calls(tiny(), SHAPE)] == [  # Dropout and Flatten are free
        "Conv2d(cin=1,cout=4,k=3,s=1,g=1,h=8,w=8)", "BatchNorm2d(c=4,h=8,w=8)", "ReLU(c=4,h=8,w=8)",
        "Conv2d(cin=4,cout=4,k=3,s=2,g=4,h=8,w=8)", "ReLU(c=4,h=4,w=4)",
        "AdaptiveAvgPool2d(c=4,h=4,w=4,oh=1,ow=1)", "Linear(cin=4,cout=3)",
    ]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_lookup_table_target_sums_the_entries_exactly(tmp_path: Path, suffix: str) -> None:
    entries = {**TINY_TABLE, "ReLU(c=4,h=4,w=4)": 0.0078125}
    path = LookupTable(entries, device="phone").save(tmp_path / f"phone{suffix}")
    metrics = LookupTableTarget(str(path)).measure(tiny(), SHAPE)
    assert metrics["hw/latency_ms"] == sum(entries.values())  # binary fractions: exact
    assert metrics["hw/latency_p90_ms"] == metrics["hw/latency_ms"]
    assert LookupTable.load(path).entries == entries


def test_missing_entry_names_the_signature_or_falls_back_to_cpu(tmp_path: Path) -> None:
    path = LookupTable(TINY_TABLE).save(tmp_path / "partial.json")  # lacks ReLU(c=4,h=4,w=4)
    with pytest.raises(MissingEntryError, match=r"ReLU\(c=4,h=4,w=4\)"):
        LookupTableTarget(str(path)).measure(tiny(), SHAPE)
    scaled = LookupTableTarget(str(path), fallback="cpu", scale=1000.0).measure(tiny(), SHAPE)
    assert scaled["hw/latency_ms"] > sum(TINY_TABLE.values())  # the ReLU timed on the CPU, x1000


def test_bare_json_mapping_is_a_table(tmp_path: Path) -> None:
    (tmp_path / "bare.json").write_text(json.dumps({"Linear(cin=4,cout=3)": 0.5}))
    metrics = LookupTableTarget(str(tmp_path / "bare.json")).measure(nn.Linear(4, 3), (4,))
    assert metrics["hw/latency_ms"] == 0.5


def test_build_lookup_table_measures_each_signature_once(tmp_path: Path) -> None:
    models = [tiny(), tiny()]
    table = build_lookup_table(models, SHAPE, CpuTarget(repeats=3, warmup=1), device="this-cpu")
    assert set(table.entries) == {c.signature for c in layer_calls(models[0], SHAPE)}
    assert all(v > 0 and math.isfinite(v) for v in table.entries.values())
    path = table.save(tmp_path / "cpu.json")
    assert json.loads(path.read_text())["device"] == "this-cpu"
    total = LookupTableTarget(str(path)).measure(models[1], SHAPE)["hw/latency_ms"]
    assert total == pytest.approx(sum(table.entries[c.signature] for c in layer_calls(models[1], SHAPE)))


class _Fixed(Evaluator):
    def __init__(self, result: EvalResult) -> None:
        self.result = result

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        return self.result

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        return {"test/acc": 0.5, "hw/latency_ms": -1.0}


class _Broken(HardwareTarget):
    name = "broken"

    def measure(self, model: nn.Module, input_shape: object) -> dict[str, float]:
        raise RuntimeError("no device")


def test_hardware_evaluator_replaces_hw_metrics(toy_space: SearchSpace) -> None:
    arch = toy_space.sample(np.random.default_rng(0))
    inner = _Fixed(EvalResult("ok", {"search/val_acc": 0.9, "hw/latency_ms": -1.0}))
    result = HardwareEvaluator(inner, CpuTarget(repeats=3, warmup=1)).evaluate(toy_space, arch)
    assert result.ok and result.metrics["search/val_acc"] == 0.9
    _positive_finite(result.metrics, "hw/latency_ms", "hw/memory_mb")
    tested = HardwareEvaluator(inner, CpuTarget(repeats=3, warmup=1)).test(toy_space, arch)
    assert tested["test/acc"] == 0.5 and tested["hw/latency_ms"] > 0
    broken = HardwareEvaluator(inner, _Broken()).evaluate(toy_space, arch)
    assert not broken.ok and "hardware.broken" in (broken.error or "") and broken.metrics["search/val_acc"] == 0.9
    failed = EvalResult.failed("diverged")
    assert HardwareEvaluator(_Fixed(failed), _Broken()).evaluate(toy_space, arch) is failed
