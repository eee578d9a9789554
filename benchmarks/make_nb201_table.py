"""Write the shipped synthetic NAS-Bench-201-style table with fidelities (seeded, reproducible).

Every one of the 5**6 = 15,625 cells of the ``nb201`` space gets a row keyed by its NAS-Bench-201
string, with the validation accuracy after 4, 12, 36, 108 and 200 epochs (``val_acc@<epochs>``),
the test accuracy after 200 epochs (``test_acc@200``), the cumulative training time to each
fidelity (``train_time_s@<epochs>``) and the real parameter count of the ``nb201`` network for
CIFAR-sized input (3x32x32, 10 classes). The numbers are synthetic; their structure imitates the
real benchmark:

* **Connectivity.** A cell whose every path from input to output has a ``none`` edge is chance
  level (0.10) at every fidelity, as in NAS-Bench-201.
* **Final accuracy** is a monotone map (:func:`final_accuracy`) of the rank of a latent score:
  per-(edge, op) effects (convolutions help, 3x3 most, pooling hurts), the number of convolutions
  on the longest live path, a residual bonus (a skip on the input->output edge with a deep conv
  path) and random pairwise interactions between edges (so the landscape is not additive). The
  best cell tests at about 94.6 %, the median at 89 %; the top 1 % spans about 0.8 points.
* **Learning curves**: each cell converges with its own time constant; heavy cells (many 3x3
  convolutions, deep paths) converge slower, so rankings change between 4/12 and 200 epochs
  (Spearman 0.37 for ``val_acc@4``, 0.77 for ``val_acc@12`` against ``val_acc@200``; about 0
  among the top 1 % of cells).
* **Noise**: validation noise shrinks with the fidelity (sd 2.2 % at 4 epochs, 0.2 % at 200);
  ``val_acc@200`` and ``test_acc@200`` share a per-cell training-seed term plus their own split noise.
* **Cost**: seconds per epoch grow with the cell's convolutions; ``train_time_s@f`` is ``f`` times it.

Regenerate (the output is byte-identical for a seed; a test checks the shipped file)::

    python benchmarks/make_nb201_table.py   # -> src/lightning_nas/evaluators/tables/nb201_synthetic.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_nas.evaluators.tabular import SHIPPED_TABLES
from lightning_nas.spaces.cell_ops import NB201_OPS
from lightning_nas.spaces.nb201 import EDGES, NB201Space, edge_label, nb201_to_string

FIDELITIES = (4, 12, 36, 108, 200)
"""Epochs at which validation accuracy (and cumulative cost) is tabulated."""

PATHS = (((3, 0),), ((1, 0), (3, 1)), ((2, 0), (3, 2)), ((1, 0), (2, 1), (3, 2)))
"""The four input->output paths of the cell, as ``(to, from)`` edges."""

OP_MEAN = {"none": 0.0, "skip_connect": 0.15, "nor_conv_1x1": 0.45, "nor_conv_3x3": 1.0, "avg_pool_3x3": -0.35}
OP_EPOCH_S = {"none": 0.0, "skip_connect": 0.1, "nor_conv_1x1": 0.9, "nor_conv_3x3": 2.6, "avg_pool_3x3": 0.6}
CONVS = frozenset({"nor_conv_1x1", "nor_conv_3x3"})


def op_params() -> dict[str, int]:
    """Parameters each op adds to the ``nb201`` network (3x32x32, 10 classes), from real builds."""
    space = NB201Space((3, 32, 32), 10)
    base = {edge_label(j, i): "none" for j, i in EDGES}
    counts = {}
    for op in NB201_OPS:
        model = space.build({**base, edge_label(1, 0): op})
        counts[op] = sum(p.numel() for p in model.parameters())
    return {op: counts[op] - counts["none"] for op in NB201_OPS} | {"_base": counts["none"]}


def _live_paths(ops: dict[tuple[int, int], str]) -> list[tuple[tuple[int, int], ...]]:
    return [path for path in PATHS if all(ops[edge] != "none" for edge in path)]


def _latent(ops: dict[tuple[int, int], str], main: np.ndarray, pair: np.ndarray) -> tuple[float, int]:
    """The latent quality of a live cell and the convolutions on its deepest live path."""
    idx = [NB201_OPS.index(ops[edge]) for edge in EDGES]
    live = _live_paths(ops)
    live_edges = {edge for path in live for edge in path}
    depth = max(sum(ops[edge] in CONVS for edge in path) for path in live)
    z = sum(main[e, idx[e]] for e, edge in enumerate(EDGES) if edge in live_edges)
    z += sum(pair[a, b, idx[a], idx[b]] for a, b in itertools.combinations(range(len(EDGES)), 2))
    z += 0.45 * depth + (0.5 if ops[(3, 0)] == "skip_connect" and depth >= 2 else 0.0)
    return float(z), depth


def final_accuracy(quantile: np.ndarray) -> np.ndarray:
    """Final accuracy of a live cell from the quantile of its latent score (1 = best).

    The drop below the best (0.946) is ``0.05 u^0.4 + 0.155 u^4 + 0.18 u^20`` with ``u = 1 - quantile``:
    the top 1 % spans about 0.8 points (as in NAS-Bench-201), the median is about 0.89 and a long
    tail reaches down to about 0.56.
    """
    u = 1.0 - quantile
    return 0.946 - (0.05 * u**0.4 + 0.155 * u**4 + 0.18 * u**20)


def generate(seed: int = 0) -> list[dict[str, object]]:
    """Every row of the table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_ops = len(NB201_OPS)
    main = np.array([[OP_MEAN[op] for op in NB201_OPS]] * len(EDGES)) + rng.normal(0, 0.25, (len(EDGES), n_ops))
    pair = rng.normal(0, 0.12, (len(EDGES), len(EDGES), n_ops, n_ops))
    params = op_params()
    cells = [dict(zip(EDGES, combo, strict=True)) for combo in itertools.product(NB201_OPS, repeat=len(EDGES))]
    latent = [(_latent(ops, main, pair) if _live_paths(ops) else None) for ops in cells]
    live = [i for i, info in enumerate(latent) if info is not None]
    scores = np.array([latent[i][0] for i in live])  # type: ignore[index]
    quantile = (np.argsort(np.argsort(scores)) + 0.5) / len(scores)
    finals: list[float | None] = [None] * len(cells)
    for i, value in zip(live, final_accuracy(quantile), strict=True):
        finals[i] = float(value)
    return [_row(ops, info, final, params, rng) for ops, info, final in zip(cells, latent, finals, strict=True)]


