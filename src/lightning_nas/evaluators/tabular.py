"""``TabularEvaluator``: score a candidate by looking it up in a pre-computed benchmark table.

Table format
------------
A CSV file with a header row, or a JSON file; one row per architecture.

* The architecture column (``arch_column``, default ``"arch"``) holds the architecture key
  string. With ``key="json"`` (the default) this is ``arch.to_json()``; any JSON object with the
  same labels and values matches (key order and whitespace are canonicalised on load). A custom
  ``key`` (a name registered with :func:`register_table_key`, or a callable
  ``(space, arch) -> str``) lets a table use another notation: ``key="nb201"`` reads
  NAS-Bench-201 strings (``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``) for the ``nb201`` space.
* Every other column is a number. Known short names map to metric names:
  ``val_acc`` -> ``search/val_acc``, ``val_loss`` -> ``search/val_loss``, ``test_acc`` ->
  ``test/acc``, ``test_loss`` -> ``test/loss``, ``params`` -> ``model/params``, ``macs`` ->
  ``model/macs``, ``memory_mb`` -> ``hw/memory_mb``, ``latency_ms`` -> ``hw/latency_ms``,
  ``train_time_s`` -> ``train/time_s``. A per-device latency column ``latency_<device>_ms``
  maps to ``hw/<device>/latency_ms`` (and to ``hw/latency_ms`` when ``device="<device>"`` is
  given). A column already named ``stage/metric`` is kept as is; any other column becomes
  ``table/<column>``. The ``metric`` column is reported as ``search/val_acc`` (the score
  the strategies maximise by default).
* JSON: either an object ``{"<arch key>": {"val_acc": 0.9, ...}, ...}`` or a list of rows
  ``[{"arch": <key string or architecture object>, "val_acc": 0.9, ...}, ...]``.

``evaluate`` never reports ``test/*`` metrics (the search must not see the test split);
``test`` reports every metric of the row. An architecture missing from the table raises
:class:`ArchitectureNotInTable` (a ``KeyError`` naming the architecture): a table that does not
cover the space is a configuration error, not a bad candidate.

Example:
    >>> evaluator = TabularEvaluator("nb_table.csv")  # doctest: +SKIP
    >>> evaluator.evaluate(space, arch).metrics["search/val_acc"]  # doctest: +SKIP
    0.913
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult, Evaluator
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "COLUMN_METRICS",
    "TABLE_KEYS",
    "ArchitectureNotInTable",
    "KeyFn",
    "TabularEvaluator",
    "column_metric",
    "json_key",
    "load_table",
    "nb201_key",
    "register_table_key",
]

KeyFn = Callable[[SearchSpace, Architecture], str]

COLUMN_METRICS: dict[str, str] = {
    "val_acc": "search/val_acc",
    "val_loss": "search/val_loss",
    "test_acc": "test/acc",
    "test_loss": "test/loss",
    "params": "model/params",
    "macs": "model/macs",
    "memory_mb": "hw/memory_mb",
    "latency_ms": "hw/latency_ms",
    "train_time_s": "train/time_s",
}
"""Short table column names and the metric each one is reported as."""

_DEVICE_LATENCY = re.compile(r"^latency_(?P<device>.+)_ms$")


def json_key(space: SearchSpace, arch: Architecture) -> str:
    """The canonical key: ``arch.to_json()`` (sorted labels, no extra whitespace)."""
    return arch.to_json()


def nb201_key(space: SearchSpace, arch: Architecture) -> str:
    """The NAS-Bench-201 string of an ``nb201`` architecture, e.g. ``|nor_conv_3x3~0|+|none~0|none~1|+|...|``."""
    from lightning_nas.spaces.nb201 import nb201_to_string  # imported lazily: spaces import evaluators

    return nb201_to_string(arch)


TABLE_KEYS: dict[str, KeyFn] = {"json": json_key, "nb201": nb201_key}
"""Named key functions usable as ``TabularEvaluator(key=...)``."""


def register_table_key(name: str, fn: KeyFn) -> KeyFn:
    """Register a key function ``(space, arch) -> str`` under ``name`` (e.g. an NB-201 converter).

    Args:
        name: the name passed as ``TabularEvaluator(key=name)``.
        fn: the converter.
    """
    if name in TABLE_KEYS and TABLE_KEYS[name] is not fn:
        raise ValueError(f"table key {name!r} is registered twice")
    TABLE_KEYS[name] = fn
    return fn


def column_metric(column: str) -> str:
    """The metric name a table column is reported as (see the module docstring).

    Args:
        column: the column name.
    """
    if column in COLUMN_METRICS:
        return COLUMN_METRICS[column]
    if "/" in column:
        return column
    match = _DEVICE_LATENCY.match(column)
    if match:
        return f"hw/{match['device']}/latency_ms"
    return f"table/{column}"


class ArchitectureNotInTable(KeyError):
    """The table has no row for an architecture; ``arch_json`` and ``key`` name it."""

    def __init__(self, arch: Architecture, key: str, table: str) -> None:
        self.arch_json = arch.to_json()
        self.key = key
        super().__init__(f"architecture {self.arch_json} (key {key!r}) is not in the table {table}")

    def __str__(self) -> str:
        return str(self.args[0])


def _canonical(key: Any) -> str:
    """A table key as a string; a JSON object (or dict) is re-dumped canonically."""
    if isinstance(key, Mapping):
        return Architecture(key).to_json()
    text = str(key)
    if text.lstrip().startswith("{"):
        try:
            return Architecture.from_json(text).to_json()
        except ValueError:
            return text
    return text


def _number(value: Any, column: str, where: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: column {column!r} must be numeric, got {value!r}") from None


def _read_rows(path: Path, arch_column: str) -> list[tuple[Any, dict[str, Any]]]:
    """``(key, {column: value})`` for every row of a CSV or JSON table."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return [(k, dict(v)) for k, v in data.items()]
        if isinstance(data, list):
            rows = [dict(row) for row in data]
            return [(row.pop(arch_column), row) for row in rows]
        raise ValueError(f"{path}: a JSON table must be an object or a list of rows")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or arch_column not in reader.fieldnames:
            raise ValueError(f"{path}: the CSV header must have an {arch_column!r} column")
        return [(row.pop(arch_column), dict(row)) for row in reader]


