"""``TabularEvaluator``: score a candidate by looking it up in a pre-computed benchmark table.

Table format
------------
A CSV file with a header row, or a JSON file; one row per architecture.

* The architecture column (``arch_column``, default ``"arch"``) holds the architecture key
  string. ``key="auto"`` (the default) reads JSON keys or NAS-Bench-201 strings, whichever the
  table holds. With ``key="json"`` this is ``arch.to_json()``; any JSON object with the
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
* **Fidelities.** A column ``<name>@<epochs>`` is column ``<name>`` after ``<epochs>`` of training
  (``val_acc@12``, ``val_acc@200``, ``test_acc@200``); ``train_time_s@<epochs>`` is the cumulative
  cost of training that far. :meth:`TabularEvaluator.evaluate` reads the row at ``fidelity``
  (default: the highest), :meth:`TabularEvaluator.evaluate_at` at any tabulated fidelity
  (Hyperband, ASHA and BOHB rungs; continuing from a lower fidelity costs only the difference),
  and :meth:`TabularEvaluator.test` at the highest. Plain columns hold at every fidelity.
* JSON: either an object ``{"<arch key>": {"val_acc": 0.9, ...}, ...}`` or a list of rows
  ``[{"arch": <key string or architecture object>, "val_acc": 0.9, ...}, ...]``.

``evaluate`` never reports ``test/*`` metrics (the search must not see the test split);
``test`` reports every metric of the row. An architecture missing from the table raises
:class:`ArchitectureNotInTable` (a ``KeyError`` naming the architecture): a table that does not
cover the space is a configuration error, not a bad candidate, and it stops the search.

Shipped tables (:data:`SHIPPED_TABLES`) are found by name: ``table=nb201_synthetic`` is a synthetic
NAS-Bench-201-style table with fidelities over the ``nb201`` space (``benchmarks/make_nb201_table.py``).

Example:
    >>> evaluator = TabularEvaluator("nb_table.csv")  # doctest: +SKIP
    >>> evaluator.evaluate(space, arch).metrics["search/val_acc"]  # doctest: +SKIP
    0.913
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator, EvaluatorConfigError
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "COLUMN_METRICS",
    "SHIPPED_TABLES",
    "TABLE_KEYS",
    "ArchitectureNotInTable",
    "FidelityNotInTable",
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
_FIDELITY = re.compile(r"^(?P<name>.+)@(?P<fidelity>\d+)$")

SHIPPED_TABLES: dict[str, Path] = {"nb201_synthetic": Path(__file__).parent / "tables" / "nb201_synthetic.csv.gz"}
"""Tables installed with the package, usable by name as ``TabularEvaluator(table=<name>)``."""


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


class ArchitectureNotInTable(KeyError, EvaluatorConfigError):
    """The table has no row for an architecture; ``arch_json`` and ``key`` name it."""

    def __init__(self, arch: Architecture, key: str, table: str) -> None:
        self.arch_json = arch.to_json()
        self.key = key
        super().__init__(f"evaluator.table: architecture {self.arch_json} (key {key!r}) is not in the table "
                         f"{table}: the table does not cover the search space (check evaluator.key and search_space)")

    def __str__(self) -> str:
        return str(self.args[0])


class FidelityNotInTable(ValueError, EvaluatorConfigError):
    """A fidelity (epochs) was asked that the table has no columns for."""


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


def _read_text(path: Path) -> str:
    """The file's text, gunzipped when its name ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        with gzip.open(path, "rt", newline="") as handle:
            return handle.read()
    return path.read_text()


def _read_rows(path: Path, arch_column: str) -> list[tuple[Any, dict[str, Any]]]:
    """``(key, {column: value})`` for every row of a CSV or JSON table (optionally gzipped)."""
    kind = path.suffixes[-2].lower() if path.suffix.lower() == ".gz" and len(path.suffixes) > 1 else path.suffix.lower()
    if kind == ".json":
        data = json.loads(_read_text(path))
        if isinstance(data, dict):
            return [(k, dict(v)) for k, v in data.items()]
        if isinstance(data, list):
            rows = [dict(row) for row in data]
            return [(row.pop(arch_column), row) for row in rows]
        raise ValueError(f"{path}: a JSON table must be an object or a list of rows")
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if reader.fieldnames is None or arch_column not in reader.fieldnames:
        raise ValueError(f"{path}: the CSV header must have an {arch_column!r} column")
    return [(row.pop(arch_column), dict(row)) for row in reader]


