"""How many sampled architectures export to ExecuTorch (XNNPACK), how fast, and how fast they run.

For every space in ``lightning_nas.spaces.SPACES`` (28x28 grey input, 10 classes, small
configurations so it finishes on a 2-core CPU), sample ``--archs`` architectures in total (split
evenly over the spaces), export each with :func:`lightning_nas.export.export_many`, and print
per space: the success rate, the median export time, and the median ratio of ExecuTorch runtime
latency to eager PyTorch latency (both batch 1, one thread), then every failure with its stage
and reason. Each export takes a few seconds, so the default 200 takes roughly 15-25 minutes::

    python benchmarks/export_success.py
    python benchmarks/export_success.py --archs 20 --quantize
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import lightning_nas.spaces  # noqa: F401  (registers every space)
from lightning_nas.arch import Architecture
from lightning_nas.export import ExportOutcome, export_many, profile_pte, runtime_threads
from lightning_nas.hardware.profile import measure_latency
from lightning_nas.spaces import SPACES, SearchSpace

log = logging.getLogger("export_success")

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
# Small but complete configurations (the ones tests/spaces uses); a space missing here uses its defaults.
SMALL: dict[str, dict[str, Any]] = {
    "efficient_convnet": {
        "width_multipliers": [0.5, 1.0], "depth_multipliers": [0.5, 1.0], "kernel_sizes": [3, 5],
        "expansions": [1, 3], "stem_channels": 8, "stage_channels": [8, 16], "stage_depths": [1, 2],
        "stage_strides": [1, 2], "head_channels": 16,
    },
    "macro_convnet": {
        "num_layers": [2, 3, 4], "channels": [8, 16], "num_reductions": 1, "stem_channels": 8,
        "norms": ["batch", "group"],
    },
}


def make_space(name: str) -> SearchSpace:
    """The registered space ``name`` in its small configuration (defaults if that is rejected)."""
    cls = SPACES.get(name)
    try:
        return cls(INPUT_SHAPE, NUM_CLASSES, **SMALL.get(name, {}))
    except (TypeError, ValueError) as exc:
        log.warning("%s rejects the small configuration (%s); using its defaults", name, exc)
        return cls(INPUT_SHAPE, NUM_CLASSES)


def distinct_archs(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Architecture]:
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


def run_space(name: str, n: int, rng: np.random.Generator, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    space = make_space(name)
    archs = distinct_archs(space, n, rng)
    start = time.perf_counter()
    outcomes = export_many(space, archs, out / name, quantize=args.quantize)
    wall = time.perf_counter() - start
    done = [o for o in outcomes if o.ok and o.report is not None]
    ratios = [latency_ratio(space, o, args.repeats) for o in done]
    return {
        "space": name, "archs": len(outcomes), "ok": len(done), "wall_s": wall,
        "export_s": statistics.median(o.report.seconds for o in done if o.report) if done else float("nan"),
        "ratio": statistics.median(ratios) if ratios else float("nan"),
        "delegated": statistics.median(o.report.delegated_fraction for o in done if o.report) if done else 0.0,
        "failures": [o for o in outcomes if not o.ok],
    }


def report(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'space':<20} {'archs':>5} {'ok':>4} {'success':>8} {'export s':>9} {'ET/eager':>9} {'delegated':>9}")
    for r in rows:
        rate = r["ok"] / r["archs"] if r["archs"] else float("nan")
        print(f"{r['space']:<20} {r['archs']:>5} {r['ok']:>4} {rate:>8.1%} {r['export_s']:>9.2f} "
              f"{r['ratio']:>9.3f} {r['delegated']:>9.1%}")
    failures = [(r["space"], f) for r in rows for f in r["failures"]]
    print(f"\n{len(failures)} failure(s)")
    for space, f in failures:
        print(f"  {space} {f.arch_id} [{f.stage}] {f.reason}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=200, help="architectures in total, split evenly over spaces")
    parser.add_argument("--spaces", nargs="*", default=None, help="subset of registered spaces (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per latency measurement")
    parser.add_argument("--quantize", action="store_true", help="int8 PT2E export")
    parser.add_argument("--out", type=Path, default=None, help="keep the .pte files here (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    names = args.spaces or SPACES.names()
    per_space = max(1, args.archs // len(names))
    rng = np.random.default_rng(args.seed)
    print(f"{per_space} architectures per space over {names}, input {INPUT_SHAPE}, quantize={args.quantize}")
    with tempfile.TemporaryDirectory(prefix="export_success_") as tmp, runtime_threads(1):
        out = args.out or Path(tmp)
        rows = [run_space(name, per_space, rng, out, args) for name in names]
    report(rows)


if __name__ == "__main__":
    main()