def _row(ops: dict[tuple[int, int], str], info: tuple[float, int] | None, final: float | None,
         params: dict[str, int], rng: np.random.Generator) -> dict[str, object]:
    arch = {edge_label(j, i): op for (j, i), op in ops.items()}
    n3 = sum(op == "nor_conv_3x3" for op in ops.values())
    epoch_s = (2.0 + sum(OP_EPOCH_S[op] for op in ops.values())) * float(rng.lognormal(0, 0.05))
    size = params["_base"] + sum(params[o] for o in ops.values())
    row: dict[str, object] = {"arch": nb201_to_string(arch), "params": size}
    if info is None or final is None:  # no live path: chance level at every fidelity
        final, tau, seed_noise = 0.10, 1.0, 0.0
    else:
        depth = info[1]
        tau = 3.0 * float(np.exp(0.08 * n3 + 0.06 * depth + rng.normal(0, 0.1)))
        seed_noise = float(rng.normal(0, 0.002))
    for f in FIDELITIES:
        progress = (1.0 - np.exp(-((f / tau) ** 0.8))) / (1.0 - np.exp(-((200 / tau) ** 0.8)))
        noise = seed_noise if f == 200 else 0.0
        val = 0.10 + (final - 0.10) * progress + noise + rng.normal(0, 0.0015 + 0.02 * 4 / f)
        row[f"val_acc@{f}"] = round(float(np.clip(val, 0.05, 0.999)), 4)
    row["test_acc@200"] = round(float(np.clip(final + seed_noise + rng.normal(0, 0.0015), 0.05, 0.999)), 4)
    for f in FIDELITIES:
        row[f"train_time_s@{f}"] = round(f * epoch_s, 1)
    return row


def write(rows: Sequence[dict[str, object]], path: str | Path) -> Path:
    """Write ``rows`` as a gzipped CSV with a zero timestamp (byte-identical for the same rows)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.getvalue().encode())
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(SHIPPED_TABLES["nb201_synthetic"]))
    args = parser.parse_args(argv)
    print(write(generate(args.seed), args.out))


if __name__ == "__main__":
    main()
