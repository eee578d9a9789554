"""DARTS helpers: genotype derivation with a skip-connection cap, the second-order gradient, alpha heatmaps.

Example:
    >>> import numpy as np
    >>> from lightning_nas.spaces.cell_ops import DARTS_OPS
    >>> probs = {k: np.full((14, 8), 1 / 8) for k in ("normal", "reduce")}
    >>> arch = derive_darts(probs, DARTS_OPS)
    >>> arch["normal/node0/inputs"]
    (0, 1)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_nas.arch import Architecture
from lightning_nas.spaces.cell_ops import PARAMETER_FREE_OPS

__all__ = [
    "cap_skip_connections",
    "count_ops",
    "derive_darts",
    "finite_difference_hvp",
    "plot_alphas",
    "unrolled_arch_gradients",
]

log = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]
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


def count_ops(arch: Mapping[str, Any], prefix: str = "normal/", ops: frozenset[str] = PARAMETER_FREE_OPS) -> int:
    """How many op decisions under ``prefix`` chose one of ``ops`` (parameter-free ops by default)."""
    return sum(1 for label, value in arch.items() if label.startswith(prefix) and value in ops)


def finite_difference_hvp(
    loss: LossFn, params: Params, arch: Sequence[torch.Tensor], vector: Sequence[torch.Tensor], batch: Any
) -> list[torch.Tensor]:
    """``d/d(arch) [grad_w loss . vector]`` by central differences, with ``eps = 0.01 / ||vector||`` (DARTS eq. 8).

    Args:
        loss: ``loss(params, batch)``; it must depend on the tensors in ``arch``.
        params: the network weights ``w`` by name.
        arch: architecture parameters.
        vector: one tensor per entry of ``params``.
        batch: the (training) batch.
    """
    norm = torch.cat([v.flatten() for v in vector]).norm()
    eps = 0.01 / norm.clamp_min(1e-12)
    grads = []
    for sign in (1.0, -1.0):
        moved = {n: p.detach() + sign * eps * v for (n, p), v in zip(params.items(), vector, strict=True)}
        grads.append(_grads(loss(moved, batch), arch))
    return [(plus - minus) / (2 * eps) for plus, minus in zip(*grads, strict=True)]


def unrolled_arch_gradients(
    loss: LossFn,
    params: Params,
    arch: Sequence[torch.Tensor],
    train_batch: Any,
    val_batch: Any,
    lr: float,
    weight_decay: float = 0.0,
    train_grads: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Second-order DARTS gradient of the validation loss with respect to ``arch``.

    ``w' = w - lr (grad_w L_train(w) + wd w)``; the result is ``grad_a L_val(w') - lr * H v`` with
    ``v = grad_w' L_val(w')`` and ``H v`` from :func:`finite_difference_hvp`.

    Args:
        loss: ``loss(params, batch)``.
        params: the network weights by name.
        arch: architecture parameters (leaf tensors requiring grad).
        train_batch: batch of the virtual weight step.
        val_batch: batch of the validation loss.
        lr: learning rate of the virtual step (the weight optimiser's current one).
        weight_decay: weight decay of the virtual step.
        train_grads: ``grad_w L_train(w)`` when already computed (one per entry of ``params``), else None.
    """
    if train_grads is None:
        g_train = _grads(loss(params, train_batch), list(params.values()))
    else:
        g_train = [g.detach() for g in train_grads]
    unrolled = {
        n: (p.detach() - lr * (g + weight_decay * p.detach())).requires_grad_()
        for (n, p), g in zip(params.items(), g_train, strict=True)
    }
    grads = _grads(loss(unrolled, val_batch), [*arch, *unrolled.values()])
    d_arch, vector = grads[: len(arch)], grads[len(arch) :]
    implicit = finite_difference_hvp(loss, params, arch, vector, train_batch)
    return [d - lr * h for d, h in zip(d_arch, implicit, strict=True)]


def _grads(value: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    found = torch.autograd.grad(value, list(inputs), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(inputs, found, strict=True)]


def plot_alphas(probs: Mapping[str, np.ndarray], op_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a heatmap of softmaxed alphas (one panel per cell kind; rows are edges) as a PNG.

    Args:
        probs: cell kind -> ``(edges, ops)`` weights.
        op_names: column labels.
        path: output file.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    kinds = list(probs)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 5), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        weights = np.asarray(probs[kind], dtype=float)
        # the colour scale spans this epoch's range: early alphas differ by well under 1% from uniform
        image = ax.imshow(weights, cmap="viridis", vmin=float(weights.min()), vmax=float(weights.max()), aspect="auto")
        best = weights.argmax(axis=1)
        ax.scatter(best, range(len(best)), marker="x", color="red", s=25)
        ax.set_title(f"{kind} (x = strongest op per edge)")
        ax.set_xticks(range(len(op_names)), list(op_names), rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("edge")
        fig.colorbar(image, ax=ax)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
