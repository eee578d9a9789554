"""Discrete cells from DARTS architecture weights: the top-2 input edges per node, an optional cap on skips."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_nas.arch import Architecture

__all__ = ["cap_skip_connections", "derive_darts"]

log = logging.getLogger(__name__)


# One chosen edge: (label of its op decision, edge row in the alpha matrix, op name)
Chosen = tuple[str, int, str]


def _best_op(row: np.ndarray, op_names: Sequence[str], exclude: Sequence[str] = ("none",)) -> tuple[str, float]:
    """The highest-weighted op of an edge outside ``exclude``, and its weight."""
    allowed = [i for i, name in enumerate(op_names) if name not in exclude]
    best = max(allowed, key=lambda i: float(row[i]))
    return op_names[best], float(row[best])


def derive_darts(
    probs: Mapping[str, np.ndarray],
    op_names: Sequence[str],
    edge_scores: Mapping[str, np.ndarray] | None = None,
    max_skip_connections: int | None = None,
    nodes: int = 4,
) -> Architecture:
    """The DARTS genotype: per node the top-2 incoming edges by their best non-``none`` op weight.

    Args:
        probs: cell kind -> softmaxed alphas ``(edges, ops)``.
        op_names: op name of each alpha column.
        edge_scores: cell kind -> per-edge multipliers (PC-DARTS edge normalisation), or None.
        max_skip_connections: keep at most this many ``skip_connect`` in the normal cell (the weakest
            extra ones become their edge's next best op), or None for no cap.
        nodes: intermediate nodes per cell.
    """
    choices: dict[str, Any] = {}
    for kind, matrix in probs.items():
        chosen: list[Chosen] = []
        start = 0
        for i in range(nodes):
            rows = range(start, start + i + 2)
            score = [
                _best_op(matrix[r], op_names)[1] * (1.0 if edge_scores is None else float(edge_scores[kind][r]))
                for r in rows
            ]
            top = sorted(sorted(range(i + 2), key=lambda j: -score[j])[:2])
            choices[f"{kind}/node{i}/inputs"] = tuple(top)
            for slot, j in enumerate(top):
                label = f"{kind}/node{i}/op{slot}"
                chosen.append((label, start + j, _best_op(matrix[start + j], op_names)[0]))
            start += i + 2
        if kind == "normal" and max_skip_connections is not None:
            chosen = cap_skip_connections(chosen, matrix, op_names, max_skip_connections)
        choices.update({label: op for label, _, op in chosen})
    return Architecture(choices)


def cap_skip_connections(
    chosen: Sequence[Chosen], matrix: np.ndarray, op_names: Sequence[str], limit: int
) -> list[Chosen]:
    """Keep the ``limit`` strongest ``skip_connect`` edges; the others take their next best op.

    Args:
        chosen: ``(label, alpha row, op)`` of each chosen edge.
        matrix: softmaxed alphas ``(edges, ops)``.
        op_names: op name of each alpha column.
        limit: the number of skip connections to keep.
    """
    if limit < 0:
        raise ValueError(f"max_skip_connections must be non-negative, got {limit}")
    skip = op_names.index("skip_connect")
    skips = sorted((c for c in chosen if c[2] == "skip_connect"), key=lambda c: -float(matrix[c[1], skip]))
    demoted = {c[0] for c in skips[limit:]}
    result = []
    for label, row, op in chosen:
        if label in demoted:
            op = _best_op(matrix[row], op_names, ("none", "skip_connect"))[0]
            log.info("capping skip connections: %s becomes %s", label, op)
        result.append((label, row, op))
    return result
