"""Check the run folder that `make run` just wrote under the default output folder.

Usage: python .ci/check_run.py outputs/efficient_convnet --newer-than FILE --evaluations N
Exits 1 with one line naming what is missing or wrong; prints one line on success.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DATED = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}$")


def newest_run(parent: Path, newer_than: float) -> Path:
    """The newest dated run folder under ``parent`` created after ``newer_than``."""
    runs = [p for p in parent.iterdir() if p.is_dir() and DATED.match(p.name) and p.stat().st_mtime >= newer_than]
    if not runs:
        raise SystemExit(f"check_run: error: no dated run folder (YYYY-mm-dd_HH-MM-SS) under {parent} from this run")
    return max(runs, key=lambda p: p.stat().st_mtime)


def check(run: Path, evaluations: int) -> str:
    """Problems with ``run``'s files, as one line; empty when everything is there and consistent."""
    for name in ("history.jsonl", "summary.json", "config.yaml", "best/arch.json"):
        if not (run / name).is_file():
            return f"{run / name} is missing"
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "arch" in r]
    if len(records) != evaluations:
        return f"{run}/history.jsonl holds {len(records)} evaluations, expected {evaluations}"
    summary = json.loads((run / "summary.json").read_text())
    accuracy = summary.get("test", {}).get("test/acc")
    if not isinstance(accuracy, float) or not 0.5 <= accuracy <= 1.0:
        return f"{run}/summary.json: test/acc is {accuracy!r}, expected a retrained accuracy in [0.5, 1]"
    if json.loads((run / "best/arch.json").read_text()) != summary["best"]["arch"]:
        return f"{run}/best/arch.json differs from summary.json's best architecture"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parent", type=Path)
    parser.add_argument("--newer-than", type=Path, required=True, help="a file created before the run started")
    parser.add_argument("--evaluations", type=int, required=True)
    args = parser.parse_args()
    run = newest_run(args.parent, args.newer_than.stat().st_mtime)
    problem = check(run, args.evaluations)
    if problem:
        sys.exit(f"check_run: error: {problem}")
    summary = json.loads((run / "summary.json").read_text())
    print(f"smoke run ok: {run} ({args.evaluations} evaluations, best {summary['best']['arch_id']}, "
          f"test accuracy {summary['test']['test/acc']:.4f})")


if __name__ == "__main__":
    main()
