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

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import EvalResult

__all__ = ["History", "Record"]

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


class History:
    """Evaluations in order, mirrored line by line to ``path`` as soon as each finishes.

    Every append is flushed and fsynced, so a killed search loses at most the candidate
    that was running. Opening an existing file loads it (a torn last line is dropped).

    Args:
        path: the ``history.jsonl`` file, or None to keep the history in memory only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[Record] = []
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        valid_end = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                log.warning("dropping a torn last line of %s (the run was killed mid-write)", path)
                break
            try:
                self.records.append(Record.from_json(line.decode()))
            except (ValueError, KeyError) as error:
                raise ValueError(f"{path}: line {len(self.records) + 1} is not a history record: {error}") from error
            valid_end += len(line)
        if valid_end != len(raw):
            with path.open("r+b") as handle:
                handle.truncate(valid_end)

    def append(self, arch: Architecture, result: EvalResult, **extra: Any) -> Record:
        record = Record(len(self.records), arch, result, time.time(), dict(extra))
        self.records.append(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(record.to_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return record

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def successful(self) -> list[Record]:
        return [r for r in self.records if r.result.ok]
