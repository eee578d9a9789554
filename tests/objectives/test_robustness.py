"""Robustness metrics: corruptions stay valid images, attacks hurt a trained model, reports are seeded."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_nas.evaluators  # noqa: F401  # imported first: objectives alone hits an import cycle
from lightning_nas.objectives.robustness import CORRUPTIONS, corrupt, fgsm, gaussian_noise, pgd, robustness_report

MEAN, STD = (0.5,), (0.25,)


def _pixels(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An easy task: is the left half of an 8x8 image brighter than the right half?"""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5
    x[:, :, :, :4] += 0.4 * y.view(-1, 1, 1, 1)
    x[:, :, :, 4:] += 0.4 * (1 - y).view(-1, 1, 1, 1)
    return (x - MEAN[0]) / STD[0], y


@cache
def _trained() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    x, y = _pixels(256)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("severity", [1, 5])
def test_corruptions_keep_shape_range_and_are_seeded(name: str, severity: int) -> None:
    x, _ = _pixels(8)
    out = corrupt(x, name, severity, torch.Generator().manual_seed(1), MEAN, STD)
    again = corrupt(x, name, severity, torch.Generator().manual_seed(1), MEAN, STD)
    assert out.shape == x.shape and torch.equal(out, again)
    pixels = out * STD[0] + MEAN[0]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert not torch.equal(out, x)


def test_gaussian_noise_level_and_bad_arguments() -> None:
    x = torch.full((4, 1, 16, 16), 0.5)
    noisy = gaussian_noise(x, 0.05, torch.Generator().manual_seed(0))
    assert 0.03 < float((noisy - x).std()) < 0.07
    with pytest.raises(ValueError, match=r"severity must be an int in 1\.\.5"):
        corrupt(x, "shot_noise", 6)
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        corrupt(x, "blur")


def test_attacks_stay_in_the_eps_ball_and_pgd_is_at_least_as_strong_as_fgsm() -> None:
    model = _trained()
    x, y = _pixels(128, seed=1)
    clean = float((model(x).argmax(1) == y).float().mean())
    assert clean > 0.95
    eps = 0.3
    for adv in (fgsm(model, x, y, eps, MEAN, STD),
                pgd(model, x, y, eps, 20, generator=torch.Generator().manual_seed(0), mean=MEAN, std=STD)):
        delta = (adv - x) * STD[0]
        assert float(delta.abs().max()) <= eps + 1e-5
        pixels = adv * STD[0] + MEAN[0]
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    with torch.no_grad():
        acc_fgsm = float((model(fgsm(model, x, y, eps, MEAN, STD)).argmax(1) == y).float().mean())
        adv_pgd = pgd(model, x, y, eps, 20, generator=torch.Generator().manual_seed(0), mean=MEAN, std=STD)
        acc_pgd = float((model(adv_pgd).argmax(1) == y).float().mean())
    assert acc_pgd <= acc_fgsm < clean
    assert all(p.grad is None for p in model.parameters())


def test_report_metrics_and_determinism() -> None:
    model = _trained()
    loader = DataLoader(TensorDataset(*_pixels(96, seed=2)), batch_size=32)
    report = robustness_report(model, loader, MEAN, STD, eps=0.3, pgd_steps=10, max_batches=2, seed=3)
    assert report == robustness_report(model, loader, MEAN, STD, eps=0.3, pgd_steps=10, max_batches=2, seed=3)
    expected = {"robust/clean_acc", "robust/noise_acc@0.1", "robust/noise_acc@0.2", "robust/noise_acc@0.3",
                "robust/corrupt_acc", "robust/adv_acc_fgsm", "robust/adv_acc_pgd", "robust/corrupt_ratio",
                "robust/adv_ratio"}
    assert set(report) == expected
    assert report["robust/adv_acc_pgd"] <= report["robust/adv_acc_fgsm"] < report["robust/clean_acc"]
    assert report["robust/adv_ratio"] == pytest.approx(report["robust/adv_acc_pgd"] / report["robust/clean_acc"])
    assert not model.training


def test_robustness_evaluator_adds_metrics_to_a_trained_candidate() -> None:
    from lightning_nas.data.digits import DigitsDataModule
    from lightning_nas.evaluators.robust import RobustnessEvaluator
    from lightning_nas.evaluators.train import TrainEvaluator
    from lightning_nas.objectives.score import Objective
    from lightning_nas.spaces.vit import VisionTransformerSpace

    data = DigitsDataModule(batch_size=32, max_train_samples=128, max_val_samples=64)
    space = VisionTransformerSpace((1, 8, 8), 10, num_layers=[1], num_heads=[2], mlp_ratios=[2.0], embed_dims=[16])
    inner = TrainEvaluator(data, max_epochs=1, max_steps=4, latency_repeats=2)
    evaluator = RobustnessEvaluator(inner, noise_levels=(0.1,), pgd_steps=3, max_batches=1)
    arch = space.sample(np.random.default_rng(0))
    result = evaluator.evaluate(space, arch)
    assert result.ok, result.error
    assert {"search/val_acc", "model/params", "robust/adv_ratio", "robust/noise_acc@0.1"} <= set(result.metrics)
    assert Objective({"robust/adv_ratio": 1.0})(result) == pytest.approx(result.metrics["robust/adv_ratio"])
    with pytest.raises(ValueError, match="unknown"):
        RobustnessEvaluator(inner, corruptions=("blur",))
    node = {"_target_": "lightning_nas.evaluators.TrainEvaluator", "max_epochs": 1, "max_steps": 4}
    built = RobustnessEvaluator(node, data, max_batches=1)
    assert built.inner.max_steps == 4 and built.trained_models == {}
