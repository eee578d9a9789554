"""ExecuTorch export for ARM phones (``.pte`` export, checks, profiling, deploy packages) and code generation."""

from lightning_nas.export.batch import ExportOutcome, export_many
from lightning_nas.export.codegen import UnsupportedModuleError, generate_package
from lightning_nas.export.deploy import write_deploy_package
from lightning_nas.export.exporter import STAGES, ExportError, ExportReport, export_model
from lightning_nas.export.profiler import OpTiming, PteProfile, planned_memory_bytes, profile_pte, runtime_threads

__all__ = [
    "STAGES",
    "ExportError",
    "ExportOutcome",
    "ExportReport",
    "OpTiming",
    "PteProfile",
    "UnsupportedModuleError",
    "export_many",
    "export_model",
    "generate_package",
    "planned_memory_bytes",
    "profile_pte",
    "runtime_threads",
    "write_deploy_package",
]
