"""Robustness metrics: accuracy under input noise, common corruptions and L-inf adversarial attacks.

Inputs are normalised tensors ``(pixels - mean) / std``; every perturbation is applied in
``[0, 1]`` pixel space, clipped to it, and normalised again, so perturbed inputs stay valid images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "fgsm", "gaussian_noise", "impulse_noise", "pgd",
           "robustness_report", "shot_noise"]

log = logging.getLogger(__name__)

Stats = Sequence[float] | None
SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std in pixel units
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),  # photons per unit intensity
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # fraction of salt-and-pepper pixels
}
"""Parameters of severities 1..5 of each corruption (as in ImageNet-C)."""


def _stats(x: torch.Tensor, mean: Stats, std: Stats) -> tuple[torch.Tensor, torch.Tensor]:
    channels = x.shape[1]
    m = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
    s = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
    if m.numel() not in (1, channels) or s.numel() not in (1, channels) or bool((s <= 0).any()):
        raise ValueError(f"mean/std need 1 or {channels} values (std > 0), got {mean!r} and {std!r}")
    shape = (1, -1, 1, 1)
    return m.to(x.device, x.dtype).view(shape), s.to(x.device, x.dtype).view(shape)


def _in_pixels(
    x: torch.Tensor, mean: Stats, std: Stats, perturb: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``perturb`` applied to ``x`` in clipped ``[0, 1]`` pixel space, normalised again."""
    m, s = _stats(x, mean, std)
    pixels = (x * s + m).clamp(0.0, 1.0)
    return (perturb(pixels).clamp(0.0, 1.0) - m) / s


def gaussian_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, mean: Stats = None, std: Stats = None
) -> torch.Tensor:
    """``x`` plus Gaussian noise of std ``sigma`` (pixel units), clipped to the valid range.

    Args:
        x: normalised images ``(N, C, H, W)``.
        sigma: noise std in ``[0, 1]`` pixel units.
        generator: torch generator for reproducible noise.
        mean: per-channel mean used to normalise ``x`` (``None``: ``x`` is in pixel space).
        std: per-channel std used to normalise ``x``.

    Example:
        >>> gaussian_noise(torch.zeros(1, 1, 2, 2), 0.1, torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 2, 2])
    """
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma!r}")
    return _in_pixels(x, mean, std, lambda p: p + sigma * torch.randn(
        p.shape, generator=generator, device=p.device, dtype=p.dtype))


def shot_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None, mean: Stats = None, std: Stats = None
) -> torch.Tensor:
    """Poisson (photon) noise of ``severity`` 1..5; arguments as in :func:`gaussian_noise`."""
    rate = _severity("shot_noise", severity)
    return _in_pixels(x, mean, std, lambda p: torch.poisson(p * rate, generator=generator) / rate)


def impulse_noise(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None, mean: Stats = None, std: Stats = None
) -> torch.Tensor:
    """Salt-and-pepper noise of ``severity`` 1..5; arguments as in :func:`gaussian_noise`."""
    amount = _severity("impulse_noise", severity)

    def perturb(p: torch.Tensor) -> torch.Tensor:
        u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
        salt = torch.ones_like(p)
        return torch.where(u < amount / 2, torch.zeros_like(p), torch.where(u < amount, salt, p))

    return _in_pixels(x, mean, std, perturb)


def _gaussian_corruption(
    x: torch.Tensor, severity: int, generator: torch.Generator | None = None, mean: Stats = None, std: Stats = None
) -> torch.Tensor:
    return gaussian_noise(x, _severity("gaussian_noise", severity), generator, mean, std)


def _severity(name: str, severity: int) -> float:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"{name} severity must be an int in 1..5, got {severity!r}")
    return SEVERITIES[name][severity - 1]


Corruption = Callable[[torch.Tensor, int, "torch.Generator | None", Stats, Stats], torch.Tensor]
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": _gaussian_corruption,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
}
"""Corruption name -> ``fn(x, severity, generator, mean, std)``."""


