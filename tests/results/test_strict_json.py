"""Result files are strict JSON: a missing (NaN) figure is written as null, readable by any parser."""

from __future__ import annotations

import doctest
import json
import math

import pytest

from lightning_nas.results import strict_json


def _refuse_constants(name: str) -> float:
    raise ValueError(f"not strict JSON: {name}")


def test_non_finite_floats_become_null_at_any_depth() -> None:
    payload = {"acc": math.nan, "rows": [{"ms": math.inf, "ok": 1.5}, (-math.inf, 2)], "name": "net", "n": 3}
    text = strict_json.dumps(payload, indent=1)
    assert json.loads(text, parse_constant=_refuse_constants) == {
        "acc": None, "rows": [{"ms": None, "ok": 1.5}, [None, 2]], "name": "net", "n": 3}


def test_plain_json_writes_nan_which_strict_readers_refuse() -> None:
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        json.loads(json.dumps({"acc": math.nan}), parse_constant=_refuse_constants)


def test_doctests() -> None:
    assert doctest.testmod(strict_json).failed == 0
