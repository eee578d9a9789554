"""Zero-cost proxies: score an untrained candidate from one batch at initialisation.

Proxies (higher is better for all of them):

* ``synflow`` (Tanaka et al., 2020; Abdelfattah et al., 2021): ``sum |theta * dR/dtheta|`` with
  ``R`` the summed output of the network with absolute-valued weights on an all-ones input
  (float64, eval mode, data-free).
* ``grad_norm``: the sum over parameters of the L2 norm of the cross-entropy gradient.
* ``snip`` (Lee et al., 2019): ``sum |theta * dL/dtheta|`` for the cross-entropy loss ``L``.
* ``jacob_cov`` (Mellor et al., 2020, v1): ``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues
  ``v`` of the correlation matrix of per-sample input Jacobians, ``k = 1e-5``.
* ``naswot`` (Mellor et al., 2021): ``log |det K|`` of the kernel ``K = C C^T + (1 - C)(1 - C)^T``
  of binary codes ``C`` (which activation inputs are positive, per sample); activation modules
  (ReLU, GELU, SiLU, ...) are hooked, or every leaf module's output if the network has none.

:class:`ProxyEvaluator` reports its proxy as ``search/proxy`` (and ``proxy/<name>``), *not* as
``search/val_acc``: a proxy is on its own scale, so weight it explicitly in the objective, e.g.
``Objective({"search/proxy": 1.0})``. It also reports ``model/params`` and ``model/macs``.
:func:`proxy_features` gives every proxy at once, as inputs to a learned accuracy predictor.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator
from lightning_nas.evaluators.train import derive_seed, seeded
from lightning_nas.hardware.profile import count_macs, count_params
from lightning_nas.spaces.base import SearchSpace

__all__ = ["PROXIES", "ProxyEvaluator", "grad_norm", "jacob_cov", "naswot", "proxy_features", "snip", "synflow"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.ELU, nn.Mish, nn.PReLU)


def _loss_backward(model: nn.Module, batch: Batch) -> None:
    model.train()
    model.zero_grad()
    torch.autograd.backward(F.cross_entropy(model(batch[0]), batch[1]))


def synflow(model: nn.Module, batch: Batch) -> float:
    """Synaptic flow of a copy of ``model`` (data-free: only the input shape of ``batch`` is used)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for param in net.parameters():
            param.abs_()
    net.zero_grad()
    torch.autograd.backward(net(torch.ones((1, *batch[0].shape[1:]), dtype=torch.float64)).sum())
    return float(sum((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))


def grad_norm(model: nn.Module, batch: Batch) -> float:
    """Summed per-parameter L2 norms of the cross-entropy gradient on ``batch``."""
    net = copy.deepcopy(model)
    _loss_backward(net, batch)
    return float(sum(p.grad.norm() for p in net.parameters() if p.grad is not None))


def snip(model: nn.Module, batch: Batch) -> float:
    """Connection sensitivity ``sum |theta * dL/dtheta|`` on ``batch``."""
    net = copy.deepcopy(model)
    _loss_backward(net, batch)
    return float(sum((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))


def jacob_cov(model: nn.Module, batch: Batch) -> float:
    """Jacobian covariance score of the input Jacobians of ``batch`` (needs a batch of 2 or more)."""
    net = copy.deepcopy(model).train()
    x = batch[0].clone().requires_grad_(True)
    torch.autograd.backward(net(x).sum())
    assert x.grad is not None
    jacobians = x.grad.reshape(x.shape[0], -1).double()
    corr = torch.nan_to_num(torch.corrcoef(jacobians), nan=0.0)
    eigenvalues = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    k = 1e-5
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def naswot(model: nn.Module, batch: Batch) -> float:
    """``log |det K|`` of the binary activation-code kernel of ``batch`` (Mellor et al., 2021)."""
    net = copy.deepcopy(model).train()
    codes: list[torch.Tensor] = []
    hooked: list[nn.Module] = [m for m in net.modules() if isinstance(m, _ACTIVATIONS)]
    if hooked:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            codes.append((args[0].detach() > 0).flatten(1).double())
    else:
        hooked = [m for m in net.modules() if not list(m.children())]

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.dim() > 1:
                codes.append((output.detach() > 0).flatten(1).double())
    handles = [m.register_forward_hook(hook) for m in hooked]
    try:
        with torch.no_grad():
            net(batch[0])
    finally:
        for handle in handles:
            handle.remove()
    if not codes:
        raise ValueError("naswot: the network has no activation to read binary codes from")
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel)[1])


