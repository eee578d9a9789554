"""Append-only, crash-safe search history (``history.jsonl``)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_nas.arch import Architecture, EvalResult

__all__ = ["HEADER_FORMAT", "History", "Record", "is_header"]

HEADER_FORMAT = "lightning_nas.history/1"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One evaluated candidate as stored in the history."""

    index: int
    arch: Architecture
    result: EvalResult
    timestamp: float
    extra: dict[str, Any]

    def to_json(self) -> str:
        payload = {
            "index": self.index,
            "arch_id": self.arch.digest(),
            "arch": self.arch.to_dict(),
            **self.result.to_dict(),
            "timestamp": self.timestamp,
            **({"extra": self.extra} if self.extra else {}),
        }
        return json.dumps(payload, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> Record:
        data = json.loads(line)
        return cls(
            index=int(data["index"]),
            arch=Architecture(data["arch"]),
            result=EvalResult.from_dict(data),
            timestamp=float(data.get("timestamp", 0.0)),
            extra=dict(data.get("extra", {})),
        )


def is_header(data: object) -> bool:
    """Whether a parsed ``history.jsonl`` line is the header (``{"format": ..., "fingerprint": ...}``)."""
    return isinstance(data, dict) and data.get("format") == HEADER_FORMAT and "index" not in data


class History:
    """Evaluations in order, mirrored line by line to ``path`` as soon as each finishes.

    Every append is flushed and fsynced, so a killed search loses at most the candidate
    that was running. Opening an existing file loads it (a torn last line is dropped).
    The file may start with a header line, ``{"format": HEADER_FORMAT, "fingerprint": {...}}``,
    naming the settings its records depend on (see :mod:`lightning_nas.results.fingerprint`).

    Args:
        path: the ``history.jsonl`` file, or None to keep the history in memory only.
        fingerprint: written as the header when the file is started (a file that exists keeps its own).
    """

    def __init__(self, path: str | Path | None = None, fingerprint: dict[str, Any] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[Record] = []
        self.fingerprint: dict[str, Any] | None = None
        if self.path is not None and self.path.exists():
            self._load(self.path)
        if self.path is not None and fingerprint is not None and not self._started():
            self._write_line(json.dumps({"format": HEADER_FORMAT, "fingerprint": fingerprint}, sort_keys=True))
            self.fingerprint = fingerprint

    def _started(self) -> bool:
        return self.path is not None and self.path.exists() and self.path.stat().st_size > 0

    def _write_line(self, line: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        valid_end = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                log.warning("dropping a torn last line of %s (the run was killed mid-write)", path)
                break
            try:
                if valid_end == 0 and is_header(data := json.loads(line)):
                    self.fingerprint = dict(data.get("fingerprint") or {})
                else:
                    self.records.append(Record.from_json(line.decode()))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}: line {len(self.records) + 1} is not a history record: {error}") from error
            valid_end += len(line)
        if valid_end != len(raw):
            with path.open("r+b") as handle:
                handle.truncate(valid_end)

    def append(self, arch: Architecture, result: EvalResult, **extra: Any) -> Record:
        record = Record(len(self.records), arch, result, time.time(), dict(extra))
        self.records.append(record)
        if self.path is not None:
            self._write_line(record.to_json())
        return record

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def successful(self) -> list[Record]:
        return [r for r in self.records if r.result.ok]
