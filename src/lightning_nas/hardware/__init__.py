"""Hardware-facing model metrics and targets: size, MACs, latency (measured, tabulated, predicted), memory."""

from lightning_nas.hardware.base import HARDWARE, HardwareTarget, register_hardware
from lightning_nas.hardware.lookup_table import (
    LayerCall,
    LookupTable,
    MissingEntryError,
    build_lookup_table,
    layer_calls,
    layer_signature,
)
from lightning_nas.hardware.predictor import LatencyPredictor, PredictedLatencyTarget
from lightning_nas.hardware.profile import (
    LatencyStats,
    count_macs,
    count_params,
    iter_profile,
    measure_latency,
    peak_activation_memory,
    profile_model,
)
from lightning_nas.hardware.targets import CpuTarget, LookupTableTarget, XnnpackTarget

__all__ = [
    "HARDWARE",
    "CpuTarget",
    "HardwareTarget",
    "LatencyPredictor",
    "LatencyStats",
    "LayerCall",
    "LookupTable",
    "LookupTableTarget",
    "MissingEntryError",
    "PredictedLatencyTarget",
    "XnnpackTarget",
    "build_lookup_table",
    "count_macs",
    "count_params",
    "iter_profile",
    "layer_calls",
    "layer_signature",
    "measure_latency",
    "peak_activation_memory",
    "profile_model",
    "register_hardware",
]
