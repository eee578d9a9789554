"""``python -m lightning_nas.report <multirun folder>``: the thin CLI over :mod:`lightning_nas.results.multirun`."""

from lightning_nas.results.multirun import (
    COLUMNS,
    JobStatus,
    RunResult,
    format_jobs,
    format_table,
    job_statuses,
    load_runs,
    plot_report,
    summarize,
    write_report,
)

__all__ = ["COLUMNS", "JobStatus", "RunResult", "format_jobs", "format_table", "job_statuses", "load_runs",
           "plot_report", "summarize", "write_report"]