def corrupt(x: torch.Tensor, name: str, severity: int = 3, generator: torch.Generator | None = None,
            mean: Stats = None, std: Stats = None) -> torch.Tensor:
    """Apply the corruption ``name`` (a key of :data:`CORRUPTIONS`) at ``severity`` 1..5."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name](x, severity, generator, mean, std)


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # attacks work inside no_grad blocks too
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, mean: Stats = None,
         std: Stats = None) -> torch.Tensor:
    """Fast gradient sign attack: one L-inf step of ``eps`` (pixel units), clipped to valid images.

    Args:
        model: classifier (used as is; put it in eval mode first). Its gradients are not touched.
        x: normalised images; y: their labels.
        eps: L-inf radius in ``[0, 1]`` pixel units.
        mean: per-channel normalisation mean (``None``: ``x`` is in pixel space).
        std: per-channel normalisation std.
    """
    m, s = _stats(x, mean, std)
    grad = _input_grad(model, x, y)
    pixels = (x * s + m).clamp(0.0, 1.0)
    return ((pixels + eps * grad.sign()).clamp(0.0, 1.0) - m) / s


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        alpha: float | None = None, random_start: bool = True, generator: torch.Generator | None = None,
        mean: Stats = None, std: Stats = None) -> torch.Tensor:
    """Projected gradient descent (L-inf, pixel space), keeping the most damaging iterate per sample.

    Args:
        model, x, y, eps, mean, std: as in :func:`fgsm`.
        steps: gradient steps.
        alpha: step size (``None``: ``2.5 * eps / steps``).
        random_start: start from a uniform point in the eps-ball.
        generator: torch generator for the random start.
    """
    if steps < 1:
        raise ValueError(f"pgd steps must be at least 1, got {steps!r}")
    m, s = _stats(x, mean, std)
    step = 2.5 * eps / steps if alpha is None else alpha
    clean = (x * s + m).clamp(0.0, 1.0)
    adv = clean
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        adv = (clean + eps * noise).clamp(0.0, 1.0)
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    best = adv
    for _ in range(steps):
        grad = _input_grad(model, (adv - m) / s, y)
        adv = torch.min(torch.max(adv + step * grad.sign(), clean - eps), clean + eps).clamp(0.0, 1.0)
        with torch.no_grad():
            wrong = model((adv - m) / s).argmax(1) != y
        best = torch.where(fooled.view(-1, 1, 1, 1), best, adv)  # a fooling iterate is kept
        fooled |= wrong
    return ((best - m) / s).detach()


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def robustness_report(
    model: nn.Module, dataloader: Iterable[Any], mean: Stats = None, std: Stats = None,
    noise_levels: Sequence[float] = (0.1, 0.2, 0.3),
    corruptions: Sequence[str] = ("gaussian_noise", "shot_noise", "impulse_noise"), severity: int = 3,
    eps: float = 8 / 255, pgd_steps: int = 10, max_batches: int | None = None, seed: int = 0,
) -> dict[str, float]:
    """Clean, noisy, corrupted and adversarial accuracy of ``model`` (put in eval mode, restored after).

    Metrics: ``robust/clean_acc``, ``robust/noise_acc@{sigma}`` per noise level, ``robust/corrupt_acc``
    (mean over ``corruptions``), ``robust/adv_acc_fgsm``, ``robust/adv_acc_pgd``, and the ratios to
    clean accuracy ``robust/corrupt_ratio`` and ``robust/adv_ratio`` (PGD); ratios are 0 when clean
    accuracy is 0.

    Args:
        model: classifier; dataloader: yields ``(images, labels)`` (normalised images).
        mean, std: the normalisation of the images (``None``: they are in ``[0, 1]`` pixel space).
        noise_levels: Gaussian noise stds in pixel units.
        corruptions: names from :data:`CORRUPTIONS`, each applied at ``severity`` (1..5).
        eps: L-inf attack radius in pixel units; pgd_steps: PGD steps.
        max_batches: batches used (``None``: all).
        seed: seed of every random perturbation (the report is deterministic).

    Example:
        >>> robustness_report(model, loader, mean=(0.5,), std=(0.25,), max_batches=2)  # doctest: +SKIP
        {'robust/clean_acc': 0.97, ...}
    """
    for name in corruptions:
        if name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    keys = ["clean", *(f"noise@{lvl:g}" for lvl in noise_levels), *corruptions, "fgsm", "pgd"]
    correct = dict.fromkeys(keys, 0)
    total = 0
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        for index, (x, y) in enumerate(dataloader):
            if max_batches is not None and index >= max_batches:
                break
            _score_batch(model, x, y, correct, generator, mean, std, noise_levels, corruptions, severity,
                         eps, pgd_steps)
            total += int(y.shape[0])
    finally:
        model.train(was_training)
    return _summary(correct, total, noise_levels, corruptions)


def _score_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, correct: dict[str, int],
                 generator: torch.Generator, mean: Stats, std: Stats, noise_levels: Sequence[float],
                 corruptions: Sequence[str], severity: int, eps: float, pgd_steps: int) -> None:
    param = next(model.parameters(), None)
    device = x.device if param is None else param.device
    x, y = x.to(device), y.to(device)
    gen = generator if device.type == "cpu" else None
    correct["clean"] += _correct(model, x, y)
    for level in noise_levels:
        correct[f"noise@{level:g}"] += _correct(model, gaussian_noise(x, level, gen, mean, std), y)
    for name in corruptions:
        correct[name] += _correct(model, corrupt(x, name, severity, gen, mean, std), y)
    correct["fgsm"] += _correct(model, fgsm(model, x, y, eps, mean, std), y)
    correct["pgd"] += _correct(model, pgd(model, x, y, eps, pgd_steps, generator=gen, mean=mean, std=std), y)


def _summary(correct: dict[str, int], total: int, noise_levels: Sequence[float],
             corruptions: Sequence[str]) -> dict[str, float]:
    if total == 0:
        raise ValueError("robustness_report: the dataloader yielded no samples")
    acc = {k: v / total for k, v in correct.items()}
    clean = acc["clean"]
    corrupt_acc = sum(acc[c] for c in corruptions) / len(corruptions) if corruptions else clean
    metrics = {"robust/clean_acc": clean}
    metrics.update({f"robust/noise_acc@{lvl:g}": acc[f"noise@{lvl:g}"] for lvl in noise_levels})
    metrics["robust/corrupt_acc"] = corrupt_acc
    metrics["robust/adv_acc_fgsm"] = acc["fgsm"]
    metrics["robust/adv_acc_pgd"] = acc["pgd"]
    metrics["robust/corrupt_ratio"] = corrupt_acc / clean if clean > 0 else 0.0
    metrics["robust/adv_ratio"] = acc["pgd"] / clean if clean > 0 else 0.0
    log.debug("robustness report: %s", metrics)
    return metrics
