"""FusedNB201Cell computes what the per-edge mixed ops compute: outputs, gradients, BN statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.spaces.cell_ops import CELL_OPS, NB201_OPS
from lightning_nas.spaces.fused_cell import FusedNB201Cell, average_pool_3x3, scaled_batch_norm
from lightning_nas.spaces.nb201 import EDGES, NB201Cell


def _pair(channels: int, partial: int) -> tuple[FusedNB201Cell, NB201Cell]:
    """A fused cell and the per-edge reference cell holding the same weights."""
    torch.manual_seed(0)
    c = channels // partial
    reference = NB201Cell(lambda j, i: nn.ModuleDict({n: CELL_OPS[n](c, 1, False) for n in NB201_OPS if n != "none"}),
                          NB201_OPS, partial)
    fused = FusedNB201Cell(channels, partial)
    with torch.no_grad():
        for i, ops in enumerate(fused.sources):
            for t, j in enumerate(range(i + 1, 4)):
                edge = reference.edges[f"{j}_{i}"]
                ops.conv1.weight[t * c : (t + 1) * c] = edge["nor_conv_1x1"][1].weight
                ops.conv3.weight[t * c : (t + 1) * c] = edge["nor_conv_3x3"][1].weight
    return fused, reference


@pytest.mark.parametrize("partial", [1, 2])
def test_fused_cell_matches_per_edge_mixed_ops(partial: int) -> None:
    fused, reference = _pair(8, partial)
    alphas = torch.randn(6, 5, requires_grad=True)
    x = torch.randn(3, 8, 5, 5, requires_grad=True)
    results = []
    for cell in (fused, reference):
        weights = torch.softmax(alphas, -1)
        out = cell(x, weights)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        results.append((out, *torch.autograd.grad(loss, [x, alphas])))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    c = 8 // partial
    for i, ops in enumerate(fused.sources):  # BN statistics per edge slice
        for t, j in enumerate(range(i + 1, 4)):
            bn = reference.edges[f"{j}_{i}"]["nor_conv_3x3"][2]
            torch.testing.assert_close(ops.bn3.running_var[t * c : (t + 1) * c], bn.running_var)


def test_fused_cell_conv_weight_gradients_match() -> None:
    fused, reference = _pair(4, 1)
    x = torch.randn(2, 4, 4, 4)
    weights = torch.softmax(torch.randn(6, 5), -1)
    fused(x, weights).square().sum().backward()
    reference(x, weights).square().sum().backward()
    for i, ops in enumerate(fused.sources):
        for t, j in enumerate(range(i + 1, 4)):
            want = reference.edges[f"{j}_{i}"]["nor_conv_3x3"][1].weight.grad
            torch.testing.assert_close(ops.conv3.weight.grad[t * 4 : (t + 1) * 4], want, rtol=1e-4, atol=1e-5)


def test_ops_with_zero_weight_are_skipped_without_changing_the_result() -> None:
    fused, reference = _pair(4, 1)
    weights = torch.zeros(6, 5)
    weights[:, NB201_OPS.index("skip_connect")] = 1.0  # one-hot: only skips
    x = torch.randn(2, 4, 4, 4)
    calls = []
    fused.sources[0].conv3.register_forward_hook(lambda *args: calls.append(1))
    torch.testing.assert_close(fused(x, weights), reference(x, weights))
    assert not calls and [EDGES.index((j, 0)) for j in (1, 2, 3)] == fused.rows[0]


def test_scaled_batch_norm_matches_batch_norm_times_scale_with_gradients() -> None:
    z = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(3, dtype=torch.float64).add(0.1).requires_grad_()
    norm = nn.BatchNorm2d(3, affine=False).double()
    assert torch.autograd.gradcheck(lambda t, s: scaled_batch_norm(t, norm, s), (z, scale))
    reference = nn.BatchNorm2d(3, affine=False).double()
    norm = nn.BatchNorm2d(3, affine=False).double()
    torch.testing.assert_close(scaled_batch_norm(z, norm, scale), reference(z) * scale.view(1, -1, 1, 1))
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)  # unbiased, as torch keeps it
    assert int(norm.num_batches_tracked) == 1


def test_scaled_batch_norm_with_a_zero_scale_gives_finite_gradients() -> None:
    z = torch.randn(4, 3, 5, 5, requires_grad=True)
    scale = torch.tensor([0.0, 0.5, 1.0])
    norm = nn.BatchNorm2d(3, affine=False)
    out = scaled_batch_norm(z, norm, scale)
    (grad,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), z)
    assert torch.isfinite(grad).all() and not grad[:, 0].any() and grad[:, 1:].abs().sum() > 0
    assert not out[:, 0].any()


def test_scaled_batch_norm_needs_two_values_per_channel() -> None:
    z = torch.randn(1, 3, 1, 1, requires_grad=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        scaled_batch_norm(z, nn.BatchNorm2d(3, affine=False), torch.ones(3))


def test_checkpointed_cell_gives_the_same_gradients_and_statistics() -> None:
    plain, _ = _pair(8, 2)
    checkpointed, _ = _pair(8, 2)
    checkpointed.checkpoint = True
    x = torch.randn(3, 8, 5, 5)
    alphas = torch.randn(6, 5, requires_grad=True)
    grads = []
    for cell in (plain, checkpointed):
        loss = cell(x, torch.softmax(alphas, -1)).square().sum()
        grads.append(torch.autograd.grad(loss, [alphas, cell.sources[0].conv3.weight]))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)
    for a, b in zip(plain.buffers(), checkpointed.buffers(), strict=True):
        torch.testing.assert_close(a, b)  # statistics updated once, not again by the recomputation


def test_average_pool_matches_avg_pool_without_padding_counts() -> None:
    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    want = nn.functional.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)
    torch.testing.assert_close(average_pool_3x3(x), want)
    grad = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(average_pool_3x3(x), x, grad), torch.autograd.grad(want, x, grad))
