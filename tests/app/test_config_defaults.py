"""Config schemas cannot drift from constructors: every dataclass default equals the ``_target_``'s default."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from hydra.utils import get_class
from omegaconf import MISSING

from lightning_nas.config import GROUP_SCHEMAS
from lightning_nas.objectives import MultiObjective, Objective
from lightning_nas.strategies.ensemble import DEFAULT_MEMBERS
from lightning_nas.strategies.nni_tuner import NNITunerStrategy

SCHEMAS = sorted({(group, name, schema) for group, schemas in GROUP_SCHEMAS.items() for name, schema in schemas.items()
                  if any(f.name == "_target_" for f in dataclasses.fields(schema))}, key=lambda t: (t[0], t[1]))


EFFECTIVE: dict[tuple[str, str], Any] = {
    ("ObjectiveConfig", "weights"): lambda: Objective().weights,
    ("MultiObjectiveConfig", "metrics"): lambda: dict(zip(MultiObjective().names, MultiObjective().directions,
                                                          strict=True)),
    ("EnsembleConfig", "members"): lambda: [dict(m) for m in DEFAULT_MEMBERS],
    ("NNITunerConfig", "tuner_kwargs"): lambda: NNITunerStrategy(num_samples=1).tuner_kwargs,
}
"""Constructor defaults of ``None`` that stand for a value the schema spells out: what the constructor makes of None."""


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return MISSING


def _same(schema_value: Any, constructor_value: Any) -> bool:
    """Equal after the conversions Hydra makes (tuples arrive as lists)."""
    if isinstance(constructor_value, tuple):
        constructor_value = list(constructor_value)
    if isinstance(schema_value, list) and isinstance(constructor_value, list):
        return len(schema_value) == len(constructor_value) and all(
            _same(a, b) for a, b in zip(schema_value, constructor_value, strict=True))
    return bool(schema_value == constructor_value)


def drifted(schema: type) -> list[str]:
    """``field: schema default != constructor default`` for every field whose defaults differ."""
    target = get_class(_default(next(f for f in dataclasses.fields(schema) if f.name == "_target_")))
    parameters = inspect.signature(target).parameters
    out = []
    for field in dataclasses.fields(schema):
        parameter = parameters.get(field.name)
        if field.name == "_target_" or parameter is None or parameter.default is inspect.Parameter.empty:
            continue
        value = _default(field)
        expected = EFFECTIVE[(schema.__name__, field.name)]() if (schema.__name__, field.name) in EFFECTIVE \
            else parameter.default
        if value == MISSING or (isinstance(value, str) and value.startswith("${")):
            continue  # a required or interpolated value is set by the config, not defaulted
        if not _same(value, expected):
            out.append(f"{schema.__name__}.{field.name}: {value!r} != {target.__name__}({field.name}="
                       f"{parameter.default!r}) -> {expected!r}")
    return out


@pytest.mark.parametrize(("group", "name", "schema"), SCHEMAS, ids=[f"{g}/{n}" for g, n, _ in SCHEMAS])
def test_schema_defaults_match_the_constructor(group: str, name: str, schema: type) -> None:
    assert not drifted(schema)


def test_drift_is_caught() -> None:
    @dataclasses.dataclass
    class Drifted:
        _target_: str = "lightning_nas.strategies.RandomSearch"
        num_samples: int = 21

    assert drifted(Drifted) == ["Drifted.num_samples: 21 != RandomSearch(num_samples=20) -> 20"]
