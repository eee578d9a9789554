"""When every candidate failed: one line naming the most common reason and how many candidates it hit."""

from __future__ import annotations

import math
import re
from collections import Counter

from lightning_nas.config import ConfigError
from lightning_nas.objectives.score import ScoreFn, default_score
from lightning_nas.results.history import History, Record
from lightning_nas.search import best_record

__all__ = ["SearchFailed", "best_or_fail", "failure_reason"]


class SearchFailed(ConfigError):
    """No candidate of the search produced a finite score."""


def _normalise(error: str) -> str:
    """An error's first line with numbers, addresses and quoted paths blanked, so equal causes count together."""
    line = (error.strip().splitlines() or ["unknown error"])[0]
    line = re.sub(r"0x[0-9a-fA-F]+", "0x…", line)
    return line[:200]


def failure_reason(history: History) -> tuple[str, int]:
    """``(reason, count)``: the most common first error line among the failed records."""
    reasons = Counter(_normalise(r.result.error or "no score") for r in history if not r.result.ok)
    return reasons.most_common(1)[0] if reasons else ("no candidate was evaluated", 0)


def best_or_fail(history: History, score: ScoreFn = default_score) -> Record:
    """The best record; :class:`SearchFailed` in one line when no candidate scored."""
    if any(math.isfinite(score(r.result)) for r in history):
        return best_record(history, score)
    reason, count = failure_reason(history)
    if count == 0 and len(history):
        reason, count = "no candidate has a finite score", len(history)
    raise SearchFailed(f"search: all {len(history)} candidates failed; most common reason ({count} of "
                       f"{len(history)}): {reason} (history.jsonl in the output_dir holds every error)")
