"""The DARTS cell space: stacked normal and reduction cells sharing one genotype per cell type.

Each cell has two input states (the outputs of the two previous cells), :data:`NODES` intermediate
nodes and outputs the concatenation of its intermediate nodes. Node ``i`` picks two of its
``i + 2`` predecessors (``{kind}/node{i}/inputs``, a sorted index pair) and one op for each
(``{kind}/node{i}/op0`` for the lower index, ``op1`` for the other).

:meth:`DartsCellSpace.relaxed` builds the continuous relaxation used by DARTS / PC-DARTS
(see :mod:`lightning_nas.strategies.darts`): every edge is a softmax-weighted mixed op.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from lightning_nas.arch import Architecture
from lightning_nas.nn import ValueChoice
from lightning_nas.nn.choices import Switchable
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.cell_derivation import derive_darts
from lightning_nas.spaces.cell_ops import CELL_OPS, DARTS_OPS, FactorizedReduce, ReLUConvBN, channel_shuffle

__all__ = ["NODES", "Cell", "CellNetwork", "DartsCellSpace", "MixedNode", "mixed_edge"]

NODES = 4
KINDS = ("normal", "reduce")
NodeWeights = tuple[torch.Tensor, torch.Tensor | None]
"""Softmaxed op weights of a node's incoming edges ``(edges, ops)`` and optional edge weights ``(edges,)``."""
NodeFactory = Callable[[int, int, bool], nn.Module]


def edge_offsets(nodes: int = NODES) -> list[int]:
    """Row of the first incoming edge of each node in an ``(edges, ops)`` alpha matrix."""
    return [sum(k + 2 for k in range(i)) for i in range(nodes)]


