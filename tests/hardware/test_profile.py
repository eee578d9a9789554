"""Model metrics without training: params, MACs, latency, activation memory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_nas.hardware import (
    count_macs,
    count_params,
    iter_profile,
    measure_latency,
    peak_activation_memory,
    profile_model,
)


def conv_linear() -> nn.Module:
    # conv: 8*3*3*3 + 8 = 224 params; 8 out channels * 8*8 positions * 27 = 13824 MACs
    # linear: 8*10 + 10 = 90 params; 80 MACs (bias adds and pooling are not MACs)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )


def test_count_params_matches_hand_count_and_skips_frozen() -> None:
    model = conv_linear()
    assert count_params(model) == 224 + 90
    model[4].bias.requires_grad_(False)
    assert count_params(model) == 224 + 80


def test_count_macs_matches_hand_count_and_keeps_training_flag() -> None:
    model = conv_linear().train()
    assert count_macs(model, (3, 8, 8)) == 8 * 8 * 8 * 27 + 8 * 10
    assert model.training and all(m.training for m in model.modules())
    # MACs scale with resolution for the conv only
    assert count_macs(model, (3, 4, 4)) == 8 * 4 * 4 * 27 + 8 * 10


def test_latency_is_positive_and_restores_threads() -> None:
    before = torch.get_num_threads()
    stats = measure_latency(conv_linear(), (3, 8, 8), repeats=5, warmup=1, threads=2)
    assert torch.get_num_threads() == before
    values = (stats.median_ms, stats.p90_ms, stats.mean_ms)
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert stats.p90_ms >= stats.median_ms


def test_latency_rejects_bad_arguments_and_restores_threads_on_error() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(conv_linear(), (3, 8, 8), repeats=0)
    before = torch.get_num_threads()

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(Boom(), (3, 8, 8), repeats=2, threads=2)
    assert torch.get_num_threads() == before


def test_peak_activation_memory_matches_hand_computed_live_set() -> None:
    # float32, batch 1. The input x (16 floats = 64 B) is live throughout; Flatten is a view of it.
    # Linear1 -> a (128 B); ReLU -> b (128 B) while a is live: 64 + 128 + 128 = 320
    # Linear2 -> c (256 B) while b is live, a freed:       64 + 128 + 256 = 448  <- peak
    # Linear3 -> d (32 B) while c is live:                 64 + 256 + 32  = 352
    # Weights (thousands of bytes) must not count.
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 64), nn.Linear(64, 8))
    assert peak_activation_memory(model, (1, 4, 4)) == 448


def test_peak_activation_memory_counts_in_place_ops_once() -> None:
    # in-place ReLU writes into a: x + a + c = 64 + 128 + 256 = 448 at Linear2, no extra buffer
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=True), nn.Linear(32, 64), nn.Linear(64, 200))
    # Linear3 -> e (800 B) while c is live: 64 + 256 + 800 = 1120
    assert peak_activation_memory(model, (1, 1, 16)) == 1120


def test_profile_model_names_and_values() -> None:
    model = conv_linear()
    metrics = profile_model(model, (3, 8, 8), latency_repeats=3, latency_threads=1)
    names = {"model/params", "model/macs", "hw/latency_ms", "hw/latency_p90_ms", "hw/memory_mb"}
    assert set(metrics) == names
    assert metrics["model/params"] == 314
    assert metrics["model/macs"] == 13904
    # peak: input (768 B) + conv out (2048 B) + relu out (2048 B)
    assert metrics["hw/memory_mb"] == pytest.approx((768 + 2048 + 2048) / 2**20)
    assert all(isinstance(v, float) and v > 0 for v in metrics.values())


def test_size_only_profile_stops_after_the_size() -> None:
    model = conv_linear()
    assert dict(iter_profile(model, (3, 8, 8), size_only=True)) == {"model/params": 314.0, "model/macs": 13904.0}


def test_profiling_leaves_global_rng_untouched() -> None:
    model = conv_linear()
    state = torch.get_rng_state()
    profile_model(model, (3, 8, 8), latency_repeats=2)
    assert torch.equal(state, torch.get_rng_state())
