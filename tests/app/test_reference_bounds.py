"""The app resolves a constraint bound that names a baseline network before the search."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from lightning_nas.baselines import build_baseline
from lightning_nas.config import ConfigError, register_configs
from lightning_nas.evaluators.train import TrainEvaluator
from lightning_nas.hardware.profile import count_params
from lightning_nas.hardware.targets import CpuTarget, XnnpackTarget
from lightning_nas.run import check

TINY = ["data.max_train_samples=160", "data.max_val_samples=80", "data.max_test_samples=80", "logger=none",
        "progress=false", "evaluator.latency_repeats=2", "experiment=multi_objective", "hardware.repeats=3"]


def _cfg(tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_module(config_module="lightning_nas.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, f"output_dir={tmp_path}", *overrides])


def test_a_bound_naming_a_baseline_becomes_its_scaled_measured_figure(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "objective.constraints.max_params='0.5x two_conv_cnn'",
               "objective.constraints.max_latency=two_conv_cnn")
    datamodule, _space, _method, evaluator, objective = check(cfg, None)
    params = count_params(build_baseline("two_conv_cnn", datamodule.input_shape, datamodule.num_classes))
    bounds = {c.key: c.bound for c in objective.constraints}
    assert bounds["model/params"] == pytest.approx(0.5 * params)
    assert bounds["hw/latency_ms"] > 0  # measured by the hardware target, like a candidate's latency
    assert isinstance(evaluator, TrainEvaluator) and isinstance(evaluator.hardware, CpuTarget)  # before training
    assert cfg.objective.constraints.max_params == "0.5x two_conv_cnn"  # the config (and its fingerprint) as given


def test_an_unknown_network_in_a_bound_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^objective\.constraints\.max_latency: 'vgg16' is neither a quantity nor a "
                                          r"known network \(mobilenet_v3_small, resnet_small, two_conv_cnn\)$"):
        check(_cfg(tmp_path, "objective.constraints.max_latency=vgg16"), None)


def test_a_hardware_reference_is_timed_alone_before_the_bound_that_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, "hardware=xnnpack", "hardware.clock=cpu", "hardware.reference=two_conv_cnn",
               "objective.constraints.max_latency='0.9x two_conv_cnn'")
    measured: list[object] = []
    monkeypatch.setattr(XnnpackTarget, "measure", lambda self, model, shape: measured.append(model) or {})
    _datamodule, _space, _method, evaluator, objective = check(cfg, None)
    assert isinstance(evaluator, TrainEvaluator) and isinstance(evaluator.hardware, XnnpackTarget)
    quiet = evaluator.hardware.reference_figures()["hw/latency_ms"]  # the figure every candidate's is scaled by
    assert quiet is not None and quiet > 0
    bound = next(c.bound for c in objective.constraints if c.key == "hw/latency_ms")
    assert bound == pytest.approx(0.9 * quiet, rel=1e-12)  # the calibration itself: no second draw
    assert measured == []  # nor a second export
    figures = evaluator.hardware.reference_figures()
    assert figures["hw/latency_ms"] == quiet and figures["hw/memory_mb"] > 0
    with pytest.raises(RuntimeError, match=r"hardware\.reference='two_conv_cnn': calibrate"):
        XnnpackTarget(reference="two_conv_cnn").reference_figures()


def test_an_unknown_hardware_reference_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hardware\.reference must name a baseline \(mobilenet_v3_small, "
                                          r"resnet_small, two_conv_cnn\), got 'vgg16'"):
        check(_cfg(tmp_path, "hardware=xnnpack", "hardware.reference=vgg16"), None)