def resolve_table(table: str | Path) -> Path:
    """``table`` as a path: an existing file, else the shipped table of that name."""
    path = Path(table)
    if not path.exists() and str(table) in SHIPPED_TABLES:
        return SHIPPED_TABLES[str(table)]
    return path


def detect_key(keys: list[str]) -> str:
    """``"json"`` or ``"nb201"``: the notation of a table's (canonical) keys."""
    first = keys[0].lstrip() if keys else ""
    if first.startswith("{"):
        return "json"
    if first.startswith("|"):
        return "nb201"
    raise ValueError(f"evaluator.key: cannot tell the notation of table keys such as {first[:60]!r}; "
                     f"set evaluator.key to one of {sorted(TABLE_KEYS)}")


def split_fidelity(column: str) -> tuple[str, int | None]:
    """``"val_acc@12"`` -> ``("val_acc", 12)``; a plain column -> ``(column, None)``."""
    match = _FIDELITY.match(column)
    return (match["name"], int(match["fidelity"])) if match else (column, None)


def load_table(path: str | Path, arch_column: str = "arch") -> dict[str, dict[str, float]]:
    """Read a table into ``{canonical key: {column: value}}``.

    Args:
        path: the CSV or JSON file.
        arch_column: the column holding the architecture key.
    """
    path = resolve_table(path)
    table: dict[str, dict[str, float]] = {}
    for key, row in _read_rows(path, arch_column):
        where = f"{path}: row {key!r}"
        table[_canonical(key)] = {str(c): _number(v, str(c), where) for c, v in row.items()}
    return table


