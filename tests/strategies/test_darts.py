"""DARTS: second-order gradient, genotype derivation, collapse guard, PC-DARTS memory, a Lightning epoch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import Architecture
from lightning_nas.hardware.profile import _ActivationTracker
from lightning_nas.spaces.cell_derivation import derive_darts
from lightning_nas.spaces.cell_ops import DARTS_OPS, NB201_OPS
from lightning_nas.spaces.darts_cell import DartsCellSpace
from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import BilevelDataModule, DartsModule
from lightning_nas.strategies.darts_utils import count_ops, finite_difference_hvp, unrolled_arch_gradients

SKIP = DARTS_OPS.index("skip_connect")


class RandomData(L.LightningDataModule):
    """16 random 8x8 images of 3 classes."""

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g))
        return DataLoader(data, batch_size=8)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return self.train_dataloader()


def _trainer(tmp_path: Path, epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )


# ----- second-order gradient on a tiny model -------------------------------------------------------
def _tiny_problem() -> tuple[object, dict[str, torch.Tensor], torch.Tensor, tuple, tuple]:
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)}
    alpha = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def loss(p: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        hidden = torch.tanh(x @ p["w"].T) * torch.softmax(alpha, 0)
        return F.cross_entropy(hidden, y)

    def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (6,), generator=gen)

    return loss, params, alpha, batch(1), batch(2)


def test_given_training_gradient_gives_the_same_arch_gradient() -> None:
    loss, params, alpha, train, val = _tiny_problem()
    (g_train,) = torch.autograd.grad(loss(params, train), [params["w"]])
    fresh = unrolled_arch_gradients(loss, params, [alpha], train, val, 0.3, 1e-2)
    reused = unrolled_arch_gradients(loss, params, [alpha], train, val, 0.3, 1e-2, train_grads=[g_train])
    torch.testing.assert_close(reused, fresh)


def test_finite_difference_hvp_matches_autograd() -> None:
    loss, params, alpha, train, _ = _tiny_problem()
    vector = [torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))]
    (g_w,) = torch.autograd.grad(loss(params, train), [params["w"]], create_graph=True)
    (exact,) = torch.autograd.grad((g_w * vector[0]).sum(), [alpha])
    (approx,) = finite_difference_hvp(loss, params, [alpha], vector, train)
    torch.testing.assert_close(approx, exact, rtol=1e-3, atol=1e-7)


def test_forward_difference_hvp_matches_autograd_in_one_pass() -> None:
    loss, params, alpha, train, _ = _tiny_problem()
    vector = [torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))]
    (g_w,) = torch.autograd.grad(loss(params, train), [params["w"]], create_graph=True)
    (exact,) = torch.autograd.grad((g_w * vector[0]).sum(), [alpha])
    (base,) = torch.autograd.grad(loss(params, train), [alpha])
    calls = []

    def counted(p: dict[str, torch.Tensor], batch: tuple) -> torch.Tensor:
        calls.append(batch)
        return loss(p, batch)

    (forward,) = finite_difference_hvp(counted, params, [alpha], vector, train, base_grads=[base])
    assert len(calls) == 1
    (central,) = finite_difference_hvp(loss, params, [alpha], vector, train)
    torch.testing.assert_close(forward, exact, rtol=2e-2, atol=1e-6)  # O(eps) ...
    assert (forward - exact).norm() > (central - exact).norm()  # ... against central's O(eps^2)


def test_unrolled_gradient_with_forward_differences_is_close_to_exact() -> None:
    loss, params, alpha, train, val = _tiny_problem()
    lr, wd = 0.5, 1e-2
    (g_w,) = torch.autograd.grad(loss(params, train), [params["w"]], create_graph=True)
    (exact,) = torch.autograd.grad(loss({"w": params["w"] - lr * (g_w + wd * params["w"])}, val), [alpha])
    (base,) = torch.autograd.grad(loss(params, train), [alpha])
    (approx,) = unrolled_arch_gradients(loss, params, [alpha], train, val, lr, wd, train_arch_grads=[base])
    torch.testing.assert_close(approx, exact, rtol=1e-2, atol=1e-6)


def test_unrolled_gradient_matches_the_exact_second_order_gradient() -> None:
    loss, params, alpha, train, val = _tiny_problem()
    lr, wd = 0.5, 1e-2
    (g_w,) = torch.autograd.grad(loss(params, train), [params["w"]], create_graph=True)
    unrolled = {"w": params["w"] - lr * (g_w + wd * params["w"])}
    (exact,) = torch.autograd.grad(loss(unrolled, val), [alpha])  # through w'(alpha) exactly
    (first,) = torch.autograd.grad(loss({"w": unrolled["w"].detach()}, val), [alpha])
    (approx,) = unrolled_arch_gradients(loss, params, [alpha], train, val, lr, wd)
    assert (exact - first).norm() > 1e-3 * exact.norm()  # the implicit term matters here
    torch.testing.assert_close(approx, exact, rtol=1e-3, atol=1e-7)


# ----- derivation and collapse guard on hand-set alphas --------------------------------------------
def _hand_set_probs() -> dict[str, np.ndarray]:
    """Node i prefers its last two inputs; sep_conv_3x3 everywhere, except skip_connect on every input 1 edge."""
    probs = {}
    for kind in ("normal", "reduce"):
        matrix = np.full((14, 8), 0.05)
        matrix[:, DARTS_OPS.index("none")] = 0.6  # none is never chosen however strong
        start = 0
        for i in range(4):
            for j in range(i + 2):
                matrix[start + j, DARTS_OPS.index("sep_conv_3x3")] = 0.1 + 0.01 * j
                if j == 1:
                    matrix[start + j, SKIP] = 0.2 + 0.01 * i
            start += i + 2
        probs[kind] = matrix
    return probs


def test_genotype_takes_top_two_edges_and_best_non_none_op() -> None:
    arch = derive_darts(_hand_set_probs(), DARTS_OPS)
    assert arch["normal/node0/inputs"] == (0, 1)
    assert arch["normal/node0/op0"] == "sep_conv_3x3" and arch["normal/node0/op1"] == "skip_connect"
    assert arch["normal/node3/inputs"] == (1, 4)  # the skip edge from input 1 and the strongest conv edge
    assert arch["normal/node3/op0"] == "skip_connect" and arch["normal/node3/op1"] == "sep_conv_3x3"
    assert count_ops(arch, "normal/", frozenset({"skip_connect"})) == 4
    assert count_ops(arch) == 4
    DartsCellSpace((1, 8, 8), 10, num_cells=3, channels=4).validate(arch)


def test_cap_keeps_the_strongest_skip_connections() -> None:
    arch = derive_darts(_hand_set_probs(), DARTS_OPS, max_skip_connections=2)
    assert count_ops(arch, "normal/", frozenset({"skip_connect"})) == 2
    assert arch["normal/node3/op0"] == arch["normal/node2/op0"] == "skip_connect"  # highest skip weights
    assert arch["normal/node0/op1"] == "sep_conv_3x3"  # demoted to the next best op
    assert count_ops(arch, "reduce/", frozenset({"skip_connect"})) == 4  # only the normal cell is capped


def test_edge_scores_reweight_the_input_choice() -> None:
    scores = {k: np.ones(14) for k in ("normal", "reduce")}
    scores["normal"][2] = 10.0  # node 1's edge from input 0 wins ...
    scores["normal"][3] = 0.1  # ... and its skip edge from input 1 loses
    arch = derive_darts(_hand_set_probs(), DARTS_OPS, scores)
    assert arch["normal/node1/inputs"] == (0, 2)


# ----- the LightningModule -------------------------------------------------------------------------
def test_alphas_are_parameters_separate_from_weights() -> None:
    module = DartsModule(DartsCellSpace((1, 8, 8), 3, num_cells=3, channels=4), partial_channels=2)
    state = module.state_dict()
    assert {"alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"} <= set(state)
    arch_ids = {id(p) for p in module.arch_parameters()}
    weight_ids = {id(p) for p in module.weight_parameters()}
    assert not arch_ids & weight_ids
    assert arch_ids | weight_ids == {id(p) for p in module.parameters()}
    with torch.no_grad():
        module.beta_normal[1] = 5.0  # node 0 may only take inputs 0 and 1; node 1 now strongly prefers input 1 ...
        module.beta_normal[3] = 5.0
        module.beta_normal[4] = 5.0  # ... and input 2
    assert module.derive_genotype()["normal/node1/inputs"] == (1, 2)
    with pytest.raises(ValueError, match="order"):
        DartsModule(NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4), order="third")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hessian_difference must be 'central' or 'forward', got 'backward'"):
        DartsModule(NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4), order="second",
                    hessian_difference="backward")  # type: ignore[arg-type]


def test_bilevel_datamodule_zips_train_and_val_batches() -> None:
    loader = BilevelDataModule(RandomData()).train_dataloader()
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"train", "val"} and batch["val"][0].shape == (8, 1, 8, 8)


def _activation_peak(partial: int) -> int:
    torch.manual_seed(0)
    module = DartsModule(DartsCellSpace((1, 8, 8), 3, num_cells=3, channels=8), partial_channels=partial)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    ignored = {p.untyped_storage().data_ptr() for p in (*module.parameters(), *module.buffers())}
    tracker = _ActivationTracker(ignored, baseline=0)
    with tracker:
        F.cross_entropy(module(x), y).backward()
    return tracker.peak


def test_partial_channels_use_less_activation_memory() -> None:
    plain, partial = _activation_peak(1), _activation_peak(4)
    assert partial < 0.6 * plain


def test_one_epoch_writes_heatmap_and_a_buildable_genotype(tmp_path: Path) -> None:
    space = DartsCellSpace((1, 8, 8), 3, num_cells=3, channels=4)
    module = DartsModule(space, order="second", output_dir=tmp_path / "out")
    before = module.alpha_normal.detach().clone()
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=BilevelDataModule(RandomData()))
    assert not torch.equal(before, module.alpha_normal.detach())
    assert (tmp_path / "out" / "alphas" / "epoch_000.png").stat().st_size > 0
    genotype = Architecture.load(tmp_path / "out" / "genotype.json")
    assert genotype == module.genotype
    assert json.loads((tmp_path / "out" / "genotypes" / "epoch_000.json").read_text()) == genotype.to_dict()
    assert space.build(genotype)(space.example_input()).shape == (2, 3)
    assert "darts/param_free_ops" in trainer.callback_metrics


def test_collapse_guard_stops_on_too_many_skips(tmp_path: Path) -> None:
    space = NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4)
    module = DartsModule(space, warmup_epochs=5, max_skip_connections=2, collapse_action="stop")
    with torch.no_grad():
        module.alpha_cell[:, NB201_OPS.index("skip_connect")] = 5.0
    trainer = _trainer(tmp_path, epochs=3)
    trainer.fit(module, datamodule=BilevelDataModule(RandomData()))
    assert trainer.current_epoch == 1  # stopped after the first epoch
    assert trainer.callback_metrics["darts/skip_connections"] == 6
    assert (tmp_path / "darts" / "alphas" / "epoch_000.png").exists()


def test_collapse_guard_cap_limits_the_derived_genotype() -> None:
    space = NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4)
    module = DartsModule(space, max_skip_connections=2, collapse_action="cap")
    with torch.no_grad():
        module.alpha_cell[:, NB201_OPS.index("skip_connect")] = 5.0
    assert count_ops(module.derive_genotype(), "cell/", frozenset({"skip_connect"})) == 2


def test_heatmap_goes_to_an_attached_wandb_logger(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    class RecordingWandb(WandbLogger):
        def __init__(self) -> None:
            super().__init__(offline=True, save_dir=str(tmp_path))
            self.images: list[tuple[str, list[str]]] = []

        def log_image(self, key: str, images: list[str], step: int | None = None, **kwargs: object) -> None:
            self.images.append((key, images))

    logger = RecordingWandb()
    trainer = L.Trainer(logger=logger, default_root_dir=tmp_path, enable_progress_bar=False, accelerator="cpu")
    module = DartsModule(NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4))
    module.trainer = trainer
    module._write_epoch(module.derive_genotype())
    assert logger.images == [("darts/alphas", [str(tmp_path / "darts" / "alphas" / "epoch_000.png")])]
