"""How many sampled architectures export to ExecuTorch (XNNPACK), how fast, and how fast they run.

For every space in ``lightning_nas.spaces.SPACES`` (default input 1x8x8 grey like the embedded
digits data, 10 classes), sample ``--archs`` distinct architectures in total (split evenly over the
spaces) from the space's FULL default decision sets (every op, width, depth, kernel, head count...
the space offers; only non-searched structure such as the cell count is kept small, see ``STRUCTURE``),
export each with :func:`lightning_nas.export.export_many` and time it against eager PyTorch.

Architectures are taken round-robin (one of each space per round); every ``--progress-every`` rounds
it prints one line per space with the running counts, and Ctrl-C reports what is done so far. Then it
prints per space and overall: the success rate, the median export time, the median ratio of
ExecuTorch runtime latency to eager PyTorch latency (both batch 1, one thread, ``--repeats`` timed
runs), the median delegated fraction, and every failure with its architecture id, stage, reason and
architecture. One export takes about 2-30 s on a busy 2-core CPU::

    python benchmarks/export_success.py --archs 250
    python benchmarks/export_success.py --archs 20 --spaces vit nb201 --input-shape 1 28 28 --quantize
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

import lightning_nas.spaces  # noqa: F401  (registers every space)
from lightning_nas.arch import Architecture
from lightning_nas.export import ExportOutcome, export_many, profile_pte, runtime_threads
from lightning_nas.hardware.profile import measure_latency
from lightning_nas.spaces import SPACES, SearchSpace

log = logging.getLogger("export_success")

NUM_CLASSES = 10
# Non-searched structure kept small so a few hundred exports finish on a 2-core CPU; every decision
# list (the choices sampled) stays at the space's defaults. A space missing here uses all its defaults.
STRUCTURE: dict[str, dict[str, Any]] = {
    "darts_cell": {"num_cells": 3, "channels": 8},
    "nb201": {"cells_per_stage": 1, "channels": 16},
}


def make_space(name: str, input_shape: tuple[int, int, int]) -> SearchSpace:
    """The registered space ``name`` with its default decisions and the small structure of ``STRUCTURE``."""
    return SPACES.get(name)(input_shape, NUM_CLASSES, **STRUCTURE.get(name, {}))


def distinct_archs(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Architecture]:
    """Up to ``n`` distinct architectures sampled with ``rng``."""
    seen: dict[Architecture, None] = {}
    for _ in range(20 * n):
        if len(seen) == n:
            break
        seen.setdefault(space.sample(rng), None)
    return list(seen)


def latency_ratio(space: SearchSpace, outcome: ExportOutcome, repeats: int) -> float:
    """ExecuTorch median latency / eager median latency for one exported architecture."""
    assert outcome.report is not None
    pte = profile_pte(outcome.report.path, space.input_shape, repeats=repeats, threads=1)
    eager = measure_latency(space.build(outcome.arch), space.input_shape, repeats=repeats, threads=1)
    return pte.median_ms / eager.median_ms


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def new_row(name: str) -> dict[str, Any]:
    return {"space": name, "archs": 0, "ok": 0, "export_s": [], "ratio": [], "delegated": [], "failures": []}


def export_one(space: SearchSpace, arch: Architecture, row: dict[str, Any], out: Path,
               args: argparse.Namespace) -> None:
    """Export and time one architecture; add the outcome to ``row``."""
    outcome = export_many(space, [arch], out / row["space"], quantize=args.quantize)[0]
    row["archs"] += 1
    if outcome.ok and outcome.report is not None:
        pte = outcome.report.path
        try:
            row["ratio"].append(latency_ratio(space, outcome, args.repeats))
        except Exception as exc:  # a .pte that exports but does not run is a failure too
            outcome = ExportOutcome(outcome.arch_id, outcome.arch, ok=False, stage="profile", reason=repr(exc))
        pte.unlink(missing_ok=True)
    if outcome.ok and outcome.report is not None:
        row["ok"] += 1
        row["export_s"].append(outcome.report.seconds)
        row["delegated"].append(outcome.report.delegated_fraction)
    else:
        row["failures"].append(outcome)


@contextmanager
def stop_on_sigint() -> Iterator[list[bool]]:
    """While open, Ctrl-C (SIGINT) only sets ``flag[0]``; the loop stops at the next architecture.

    The export stack swallows a ``KeyboardInterrupt`` raised inside it, so the interrupt is turned
    into a flag that is checked between architectures. A second Ctrl-C raises as usual.
    """
    flag = [False]

    def handle(signum: int, frame: FrameType | None) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        print("interrupted: stopping after the current export (Ctrl-C again to abort)", flush=True)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def run_all(names: list[str], per_space: int, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Round-robin over the spaces (one architecture of each per round), so a cut-short run covers every space.

    Ctrl-C (SIGINT) stops after the current export; the table covers what was done.
    """
    rng = np.random.default_rng(args.seed)
    spaces = {name: make_space(name, tuple(args.input_shape)) for name in names}
    todo = {name: distinct_archs(space, per_space, rng) for name, space in spaces.items()}
    rows = {name: new_row(name) for name in names}
    start = time.perf_counter()

    def progress() -> None:
        elapsed = time.perf_counter() - start
        for r in rows.values():
            print(f"[{elapsed:6.0f}s] {r['space']:<18} {r['archs']:>4}/{len(todo[r['space']])} exported, "
                  f"{r['ok']} ok, {len(r['failures'])} failed", flush=True)

    with stop_on_sigint() as interrupted:
        for index in range(per_space):
            for name in names:
                if interrupted[0]:
                    print("reporting the architectures done so far", flush=True)
                    progress()
                    return list(rows.values())
                if index < len(todo[name]):
                    export_one(spaces[name], todo[name][index], rows[name], out, args)
            if (index + 1) % args.progress_every == 0 or index + 1 == per_space:
                progress()
    return list(rows.values())