def load_table(path: str | Path, arch_column: str = "arch") -> dict[str, dict[str, float]]:
    """Read a table into ``{canonical key: {column: value}}``.

    Args:
        path: the CSV or JSON file.
        arch_column: the column holding the architecture key.
    """
    path = Path(path)
    table: dict[str, dict[str, float]] = {}
    for key, row in _read_rows(path, arch_column):
        where = f"{path}: row {key!r}"
        table[_canonical(key)] = {str(c): _number(v, str(c), where) for c, v in row.items()}
    return table


class TabularEvaluator(Evaluator):
    """Scores an architecture by lookup in a user-supplied table (see the module docstring).

    Args:
        table: path of the CSV or JSON table.
        metric: the column reported as ``search/val_acc`` (the search score).
        key: a name in :data:`TABLE_KEYS` (``"json"``: ``arch.to_json()``; ``"nb201"``: the
            NAS-Bench-201 string) or a callable
            ``(space, arch) -> str`` giving an architecture's key in the table.
        arch_column: the column holding the architecture key.
        device: if given, the ``latency_<device>_ms`` column is also reported as ``hw/latency_ms``.

    Example:
        >>> evaluator = TabularEvaluator("table.csv", metric="val_acc")  # doctest: +SKIP
        >>> evaluator.test(space, arch)["test/acc"]  # doctest: +SKIP
        0.91
    """

    def __init__(
        self,
        table: str,
        metric: str = "val_acc",
        key: str | KeyFn = "json",
        arch_column: str = "arch",
        device: str | None = None,
    ) -> None:
        if isinstance(key, str) and key not in TABLE_KEYS:
            raise ValueError(f"evaluator.key must be one of {sorted(TABLE_KEYS)} or a callable, got {key!r}")
        self.table_path = str(table)
        self.metric = metric
        self.key_fn: KeyFn = TABLE_KEYS[key] if isinstance(key, str) else key
        self.device = device
        self.rows = load_table(table, arch_column)
        if not self.rows:
            raise ValueError(f"evaluator.table {table} has no rows")
        columns = set().union(*(row.keys() for row in self.rows.values()))
        for needed in [metric] + ([f"latency_{device}_ms"] if device else []):
            if needed not in columns:
                raise ValueError(f"evaluator.table {table} has no column {needed!r}; columns: {sorted(columns)}")

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Every metric of ``arch``'s row (``test/*`` included).

        Raises:
            ArchitectureNotInTable: the table has no row for ``arch``.
        """
        key = _canonical(self.key_fn(space, arch))
        row = self.rows.get(key)
        if row is None:
            raise ArchitectureNotInTable(arch, key, self.table_path)
        metrics = {column_metric(column): value for column, value in row.items()}
        metrics["search/val_acc"] = row[self.metric]
        if self.device is not None:
            metrics["hw/latency_ms"] = row[f"latency_{self.device}_ms"]
        return metrics

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """The row's metrics without ``test/*``; failed when the score is missing or NaN."""
        metrics = {k: v for k, v in self.lookup(space, arch).items() if not k.startswith("test/")}
        duration = metrics.get("train/time_s", 0.0)
        duration = duration if math.isfinite(duration) else 0.0
        if not math.isfinite(metrics["search/val_acc"]):
            return EvalResult.failed(f"the table has no {self.metric!r} for this architecture", metrics, duration)
        return EvalResult("ok", metrics, duration_s=duration)

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Every metric of the row, ``test/acc`` included."""
        return self.lookup(space, arch)
