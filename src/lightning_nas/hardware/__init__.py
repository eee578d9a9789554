"""Hardware-facing model metrics: size, MACs, latency and activation memory."""

from lightning_nas.hardware.profile import (
    LatencyStats,
    count_macs,
    count_params,
    iter_profile,
    measure_latency,
    peak_activation_memory,
    profile_model,
)

__all__ = [
    "LatencyStats",
    "count_macs",
    "count_params",
    "iter_profile",
    "measure_latency",
    "peak_activation_memory",
    "profile_model",
]