def _line(label: str, archs: int, ok: int, export_s: list[float], ratio: list[float], delegated: list[float]) -> str:
    rate = ok / archs if archs else float("nan")
    return (f"{label:<18} {archs:>5} {ok:>4} {rate:>8.1%} {_median(export_s):>9.2f} {_median(ratio):>9.3f} "
            f"{_median(delegated):>9.1%}")


def report(rows: list[dict[str, Any]]) -> None:
    """Print the per-space and overall table, then every failure."""
    print(f"\n{'space':<18} {'archs':>5} {'ok':>4} {'success':>8} {'export s':>9} {'ET/eager':>9} {'delegated':>9}")
    for r in rows:
        print(_line(r["space"], r["archs"], r["ok"], r["export_s"], r["ratio"], r["delegated"]))
    print(_line("overall", sum(r["archs"] for r in rows), sum(r["ok"] for r in rows),
                [v for r in rows for v in r["export_s"]], [v for r in rows for v in r["ratio"]],
                [v for r in rows for v in r["delegated"]]))
    failures = [(r["space"], f) for r in rows for f in r["failures"]]
    print(f"\n{len(failures)} failure(s)")
    for space, f in failures:
        print(f"  {space} {f.arch_id} [{f.stage}] {f.reason}\n    arch: {json.dumps(f.arch, sort_keys=True)}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=250, help="architectures in total, split evenly over spaces")
    parser.add_argument("--spaces", nargs="*", default=None, help="subset of registered spaces (default: all)")
    parser.add_argument("--input-shape", type=int, nargs=3, default=[1, 8, 8], metavar=("C", "H", "W"),
                        help="input (channels, height, width); default 1 8 8 (digits). 1 28 28 is Fashion-MNIST "
                             "size: macro_convnet's 512-channel layers then take far longer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per latency measurement")
    parser.add_argument("--progress-every", type=int, default=5, help="print running counts every N rounds")
    parser.add_argument("--quantize", action="store_true", help="int8 PT2E export")
    parser.add_argument("--out", type=Path, default=None, help="work folder for the .pte files (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    names = args.spaces or SPACES.names()
    per_space = max(1, args.archs // len(names))
    print(f"{per_space} architectures per space over {names}, input {tuple(args.input_shape)}, "
          f"quantize={args.quantize}", flush=True)
    with tempfile.TemporaryDirectory(prefix="export_success_") as tmp, runtime_threads(1):
        out = args.out or Path(tmp)
        rows = run_all(names, per_space, out, args)
    report(rows)


if __name__ == "__main__":
    main()
