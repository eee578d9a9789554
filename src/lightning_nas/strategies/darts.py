"""DARTS / PC-DARTS: differentiable architecture search as a LightningModule (manual optimisation).

Each training step makes an architecture step on a validation batch (after ``warmup_epochs``) and a
weight step on a training batch; :class:`BilevelDataModule` zips the train and val loaders of any
datamodule so one batch carries both.

DDP: alphas (and PC-DARTS betas) are ``nn.Parameter`` in the state_dict. The weight step goes through
``manual_backward``, so DDP all-reduces the weight gradients. The architecture gradient is computed with
``torch.autograd.grad`` (outside the DDP reducer) and then averaged over ranks with
``trainer.strategy.reduce``; since every rank starts from the same alphas and Adam state and applies the
same averaged gradient, the architecture step is identical on every rank (checked with a 2-process gloo
run: alphas and weights match bit for bit; BatchNorm running statistics stay per rank unless the Trainer
uses ``sync_batchnorm``). The derived genotype, hence the collapse guard's ``should_stop``, is the same on
every rank. Files and W&B images are written on rank zero only.

Second order: the virtual step ``w' = w - lr (grad + wd w)`` leaves out SGD momentum, and its extra forward
passes update BatchNorm running statistics (the reference implementation also adds the momentum buffer).
Its ``grad`` is the weight step's own training gradient, computed once before the architecture step (so
the weight step sees the alphas of before that step, not after it: one forward-backward pass fewer per step).

Example:
    >>> from lightning_nas.spaces.nb201 import NB201Space
    >>> module = DartsModule(NB201Space((1, 8, 8), 10, cells_per_stage=1, channels=4))
    >>> sorted(name for name, _ in module.named_parameters() if name.startswith("alpha"))
    ['alpha_cell']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader, rank_zero_only
from torch import nn
from torch.func import functional_call

from lightning_nas.arch import Architecture
from lightning_nas.evaluators.base import safe_evaluate
from lightning_nas.spaces.fused_cell import FusedNB201Cell
from lightning_nas.strategies.base import SearchContext, SearchMethod
from lightning_nas.strategies.darts_utils import count_ops, plot_alphas, unrolled_arch_gradients

__all__ = ["BilevelDataModule", "DartsModule", "RelaxableSpace"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


class RelaxableSpace(Protocol):
    """A search space with a continuous relaxation (``DartsCellSpace``, ``NB201Space``)."""

    op_names: tuple[str, ...]

    def relaxed(self, partial_channels: int = 1) -> nn.Module: ...

    def alpha_shapes(self) -> dict[str, tuple[int, int]]: ...

    def node_weights(
        self, probs: Mapping[str, torch.Tensor], edges: Mapping[str, torch.Tensor] | None = None
    ) -> Any: ...

    def derive(
        self,
        probs: Mapping[str, np.ndarray],
        edge_scores: Mapping[str, np.ndarray] | None = None,
        max_skip_connections: int | None = None,
    ) -> Architecture: ...


class BilevelDataModule(L.LightningDataModule):
    """Wrap a datamodule so each training batch is ``{"train": (x, y), "val": (x, y)}``.

    Args:
        datamodule: any LightningDataModule with train and val loaders.
        mode: ``CombinedLoader`` mode; ``max_size_cycle`` cycles the shorter loader.

    Example:
        >>> from lightning_nas.data import DigitsDataModule  # doctest: +SKIP
        >>> bilevel = BilevelDataModule(DigitsDataModule())  # doctest: +SKIP
    """

    def __init__(
        self,
        datamodule: L.LightningDataModule,
        mode: Literal["min_size", "max_size_cycle", "max_size"] = "max_size_cycle",
    ) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.mode = mode

    @property
    def input_shape(self) -> Any:
        return getattr(self.datamodule, "input_shape")  # noqa: B009

    @property
    def num_classes(self) -> Any:
        return getattr(self.datamodule, "num_classes")  # noqa: B009

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str) -> None:
        self.datamodule.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        loaders = {"train": self.datamodule.train_dataloader(), "val": self.datamodule.val_dataloader()}
        return CombinedLoader(loaders, mode=self.mode)

    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()


def _check_arguments(
    order: str,
    collapse_action: str,
    partial_channels: int,
    warmup_epochs: int,
    max_skip_connections: int | None,
    epochs: int | None,
    hessian_difference: str,
) -> None:
    """Raise ``ValueError`` naming the first bad :class:`DartsModule` argument."""
    if order not in ("first", "second"):
        raise ValueError(f"order must be 'first' or 'second', got {order!r}")
    if hessian_difference not in ("central", "forward"):
        raise ValueError(f"hessian_difference must be 'central' or 'forward', got {hessian_difference!r}")
    if collapse_action not in ("warn", "stop", "cap"):
        raise ValueError(f"collapse_action must be 'warn', 'stop' or 'cap', got {collapse_action!r}")
    if partial_channels < 1 or warmup_epochs < 0:
        raise ValueError(f"need partial_channels >= 1, warmup_epochs >= 0; got {partial_channels}, {warmup_epochs}")
    if max_skip_connections is not None and max_skip_connections < 0:
        raise ValueError(f"max_skip_connections must be non-negative or None, got {max_skip_connections}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be positive or None, got {epochs}")


def _enable_checkpointing(network: nn.Module) -> None:
    """Turn on activation checkpointing in every fused relaxed cell of ``network``."""
    cells = [m for m in network.modules() if isinstance(m, FusedNB201Cell)]
    if not cells:
        raise ValueError("activation_checkpointing needs a space with fused relaxed cells (search_space=nb201)")
    for cell in cells:
        cell.checkpoint = True


class DartsModule(L.LightningModule, SearchMethod):
    """Differentiable architecture search over a relaxable space (DARTS, second-order DARTS, PC-DARTS).

    Args:
        space: a space with ``relaxed()`` (``darts_cell`` or ``nb201``).
        epochs: search epochs: the length of the cosine schedule (None: the trainer's ``max_epochs``);
            drivers build their ``Trainer(max_epochs=module.epochs)``.
        order: ``"first"`` (alphas follow the validation gradient at the current weights) or ``"second"``
            (unrolled one-step weights, finite-difference Hessian-vector product).
        hessian_difference: second order's Hessian-vector product: ``"central"`` differences (DARTS: two
            extra training passes, error O(eps^2)) or ``"forward"`` ones from the weight step's own
            alpha gradient (one extra pass, error O(eps); 1.7x first order's step time against central's
            2.3x in ``benchmarks/darts_vs_nni.py``).
        warmup_epochs: epochs of weight steps only, before architecture steps start.
        partial_channels: PC-DARTS channel sampling factor K (1 = plain DARTS); with K > 1 a space with
            input choices (``darts_cell``) also learns edge-normalisation betas.
        weight_lr: initial SGD learning rate (cosine-annealed to ``min_weight_lr`` over ``max_epochs``).
        min_weight_lr: final SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        arch_lr: Adam learning rate of the architecture parameters.
        arch_betas: Adam betas.
        arch_weight_decay: Adam weight decay.
        grad_clip: gradient-norm clip of the weight step (0 disables it).
        max_skip_connections: the collapse guard's limit on skip connections in the (normal) cell, or None.
        collapse_action: over the limit, ``"warn"``, ``"stop"`` training, or ``"cap"`` the derived genotype.
        output_dir: where ``alphas/epoch_XXX.png`` and ``genotype.json`` go; None means
            ``<trainer.default_root_dir>/darts``.
        seed: seed of the alpha initialisation.
        activation_checkpointing: keep only each relaxed cell's input for the backward pass and run the
            cell again there: less memory, more time (``nb201`` only).

    Example:
        >>> from lightning_nas.spaces.darts_cell import DartsCellSpace
        >>> module = DartsModule(DartsCellSpace((1, 8, 8), 10, num_cells=3, channels=4), order="second")
        >>> [tuple(p.shape) for p in module.arch_parameters()]
        [(14, 8), (14, 8)]
    """

    def __init__(
        self,
        space: RelaxableSpace,
        epochs: int | None = None,
        order: Literal["first", "second"] = "first",
        warmup_epochs: int = 0,
        partial_channels: int = 1,
        weight_lr: float = 0.025,
        min_weight_lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        arch_lr: float = 3e-4,
        arch_betas: Sequence[float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        max_skip_connections: int | None = None,
        collapse_action: Literal["warn", "stop", "cap"] = "warn",
        output_dir: str | Path | None = None,
        seed: int = 0,
        activation_checkpointing: bool = False,
        hessian_difference: Literal["central", "forward"] = "central",
    ) -> None:
        super().__init__()
        _check_arguments(order, collapse_action, partial_channels, warmup_epochs, max_skip_connections, epochs,
                         hessian_difference)
        if len(arch_betas) != 2:
            raise ValueError(f"arch_betas must hold 2 numbers, got {arch_betas!r}")
        self.automatic_optimization = False
        self.epochs = epochs
        self.space = space
        self.order, self.warmup_epochs, self.partial_channels = order, warmup_epochs, partial_channels
        self.hessian_difference = hessian_difference
        self.weight_lr, self.min_weight_lr = weight_lr, min_weight_lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.arch_lr, self.arch_weight_decay = arch_lr, arch_weight_decay
        self.arch_betas = (float(arch_betas[0]), float(arch_betas[1]))
        self.grad_clip = grad_clip
        self.max_skip_connections, self.collapse_action = max_skip_connections, collapse_action
        self._output_dir = None if output_dir is None else Path(output_dir)
        if not callable(getattr(space, "relaxed", None)):
            raise ValueError(f"DARTS needs a relaxable search space (search_space=darts_cell or nb201), "
                             f"got search_space={getattr(space, 'name', type(space).__name__)}")
        self.network = space.relaxed(partial_channels)
        if activation_checkpointing:
            _enable_checkpointing(self.network)
        self.kinds = list(space.alpha_shapes())
        self.edge_normalization = partial_channels > 1 and bool(getattr(space, "edge_normalization", False))
        self._init_arch_parameters(torch.Generator().manual_seed(seed))
        self.genotype: Architecture | None = None

    def _init_arch_parameters(self, generator: torch.Generator) -> None:
        """``alpha_<kind>`` ``(edges, ops)`` and, for PC-DARTS, ``beta_<kind>`` ``(edges,)``, all 1e-3 N(0, 1)."""
        for kind, shape in self.space.alpha_shapes().items():
            self.register_parameter(f"alpha_{kind}", nn.Parameter(1e-3 * torch.randn(*shape, generator=generator)))
            if self.edge_normalization:
                self.register_parameter(f"beta_{kind}", nn.Parameter(1e-3 * torch.randn(shape[0], generator=generator)))

    # ----- parameters and forward -------------------------------------------------------------
    def alphas(self) -> dict[str, nn.Parameter]:
        """Architecture op parameters by cell kind (``normal``/``reduce`` or ``cell``)."""
        return {kind: getattr(self, f"alpha_{kind}") for kind in self.kinds}

    def betas(self) -> dict[str, nn.Parameter] | None:
        """PC-DARTS edge-normalisation parameters by cell kind, or None."""
        return {kind: getattr(self, f"beta_{kind}") for kind in self.kinds} if self.edge_normalization else None

    def arch_parameters(self) -> list[nn.Parameter]:
        """Alphas (and betas): optimised by Adam on validation batches."""
        return [*self.alphas().values(), *(self.betas() or {}).values()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Network weights: optimised by SGD on training batches."""
        return list(self.network.parameters())

    def arch_weights(self) -> Any:
        """The relaxed network's ``weights`` argument: softmaxed alphas (and betas), differentiable."""
        probs = {kind: torch.softmax(alpha, dim=-1) for kind, alpha in self.alphas().items()}
        return self.space.node_weights(probs, self.betas())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.arch_weights())

    def _loss(self, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """Training loss with the network weights replaced by ``params`` (for the unrolled step)."""
        x, y = batch
        logits = functional_call(self.network, params, (x,), {"weights": self.arch_weights()})
        return F.cross_entropy(logits, y)

    # ----- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        weights = torch.optim.SGD(
            self.weight_parameters(), lr=self.weight_lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        arch = torch.optim.Adam(
            self.arch_parameters(), lr=self.arch_lr, betas=self.arch_betas, weight_decay=self.arch_weight_decay
        )
        epochs = self.epochs or (int(self.trainer.max_epochs or 1) if self._trainer is not None else 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weights, T_max=max(1, epochs), eta_min=self.min_weight_lr)
        return [weights, arch], [schedule]

    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> None:
        weight_opt, arch_opt = cast(list[Any], self.optimizers())
        search = self.current_epoch >= self.warmup_epochs
        if search and self.order == "first":
            self._arch_step(batch["train"], batch["val"], arch_opt, weight_opt)
        weight_opt.zero_grad()
        for p in self.arch_parameters():
            p.grad = None
        x, y = batch["train"]
        forward_hvp = search and self.order == "second" and self.hessian_difference == "forward"
        # forward differences start from this pass's alpha gradient: keep the alphas attached for it
        logits = self.network(x, self.arch_weights() if forward_hvp else self._weight_step_arch_weights())
        loss = F.cross_entropy(logits, y)
        self.manual_backward(loss)
        if search and self.order == "second":  # the virtual step reuses this training gradient
            base = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                    for p in self.arch_parameters()] if forward_hvp else None
            self._arch_step(batch["train"], batch["val"], arch_opt, weight_opt, train_arch_grads=base)
        if self.grad_clip > 0:
            self.clip_gradients(weight_opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        weight_opt.step()
        for p in self.arch_parameters():
            p.grad = None
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log_dict({"darts/train_loss": loss.detach(), "darts/train_acc": acc}, prog_bar=True)

    def _weight_step_arch_weights(self) -> Any:
        """The alphas of the weight step, as constants: their gradient would be thrown away, and without
        it the backward pass skips the alpha terms and frees what only they keep. Under DDP they stay
        attached (the reducer expects a gradient for every parameter)."""
        if self._trainer is not None and self.trainer.world_size > 1:
            return self.arch_weights()
        with torch.no_grad():
            return self.arch_weights()

    def _arch_step(self, train: Batch, val: Batch, arch_opt: Any, weight_opt: Any,
                   train_arch_grads: list[torch.Tensor] | None = None) -> None:
        """One Adam step on the alphas; the gradient is averaged over ranks so every rank steps alike.
        ``train_arch_grads``: the weight step's alpha gradient, for forward differences (second order)."""
        arch_opt.zero_grad()
        params = self.arch_parameters()
        if self.order == "second":
            lr = float(weight_opt.param_groups[0]["lr"])
            weights: dict[str, torch.Tensor] = dict(self.network.named_parameters())
            train_grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in weights.values()]
            grads = unrolled_arch_gradients(
                self._loss, weights, params, train, val, lr, self.weight_decay, train_grads=train_grads,
                train_arch_grads=train_arch_grads,
            )
        else:
            loss = F.cross_entropy(self(val[0]), val[1])
            found = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, found, strict=True)]
            self.log("darts/arch_loss", loss.detach())
        for p, g in zip(params, grads, strict=True):
            p.grad = self.trainer.strategy.reduce(g, reduce_op="mean") if self._trainer is not None else g
        arch_opt.step()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log_dict(
            {"darts/val_loss": F.cross_entropy(logits, y), "darts/val_acc": acc}, prog_bar=True, sync_dist=True
        )

    def on_train_epoch_end(self) -> None:
        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()  # type: ignore[union-attr]
        self._epoch_report()

    # ----- derivation and collapse guard ------------------------------------------------------
    def alpha_probs(self) -> dict[str, np.ndarray]:
        """Softmaxed alphas per cell kind, as numpy arrays ``(edges, ops)``."""
        return {kind: torch.softmax(a.detach().float(), dim=-1).cpu().numpy() for kind, a in self.alphas().items()}

    def run(self, context: SearchContext) -> None:
        """Search with DARTS (skipped when resuming a finished search), then score the derived genotype."""
        context.notify("on_search_start", context.space, context.history)
        if len(context.history):
            log.info("resumed: the DARTS genotype %s is already evaluated", context.history[0].arch.digest())
        else:
            trainer = L.Trainer(max_epochs=self.epochs or 10, accelerator=context.accelerator, devices=1, logger=False,
                                enable_checkpointing=False, enable_model_summary=False,
                                enable_progress_bar=context.progress, num_sanity_val_steps=0)
            trainer.fit(self, datamodule=BilevelDataModule(context.datamodule))
            arch = self.derive_genotype()
            if context.logger is not None:
                context.logger.log_images("darts/alphas", sorted((self.output_dir / "alphas").glob("*.png")))
            log.info("DARTS genotype %s: %s", arch.digest(), context.space.describe(arch))
            result = safe_evaluate(context.evaluator, context.space, arch)
            context.notify("on_candidate_end", context.history.append(arch, result, source="darts"), context.history)
        context.notify("on_search_end", context.history)

    def derive_genotype(self) -> Architecture:
        """The discrete architecture of the current alphas, for ``space.build`` (capped under ``"cap"``)."""
        return self._derive(self.max_skip_connections if self.collapse_action == "cap" else None)

    def _derive(self, cap: int | None) -> Architecture:
        """Derive with PC-DARTS edge scores when learned, capping skips at ``cap``."""
        edge_scores = None
        betas = self.betas()
        if betas is not None:
            weights = self.space.node_weights(self.alpha_probs_tensors(), betas)
            edge_scores = {k: torch.cat([b for _, b in nodes]).detach().cpu().numpy() for k, nodes in weights.items()}
        return self.space.derive(self.alpha_probs(), edge_scores, cap)

    def alpha_probs_tensors(self) -> dict[str, torch.Tensor]:
        """Softmaxed alphas per cell kind, detached tensors."""
        return {kind: torch.softmax(a.detach(), dim=-1) for kind, a in self.alphas().items()}

    @property
    def output_dir(self) -> Path:
        if self._output_dir is not None:
            return self._output_dir
        root = self.trainer.default_root_dir if self._trainer is not None else "."
        return Path(root) / "darts"

    def _normal_prefix(self) -> str:
        return "normal/" if "normal" in self.kinds else f"{self.kinds[0]}/"

    def _epoch_report(self) -> None:
        """Derive the genotype, log the collapse statistics, act on collapse, write heatmap and genotype."""
        genotype = self.derive_genotype()
        uncapped = genotype if self.collapse_action != "cap" else self._derive(None)
        prefix = self._normal_prefix()
        free = count_ops(genotype, prefix)
        skips = count_ops(uncapped, prefix, frozenset({"skip_connect"}))
        self.log_dict({"darts/param_free_ops": float(free), "darts/skip_connections": float(skips)}, sync_dist=True)
        if self.max_skip_connections is not None and skips > self.max_skip_connections:
            log.warning(
                "DARTS collapse guard: %d skip connections in the normal cell (limit %d), action %s",
                skips,
                self.max_skip_connections,
                self.collapse_action,
            )
            if self.collapse_action == "stop":
                self.trainer.should_stop = True
        self.genotype = genotype
        self._write_epoch(genotype)

    @rank_zero_only
    def _write_epoch(self, genotype: Architecture) -> None:
        out = self.output_dir
        path = plot_alphas(
            self.alpha_probs(),
            self.space.op_names,
            out / "alphas" / f"epoch_{self.current_epoch:03d}.png",
            title=f"epoch {self.current_epoch}",
        )
        genotype.save(out / "genotype.json")
        genotype.save(out / "genotypes" / f"epoch_{self.current_epoch:03d}.json")
        try:
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:  # pragma: no cover - lightning always ships it
            return
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="darts/alphas", images=[str(path)], step=self.global_step)