def mixed_edge(
    x: torch.Tensor, ops: nn.ModuleDict, weights: torch.Tensor, op_names: Sequence[str], partial: int, stride: int
) -> torch.Tensor:
    """Softmax-weighted sum of ``ops`` on ``x`` (``none`` contributes nothing but its weight).

    With ``partial > 1`` only the first ``1 / partial`` of the channels go through the ops; the rest
    bypass them (max-pooled when strided) and the result is channel-shuffled (PC-DARTS).

    Args:
        x: input feature map.
        ops: op name -> module (every name in ``op_names`` except ``none``).
        weights: one weight per name in ``op_names``.
        op_names: the op order of ``weights``.
        partial: channel sampling factor K.
        stride: stride of the edge.
    """
    active = x[:, : x.shape[1] // partial] if partial > 1 else x
    out: torch.Tensor | None = None
    for index, name in enumerate(op_names):
        if name == "none":
            continue
        term = weights[index] * ops[name](active)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("a mixed edge needs at least one op besides 'none'")
    if partial == 1:
        return out
    rest = x[:, x.shape[1] // partial :]
    if stride > 1:
        rest = nn.functional.max_pool2d(rest, 2, 2, ceil_mode=True)
    return channel_shuffle(torch.cat([out, rest], dim=1), partial)


class PlainNode(nn.Module):
    """A node of a fixed cell: the sum of ``ops[k](states[indices[k]])``."""

    def __init__(self, indices: Sequence[int], ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.indices = tuple(int(i) for i in indices)
        self.ops = nn.ModuleList(ops)

    def forward(self, states: list[torch.Tensor], weights: NodeWeights | None = None) -> torch.Tensor:
        total = self.ops[0](states[self.indices[0]])
        for index, op in zip(self.indices[1:], self.ops[1:], strict=True):
            total = total + op(states[index])
        return total


class ChoiceNode(Switchable):
    """A node whose two inputs and their ops are decisions; a :class:`PlainNode` inside ``fixed_arch``.

    Args:
        index: node index (it has ``index + 2`` predecessors).
        channels: channels of every state.
        reduction: whether edges from the cell inputs are strided.
        ops: op names to choose from.
        prefix: label prefix, e.g. ``"normal/node0"``.
    """

    @classmethod
    def _plain_instance(
        cls, index: int, channels: int, reduction: bool, ops: Sequence[str], prefix: str
    ) -> nn.Module | None:
        pairs = tuple(itertools.combinations(range(index + 2), 2))
        chosen: Any = ValueChoice(pairs, label=f"{prefix}/inputs")
        if isinstance(chosen, ValueChoice):
            return None
        names: list[Any] = [ValueChoice(list(ops), label=f"{prefix}/op{k}") for k in range(2)]
        built = [CELL_OPS[str(n)](channels, _stride(j, reduction), True) for j, n in zip(chosen, names, strict=True)]
        return PlainNode(chosen, built)

    def __init__(self, index: int, channels: int, reduction: bool, ops: Sequence[str], prefix: str) -> None:
        super().__init__()
        self.inputs = ValueChoice(list(itertools.combinations(range(index + 2), 2)), label=f"{prefix}/inputs")
        self.op0 = ValueChoice(list(ops), label=f"{prefix}/op0")
        self.op1 = ValueChoice(list(ops), label=f"{prefix}/op1")
        self.edges = nn.ModuleList(
            nn.ModuleDict({name: CELL_OPS[name](channels, _stride(j, reduction), True) for name in ops})
            for j in range(index + 2)
        )

    def _chosen(self) -> tuple[tuple[int, ...], list[nn.Module]]:
        indices = tuple(int(i) for i in self.inputs.value)  # type: ignore[union-attr]
        names = (str(self.op0.value), str(self.op1.value))
        edges: list[nn.ModuleDict] = list(self.edges)  # type: ignore[arg-type]
        return indices, [edges[j][name] for j, name in zip(indices, names, strict=True)]

    def forward(self, states: list[torch.Tensor], weights: NodeWeights | None = None) -> torch.Tensor:
        indices, ops = self._chosen()
        return ops[0](states[indices[0]]) + ops[1](states[indices[1]])

    def freeze_module(self) -> nn.Module:
        return PlainNode(*self._chosen())


class MixedNode(nn.Module):
    """A node of the relaxed cell: every predecessor feeds it through a mixed op.

    Args:
        index: node index.
        channels: channels of every state.
        reduction: whether edges from the cell inputs are strided.
        op_names: all op names, ``none`` included (the order of the alpha columns).
        partial: PC-DARTS channel sampling factor K (1 = plain DARTS).
    """

    def __init__(self, index: int, channels: int, reduction: bool, op_names: Sequence[str], partial: int = 1) -> None:
        super().__init__()
        if channels % partial:
            raise ValueError(f"channels ({channels}) must be divisible by partial_channels ({partial})")
        self.op_names = tuple(op_names)
        self.partial = partial
        self.strides = [_stride(j, reduction) for j in range(index + 2)]
        self.edges = nn.ModuleList(
            nn.ModuleDict({n: CELL_OPS[n](channels // partial, stride, False) for n in self.op_names if n != "none"})
            for stride in self.strides
        )

    def forward(self, states: list[torch.Tensor], weights: NodeWeights | None = None) -> torch.Tensor:
        if weights is None:
            raise ValueError("a relaxed cell needs architecture weights")
        op_weights, edge_weights = weights
        total: torch.Tensor | None = None
        for j, (ops, stride) in enumerate(zip(self.edges, self.strides, strict=True)):
            out = mixed_edge(states[j], cast(nn.ModuleDict, ops), op_weights[j], self.op_names, self.partial, stride)
            if edge_weights is not None:
                out = edge_weights[j] * out
            total = out if total is None else total + out
        assert total is not None
        return total


def _stride(predecessor: int, reduction: bool) -> int:
    return 2 if reduction and predecessor < 2 else 1


class Cell(nn.Module):
    """Preprocess the two input states, run the nodes, concatenate the intermediate nodes."""

    def __init__(
        self, c_pp: int, c_p: int, channels: int, reduction: bool, reduction_prev: bool, node: NodeFactory
    ) -> None:
        super().__init__()
        self.kind = "reduce" if reduction else "normal"
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_pp, channels) if reduction_prev else ReLUConvBN(c_pp, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_p, channels, 1, 1, 0)
        self.nodes = nn.ModuleList(node(i, channels, reduction) for i in range(NODES))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: Sequence[NodeWeights] | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i, node in enumerate(self.nodes):
            states.append(node(states, None if weights is None else weights[i]))
        return torch.cat(states[2:], dim=1)


class CellNetwork(nn.Module):
    """Stem -> cells -> global average pool -> linear classifier.

    ``forward(x, weights)`` passes ``weights[cell.kind]`` (per-node weights) to each cell;
    fixed networks take no weights.
    """

    def __init__(self, stem: nn.Module, cells: Sequence[Cell], out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.kinds = [cell.kind for cell in cells]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(out_channels, num_classes)

    def forward(self, x: torch.Tensor, weights: Mapping[str, Sequence[NodeWeights]] | None = None) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for kind, cell in zip(self.kinds, self.cells, strict=True):
            s0, s1 = s1, cell(s0, s1, None if weights is None else weights[kind])
        return self.classifier(self.pool(s1).flatten(1))


@register_space("darts_cell")
class DartsCellSpace(SearchSpace):
    """DARTS cells: normal cells and reduction cells (at 1/3 and 2/3 of the depth, doubling channels).

    Decisions: ``{normal,reduce}/node{i}/inputs`` (index pair among the ``i + 2`` predecessors:
    0 and 1 are the cell inputs) and ``{normal,reduce}/node{i}/op{0,1}`` (ops without ``none``).

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: number of logits.
        num_cells: cells in the stack (at least 3).
        channels: channels of the first cell's nodes (the stem has 3x).
        ops: op names of the discrete space (``none`` is never sampled).

    Example:
        >>> space = DartsCellSpace((1, 8, 8), 10, num_cells=3, channels=4)
        >>> space.build(space.sample(np.random.default_rng(0)))(space.example_input()).shape
        torch.Size([2, 10])
    """

    name = "darts_cell"
    op_names: tuple[str, ...] = DARTS_OPS
    edge_normalization = True  # nodes choose among inputs: PC-DARTS learns edge weights

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        num_cells: int = 5,
        channels: int = 8,
        ops: Sequence[str] = DARTS_OPS[1:],
    ) -> None:
        super().__init__(input_shape, num_classes)
        if num_cells < 3:
            raise ValueError(f"num_cells must be at least 3, got {num_cells}")
        if channels < 2:
            raise ValueError(f"channels must be at least 2, got {channels}")
        unknown = [op for op in ops if op not in DARTS_OPS or op == "none"]
        if unknown or len(set(ops)) != len(ops) or len(ops) < 2:
            raise ValueError(f"ops must be distinct names from {list(DARTS_OPS[1:])}, got {list(ops)}")
        self.num_cells, self.channels, self.ops = num_cells, channels, tuple(ops)
        self.reductions = {num_cells // 3, 2 * num_cells // 3}

    def construct(self) -> nn.Module:
        return self._network(lambda i, c, r: ChoiceNode(i, c, r, self.ops, f"{'reduce' if r else 'normal'}/node{i}"))

    def relaxed(self, partial_channels: int = 1) -> CellNetwork:
        """The continuous relaxation: every edge mixes all of :attr:`op_names` (``none`` included)."""
        return self._network(lambda i, c, r: MixedNode(i, c, r, self.op_names, partial_channels))

    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape ``(edges, ops)`` of the architecture parameters of each cell kind."""
        edges = sum(i + 2 for i in range(NODES))
        return {kind: (edges, len(self.op_names)) for kind in KINDS}

    def node_weights(
        self, probs: Mapping[str, torch.Tensor], edges: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, list[NodeWeights]]:
        """Split ``(edges, ops)`` weights per node; ``edges`` holds raw per-edge betas (softmaxed per node)."""
        result: dict[str, list[NodeWeights]] = {}
        for kind, matrix in probs.items():
            nodes: list[NodeWeights] = []
            for i, start in enumerate(edge_offsets()):
                beta = None if edges is None else torch.softmax(edges[kind][start : start + i + 2], dim=0)
                nodes.append((matrix[start : start + i + 2], beta))
            result[kind] = nodes
        return result

    def derive(
        self,
        probs: Mapping[str, np.ndarray],
        edge_scores: Mapping[str, np.ndarray] | None = None,
        max_skip_connections: int | None = None,
    ) -> Architecture:
        """The discrete architecture of softmaxed alphas (see ``darts_utils.derive_darts``)."""

        return self.validate(derive_darts(probs, self.op_names, edge_scores, max_skip_connections))

    def _network(self, node: NodeFactory) -> CellNetwork:
        c = self.channels
        stem = nn.Sequential(nn.Conv2d(self.input_shape[0], 3 * c, 3, padding=1, bias=False), nn.BatchNorm2d(3 * c))
        c_pp, c_p, reduction_prev = 3 * c, 3 * c, False
        cells: list[Cell] = []
        for index in range(self.num_cells):
            reduction = index in self.reductions
            if reduction:
                c *= 2
            cells.append(Cell(c_pp, c_p, c, reduction, reduction_prev, node))
            c_pp, c_p, reduction_prev = c_p, NODES * c, reduction
        return CellNetwork(stem, cells, c_p, self.num_classes)

    def describe(self, arch: Mapping[str, Any]) -> str:
        frozen = self.validate(arch)
        parts = []
        for kind in KINDS:
            nodes = []
            for i in range(NODES):
                a, b = cast(tuple[int, int], frozen[f"{kind}/node{i}/inputs"])
                nodes.append(f"{frozen[f'{kind}/node{i}/op0']}~{a}+{frozen[f'{kind}/node{i}/op1']}~{b}")
            parts.append(f"{kind}: " + " | ".join(nodes))
        return "; ".join(parts)
