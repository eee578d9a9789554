"""Search history store, reports and plots."""

from lightning_nas.results.history import History, Record

__all__ = ["History", "Record"]
