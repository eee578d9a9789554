"""DARTS compute paths: the second-order step reuses the weight step's training gradient
(the gradient function itself is tested on test_darts.py's tiny problem)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from lightning_nas.spaces.nb201 import NB201Space
from lightning_nas.strategies.darts import DartsModule


def test_second_order_step_uses_the_weight_gradient_once(monkeypatch, tmp_path) -> None:
    module = DartsModule(NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4), order="second",
                         output_dir=tmp_path)
    seen: list[list[torch.Tensor]] = []

    def spy(*args, train_grads=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.append([g.clone() for g in train_grads])
        return [torch.zeros_like(p) for p in args[2]]

    monkeypatch.setattr("lightning_nas.strategies.darts.unrolled_arch_gradients", spy)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    batches = torch.utils.data.DataLoader([{"train": (x, y), "val": (x, y)}], batch_size=None)
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        default_root_dir=tmp_path)
    before = {n: p.detach().clone() for n, p in module.network.named_parameters()}
    trainer.fit(module, train_dataloaders=batches)
    assert len(seen) == 1
    probe = DartsModule(NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4), order="second")
    probe.network.load_state_dict({**module.network.state_dict(), **before})  # weights before the step
    F.cross_entropy(probe(x), y).backward()
    expected = [p.grad for p in probe.network.parameters()]
    for got, want in zip(seen[0], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_activation_checkpointing_gives_the_same_arch_gradient() -> None:
    import pytest

    from lightning_nas.spaces.darts_cell import DartsCellSpace

    space = NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4)
    plain, checkpointed = DartsModule(space, partial_channels=2), DartsModule(space, partial_channels=2,
                                                                             activation_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    assert all(cell.checkpoint for cell in checkpointed.network.modules() if hasattr(cell, "checkpoint"))
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    grads = [torch.autograd.grad(F.cross_entropy(m(x), y), m.arch_parameters()) for m in (plain, checkpointed)]
    torch.testing.assert_close(grads[0], grads[1])
    with pytest.raises(ValueError, match="nb201"):
        DartsModule(DartsCellSpace((1, 8, 8), 3, num_cells=3, channels=4), activation_checkpointing=True)



def test_forward_differences_start_from_the_weight_steps_alpha_gradient(monkeypatch, tmp_path) -> None:
    """One training pass fewer than central differences, based on the weight step's own alpha gradient.
    (Central and forward results are not compared here: on ReLU networks a finite-difference Hessian-vector
    product at DARTS's eps is dominated by activation kinks; the tiny smooth problem in test_darts.py checks
    both against autograd.)"""
    from lightning_nas.strategies import darts_utils

    space = NB201Space((1, 8, 8), 3, cells_per_stage=1, channels=4)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
    torch.manual_seed(0)
    initial = DartsModule(space, order="second").state_dict()
    probe = DartsModule(space, order="second")
    probe.load_state_dict(initial)
    expected_base = torch.autograd.grad(F.cross_entropy(probe(batch[0]), batch[1]), probe.arch_parameters())
    seen: dict[str, dict] = {}
    for mode in ("central", "forward"):
        module = DartsModule(space, order="second", hessian_difference=mode, output_dir=tmp_path / mode)
        module.load_state_dict(initial)
        record: dict = {"loss_calls": 0}
        real_loss = module._loss

        def counted(*args, _record=record, _loss=real_loss):  # type: ignore[no-untyped-def]
            _record["loss_calls"] += 1
            return _loss(*args)

        def spy(*args, _record=record, **kwargs):  # type: ignore[no-untyped-def]
            _record["train_arch_grads"] = kwargs.get("train_arch_grads")
            return darts_utils.unrolled_arch_gradients(*args, **kwargs)

        monkeypatch.setattr(module, "_loss", counted)
        monkeypatch.setattr("lightning_nas.strategies.darts.unrolled_arch_gradients", spy)
        batches = torch.utils.data.DataLoader([{"train": batch, "val": batch}], batch_size=None)
        trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                            default_root_dir=tmp_path / mode)
        trainer.fit(module, train_dataloaders=batches)
        seen[mode] = record
    assert seen["central"]["train_arch_grads"] is None
    assert (seen["central"]["loss_calls"], seen["forward"]["loss_calls"]) == (3, 2)  # w', w+ and w- / w', w+
    for base, want in zip(seen["forward"]["train_arch_grads"], expected_base, strict=True):
        torch.testing.assert_close(base, want, rtol=1e-4, atol=1e-7)
