"""The NAS-Bench-201 space: one cell (4 nodes, 6 edges x 5 ops) stacked in a fixed ResNet-like skeleton.

Decisions ``cell/edge_{j}_{i}`` pick the op from node ``i`` to node ``j`` (``i < j``), shared by every
cell: 5 ** 6 = 15,625 architectures. :func:`nb201_to_string` / :func:`nb201_from_string` convert to and
from the benchmark's ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` format.

Example:
    >>> arch = nb201_from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|")
    >>> arch["cell/edge_2_1"]
    'skip_connect'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn import LayerChoice
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.cell_derivation import cap_skip_connections
from lightning_nas.spaces.cell_ops import CELL_OPS, NB201_OPS, ReLUConvBN
from lightning_nas.spaces.darts_cell import mixed_edge
from lightning_nas.spaces.fused_cell import FusedNB201Cell

__all__ = ["EDGES", "NB201Cell", "NB201Network", "NB201Space", "nb201_from_string", "nb201_to_string"]

EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, 4) for i in range(j))
"""``(to, from)`` node pairs in the benchmark's string order."""


def edge_label(j: int, i: int) -> str:
    return f"cell/edge_{j}_{i}"


def nb201_to_string(arch: Mapping[str, Any]) -> str:
    """The NAS-Bench-201 string of ``arch``, e.g. ``|nor_conv_3x3~0|+|none~0|none~1|+|...|``."""
    groups = []
    for j in range(1, 4):
        groups.append("|" + "|".join(f"{arch[edge_label(j, i)]}~{i}" for i in range(j)) + "|")
    return "+".join(groups)


def nb201_from_string(text: str) -> Architecture:
    """Parse a NAS-Bench-201 string; ``ValueError`` on a malformed string or unknown op."""
    groups = text.strip().split("+")
    if len(groups) != 3:
        raise ValueError(f"a NAS-Bench-201 string has 3 '+'-separated nodes, got {text!r}")
    choices: dict[str, str] = {}
    for j, group in enumerate(groups, start=1):
        tokens = [t for t in group.split("|") if t]
        if len(tokens) != j or not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"node {j} of {text!r} must list {j} edges as |op~i|")
        for i, token in enumerate(tokens):
            op, _, source = token.partition("~")
            if source != str(i) or op not in NB201_OPS:
                raise ValueError(f"bad edge {token!r} in {text!r}: expected one of {list(NB201_OPS)}~{i}")
            choices[edge_label(j, i)] = op
    return Architecture(choices)


class NB201Cell(nn.Module):
    """Node ``j`` sums its incoming edges; the cell outputs node 3.

    Args:
        edge: ``edge(j, i)`` builds the edge module (a layer choice, a plain op, or a
            ``ModuleDict`` of ops for the relaxed cell).
        op_names: alpha column order of the relaxed cell.
        partial: PC-DARTS channel sampling factor of the relaxed cell.
    """

    def __init__(
        self, edge: Callable[[int, int], nn.Module], op_names: Sequence[str] = NB201_OPS, partial: int = 1
    ) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({f"{j}_{i}": edge(j, i) for j, i in EDGES})
        self.op_names, self.partial = tuple(op_names), partial

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            total: torch.Tensor | None = None
            for i in range(j):
                module = self.edges[f"{j}_{i}"]
                if weights is None:
                    out = module(nodes[i])
                else:
                    assert isinstance(module, nn.ModuleDict)
                    out = mixed_edge(nodes[i], module, weights[EDGES.index((j, i))], self.op_names, self.partial, 1)
                total = out if total is None else total + out
            assert total is not None
            nodes.append(total)
        return nodes[3]


class ResidualReduction(nn.Module):
    """The NAS-Bench-201 reduction block: a strided basic residual block with an avg-pool + 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, 1)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem -> 3 stages of cells with residual reductions between them -> BN-ReLU -> pool -> classifier."""

    def __init__(
        self, in_channels: int, channels: int, cells_per_stage: int, num_classes: int, cell: Callable[[int], nn.Module]
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        self.is_cell: list[bool] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                self.is_cell.append(False)
                c *= 2
            for _ in range(cells_per_stage):
                layers.append(cell(c))
                self.is_cell.append(True)
        self.body = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.stem(x)
        for is_cell, layer in zip(self.is_cell, self.body, strict=True):
            x = layer(x, None if weights is None else weights["cell"]) if is_cell else layer(x)
        return self.classifier(self.head(x))


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201: a searched cell of 6 edges over ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: number of logits.
        cells_per_stage: cells in each of the 3 stages (5 in the benchmark).
        channels: channels of the first stage (16 in the benchmark), doubled at each reduction.

    Example:
        >>> space = NB201Space((1, 8, 8), 10, cells_per_stage=1, channels=4)
        >>> space.cardinality
        15625
    """

    name = "nb201"
    op_names: tuple[str, ...] = NB201_OPS

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        cells_per_stage: int = 5,
        channels: int = 16,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if cells_per_stage < 1 or channels < 1:
            raise ValueError(f"cells_per_stage and channels must be positive, got {cells_per_stage}, {channels}")
        self.cells_per_stage, self.channels = cells_per_stage, channels

    def construct(self) -> nn.Module:
        def edge(c: int) -> Callable[[int, int], nn.Module]:
            return lambda j, i: LayerChoice(
                {name: (lambda n=name: CELL_OPS[n](c, 1, True)) for name in NB201_OPS}, label=edge_label(j, i)
            )

        return self._network(lambda c: NB201Cell(edge(c)))

    def relaxed(self, partial_channels: int = 1) -> NB201Network:
        """The continuous relaxation: each edge mixes all five ops (``none`` contributes only its weight).

        The cells are :class:`~lightning_nas.spaces.fused_cell.FusedNB201Cell`: the ops of all edges
        leaving a node run as one conv per kind.
        """
        if self.channels % partial_channels:
            raise ValueError(f"channels ({self.channels}) must be divisible by partial_channels ({partial_channels})")
        return self._network(lambda c: FusedNB201Cell(c, partial_channels))

    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        return {"cell": (len(EDGES), len(NB201_OPS))}

    def node_weights(
        self, probs: Mapping[str, torch.Tensor], edges: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The relaxed network's ``weights`` argument (NB-201 nodes sum every edge: no edge weights)."""
        return dict(probs)

    def derive(
        self,
        probs: Mapping[str, np.ndarray],
        edge_scores: Mapping[str, np.ndarray] | None = None,
        max_skip_connections: int | None = None,
    ) -> Architecture:
        """Argmax op per edge, ``none`` excluded; at most ``max_skip_connections`` skips (weakest demoted)."""

        matrix = probs["cell"]
        allowed = [k for k, n in enumerate(NB201_OPS) if n != "none"]
        chosen = [
            (edge_label(j, i), row, NB201_OPS[max(allowed, key=lambda k: float(matrix[row, k]))])
            for row, (j, i) in enumerate(EDGES)
        ]
        if max_skip_connections is not None:
            chosen = cap_skip_connections(chosen, matrix, NB201_OPS, max_skip_connections)
        return self.validate({label: op for label, _, op in chosen})

    def describe(self, arch: Mapping[str, Any]) -> str:
        return nb201_to_string(self.validate(arch))

    def _network(self, cell: Callable[[int], nn.Module]) -> NB201Network:
        return NB201Network(self.input_shape[0], self.channels, self.cells_per_stage, self.num_classes, cell)
