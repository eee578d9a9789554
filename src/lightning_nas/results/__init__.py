"""Search history store, the run's final model, reports and plots.

``History`` and ``Record`` are loaded on first use, so a report module (e.g. :mod:`.multirun`,
:mod:`.final_model`) imports without pulling in the evaluators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_nas.results.history import History, Record

__all__ = ["History", "Record"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lightning_nas.results import history

        return getattr(history, name)
    raise AttributeError(f"module 'lightning_nas.results' has no attribute {name!r}")