class TabularEvaluator(Evaluator):
    """Scores an architecture by lookup in a user-supplied table (see the module docstring).

    Args:
        table: path of the CSV or JSON table (optionally gzipped), or a :data:`SHIPPED_TABLES` name.
        metric: the column reported as ``search/val_acc`` (the search score).
        key: a name in :data:`TABLE_KEYS` (``"json"``: ``arch.to_json()``; ``"nb201"``: the
            NAS-Bench-201 string), ``"auto"`` (whichever of the two the table holds) or a callable
            ``(space, arch) -> str`` giving an architecture's key in the table.
        arch_column: the column holding the architecture key.
        device: if given, the ``latency_<device>_ms`` column is also reported as ``hw/latency_ms``.
        fidelity: the epochs :meth:`evaluate` reads (``<column>@<fidelity>``); default the highest
            the table has (none for a table without fidelities).

    Example:
        >>> evaluator = TabularEvaluator("nb201_synthetic", fidelity=12)
        >>> evaluator.fidelities
        [4, 12, 36, 108, 200]
    """

    test_source = "looked up in the table"
    test_action = "looking up the test metrics of the best architecture {arch} in the table"

    def __init__(
        self,
        table: str,
        metric: str = "val_acc",
        key: str | KeyFn = "auto",
        arch_column: str = "arch",
        device: str | None = None,
        fidelity: int | None = None,
    ) -> None:
        if isinstance(key, str) and key not in {*TABLE_KEYS, "auto"}:
            raise ValueError(f"evaluator.key must be 'auto', one of {sorted(TABLE_KEYS)} or a callable, got {key!r}")
        self.table_path = str(resolve_table(table))
        self.metric = metric
        self.device = device
        self.rows = load_table(table, arch_column)
        if not self.rows:
            raise ValueError(f"evaluator.table {table} has no rows")
        columns = set().union(*(row.keys() for row in self.rows.values()))
        self.fidelities: list[int] = sorted({f for c in columns if (f := split_fidelity(c)[1]) is not None})
        if fidelity is not None and fidelity not in self.fidelities:
            raise ValueError(f"evaluator.fidelity {fidelity!r} is not in the table; fidelities: {self.fidelities}")
        self.fidelity = fidelity if fidelity is not None else (self.fidelities[-1] if self.fidelities else None)
        plain = {split_fidelity(c)[0] for c in columns if split_fidelity(c)[1] in (None, self.fidelity)}
        for needed in [metric] + ([f"latency_{device}_ms"] if device else []):
            if needed not in plain:
                raise ValueError(f"evaluator.table {table} has no column {needed!r}; columns: {sorted(columns)}")
        self.key_fn: KeyFn = key if callable(key) else TABLE_KEYS[detect_key(list(self.rows)) if key == "auto" else key]

    def __len__(self) -> int:
        return len(self.rows)

    def mean_cost_s(self, fidelity: int | None = None) -> float:
        """Mean ``train_time_s`` over the rows at ``fidelity`` (default :attr:`fidelity`); 0 without that column."""
        at = self.fidelity if fidelity is None else fidelity
        costs = [self._at(row, at).get("train_time_s", math.nan) for row in self.rows.values()]
        finite = [c for c in costs if math.isfinite(c)]
        return sum(finite) / len(finite) if finite else 0.0

    def _row(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        key = _canonical(self.key_fn(space, arch))
        row = self.rows.get(key)
        if row is None:
            raise ArchitectureNotInTable(arch, key, self.table_path)
        return row

    def _at(self, row: dict[str, float], fidelity: int | None) -> dict[str, float]:
        """The row seen at ``fidelity``: plain columns, overridden by their ``@fidelity`` columns."""
        view = {c: v for c, v in row.items() if "@" not in c}
        for column, value in row.items():
            name, at = split_fidelity(column)
            if at is not None and at == fidelity:
                view[name] = value
        return view

    def lookup(self, space: SearchSpace, arch: Architecture, fidelity: int | None = None) -> dict[str, float]:
        """Every metric of ``arch``'s row at ``fidelity`` (default :attr:`fidelity`; ``test/*`` included).

        Raises:
            ArchitectureNotInTable: the table has no row for ``arch``.
        """
        row = self._at(self._row(space, arch), self.fidelity if fidelity is None else fidelity)
        metrics = {column_metric(column): value for column, value in row.items()}
        metrics["search/val_acc"] = row.get(self.metric, math.nan)
        if self.device is not None:
            metrics["hw/latency_ms"] = row[f"latency_{self.device}_ms"]
        return metrics

    def _result(self, metrics: dict[str, float], duration: float, fidelity: int | None) -> EvalResult:
        metrics = {k: v for k, v in metrics.items() if not k.startswith("test/")}
        duration = duration if math.isfinite(duration) else 0.0
        if not math.isfinite(metrics["search/val_acc"]):
            where = self.metric if fidelity is None else f"{self.metric}@{fidelity}"
            return EvalResult.failed(f"the table has no {where!r} for this architecture", metrics, duration)
        return EvalResult("ok", metrics, duration_s=duration)

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """The row's metrics at :attr:`fidelity` without ``test/*``; failed when the score is missing or NaN.

        Its ``duration_s`` is the table's ``train_time_s`` (the simulated cost; 0 without that column).
        """
        metrics = self.lookup(space, arch)
        return self._result(metrics, metrics.get("train/time_s", 0.0), self.fidelity)

    def evaluate_at(
        self, space: SearchSpace, arch: Architecture, epochs: int, resume_from: Any | None = None
    ) -> tuple[EvalResult, Any]:
        """The result at fidelity ``epochs`` and the state to continue from (that fidelity).

        Continuing from a lower fidelity (``resume_from``, a state returned earlier) costs the
        difference of the cumulative ``train_time_s``; starting afresh costs all of it.

        Raises:
            FidelityNotInTable: ``epochs`` is not a fidelity of the table.
        """
        if epochs not in self.fidelities:
            raise FidelityNotInTable(f"evaluator.table {self.table_path} has no fidelity {epochs} (columns "
                                     f"<name>@<epochs> for epochs in {self.fidelities}); choose the strategy's "
                                     "min_epochs, max_epochs and eta so that every rung is one of them")
        metrics = self.lookup(space, arch, epochs)
        cost = metrics.get("train/time_s", 0.0)
        if isinstance(resume_from, int) and resume_from in self.fidelities and resume_from < epochs:
            cost -= self.lookup(space, arch, resume_from).get("train/time_s", 0.0)
        metrics["train/epochs_budget"] = float(epochs)
        return self._result(metrics, cost, epochs), epochs

    def test(self, space: SearchSpace, arch: Architecture) -> dict[str, float]:
        """Every metric of the row at the highest fidelity, ``test/acc`` included."""
        return self.lookup(space, arch, self.fidelities[-1] if self.fidelities else None)
