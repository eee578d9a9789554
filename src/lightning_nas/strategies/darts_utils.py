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

from lightning_nas.spaces.cell_ops import PARAMETER_FREE_OPS

__all__ = [
    "count_ops",
    "finite_difference_hvp",
    "plot_alphas",
    "unrolled_arch_gradients",
]

log = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]
def count_ops(arch: Mapping[str, Any], prefix: str = "normal/", ops: frozenset[str] = PARAMETER_FREE_OPS) -> int:
    """How many op decisions under ``prefix`` chose one of ``ops`` (parameter-free ops by default)."""
    return sum(1 for label, value in arch.items() if label.startswith(prefix) and value in ops)


def finite_difference_hvp(
    loss: LossFn,
    params: Params,
    arch: Sequence[torch.Tensor],
    vector: Sequence[torch.Tensor],
    batch: Any,
    base_grads: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """``d/d(arch) [grad_w loss . vector]`` by finite differences, with ``eps = 0.01 / ||vector||`` (DARTS eq. 8).

    Central differences (two passes, error O(eps^2)) by default; given ``base_grads``, the arch gradient
    of ``loss`` at ``params`` itself, forward differences from it (one pass, error O(eps)).

    Args:
        loss: ``loss(params, batch)``; it must depend on the tensors in ``arch``.
        params: the network weights ``w`` by name.
        arch: architecture parameters.
        vector: one tensor per entry of ``params``.
        batch: the (training) batch.
        base_grads: ``grad_arch loss(params, batch)`` (one per entry of ``arch``), or None.
    """
    norm = torch.cat([v.flatten() for v in vector]).norm()
    eps = 0.01 / norm.clamp_min(1e-12)
    signs = (1.0, -1.0) if base_grads is None else (1.0,)
    grads = []
    for sign in signs:
        moved = {n: p.detach() + sign * eps * v for (n, p), v in zip(params.items(), vector, strict=True)}
        grads.append(_grads(loss(moved, batch), arch))
    if base_grads is not None:
        return [(plus - base.detach()) / eps for plus, base in zip(grads[0], base_grads, strict=True)]
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
    train_arch_grads: Sequence[torch.Tensor] | None = None,
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
        train_arch_grads: ``grad_a L_train(w)`` (one per entry of ``arch``): the Hessian-vector product
            then takes forward differences from it (one training pass instead of two), else central ones.
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
    implicit = finite_difference_hvp(loss, params, arch, vector, train_batch, train_arch_grads)
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
