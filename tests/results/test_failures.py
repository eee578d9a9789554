"""A search where every candidate failed ends with one line: the most common reason and how many it hit."""

from __future__ import annotations

import pytest

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.results.failures import SearchFailed, best_or_fail, failure_reason
from lightning_nas.results.history import History


def _failed(*errors: str) -> History:
    history = History()
    for number, error in enumerate(errors):
        history.append(Architecture({"a": number}), EvalResult.failed(error))
    return history


def test_the_most_common_reason_and_its_count_are_named() -> None:
    history = _failed("RuntimeError: CUDA unavailable\n  details", "ValueError: bad", "RuntimeError: CUDA unavailable")
    assert failure_reason(history) == ("RuntimeError: CUDA unavailable", 2)
    with pytest.raises(SearchFailed) as caught:
        best_or_fail(history)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("search: all 3 candidates failed")
    assert "(2 of 3): RuntimeError: CUDA unavailable" in message


def test_a_successful_candidate_is_returned() -> None:
    history = _failed("ValueError: bad")
    history.append(Architecture({"a": 9}), EvalResult("ok", {"search/val_acc": 0.5}))
    assert best_or_fail(history).index == 1