PROXIES: dict[str, Callable[[nn.Module, Batch], float]] = {
    "synflow": synflow,
    "grad_norm": grad_norm,
    "snip": snip,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
}
"""Every proxy by name; each takes ``(model, (inputs, targets))`` and leaves ``model`` untouched."""


def proxy_features(model: nn.Module, batch: Batch) -> dict[str, float]:
    """Every proxy of ``model`` on ``batch`` plus its parameter count (features for a learned predictor).

    Args:
        model: a network at initialisation (not modified: each proxy works on a copy).
        batch: ``(inputs, integer targets)``.

    Returns:
        ``{"proxy/synflow": ..., "proxy/grad_norm": ..., "proxy/snip": ..., "proxy/jacob_cov": ...,
        "proxy/naswot": ..., "model/params": ...}``.

    Example:
        >>> proxy_features(model, (torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))))  # doctest: +SKIP
    """
    features = {f"proxy/{name}": fn(model, batch) for name, fn in PROXIES.items()}
    features["model/params"] = float(count_params(model))
    return features


class ProxyEvaluator(Evaluator):
    """Scores a candidate with one zero-cost proxy on one training batch at initialisation.

    The network is initialised like :class:`~lightning_nas.evaluators.TrainEvaluator` does (weights
    from the seed derived from ``(seed, arch.digest())``) and the batch is the first
    ``batch_size`` training samples drawn with ``seed``, so scores are reproducible. Reports
    ``search/proxy``, ``proxy/<proxy>``, ``model/params`` and ``model/macs``; a non-finite proxy or
    an exception gives a failed result. There is no test-split report (use a train evaluator).

    Args:
        datamodule: a LightningDataModule with a ``train_dataloader``.
        proxy: one of :data:`PROXIES`.
        batch_size: samples in the scoring batch.
        seed: seed of the batch draw and of the weight initialisation.

    Example:
        >>> evaluator = ProxyEvaluator(datamodule, proxy="naswot")  # doctest: +SKIP
        >>> evaluator.evaluate(space, arch).metrics["search/proxy"]  # doctest: +SKIP
        812.4
    """

    def __init__(self, datamodule: L.LightningDataModule, proxy: str = "naswot", batch_size: int = 64,
                 seed: int = 0) -> None:
        if proxy not in PROXIES:
            raise ValueError(f"evaluator.proxy must be one of {sorted(PROXIES)}, got {proxy!r}")
        for key, value, low in (("batch_size", batch_size, 2), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"evaluator.{key} must be an int >= {low}, got {value!r}")
        self.datamodule, self.proxy, self.batch_size, self.seed = datamodule, proxy, batch_size, seed
        self._batch: Batch | None = None

    def batch(self) -> Batch:
        """The scoring batch (drawn once, then reused for every candidate)."""
        if self._batch is None:
            self.datamodule.prepare_data()
            self.datamodule.setup("fit")
            xs: list[torch.Tensor] = []
            ys: list[torch.Tensor] = []
            with seeded(self.seed):
                for x, y, *_ in self.datamodule.train_dataloader():
                    xs.append(x)
                    ys.append(y)
                    if sum(len(b) for b in xs) >= self.batch_size:
                        break
            self._batch = (torch.cat(xs)[: self.batch_size], torch.cat(ys)[: self.batch_size])
        return self._batch

    def evaluate(self, space: SearchSpace, arch: Architecture) -> EvalResult:
        """``search/proxy`` of ``arch`` at initialisation, plus params and MACs; never raises."""
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            with seeded(derive_seed(self.seed, arch.digest(), "init")):
                model = space.build(arch)
            metrics["model/params"] = float(count_params(model))
            metrics["model/macs"] = float(count_macs(model, space.input_shape))
            with seeded(derive_seed(self.seed, arch.digest(), "proxy")):
                value = PROXIES[self.proxy](model, self.batch())
            metrics[f"proxy/{self.proxy}"] = value
            if not math.isfinite(value):
                raise FloatingPointError(f"{self.proxy} is {value}")
            metrics["search/proxy"] = value
        except Exception as error:  # a bad candidate must not end the search
            log.debug("proxy of %s failed", arch.digest(), exc_info=True)
            return EvalResult.failed(f"{type(error).__name__}: {error}", metrics, time.perf_counter() - started)
        return EvalResult("ok", metrics, duration_s=time.perf_counter() - started)
