"""Forked worker processes that score supernet subnets in parallel, sharing the supernet's memory.

The pool is forked from the process that holds the trained supernet and its cached batches, so the
workers read the parent's tensors (copy-on-write) instead of receiving a pickled copy; only
architectures and results cross the pipes. Each worker runs one intra-op thread. A pool serves one
(evaluator, space) pair while the supernet's tensors are unchanged: :func:`weights_fingerprint`
tells when an optimizer step or a loaded state dict made it stale.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
from torch import nn

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.executors.lifetime import exit_with_parent
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ForkedScorer", "can_fork", "weights_fingerprint"]

log = logging.getLogger(__name__)

# what the next forked pool scores; set in the parent just before the fork, read in the children
_PENDING: dict[str, Any] = {}
_WORKER: dict[str, Any] = {}


def can_fork(model: nn.Module) -> bool:
    """Whether worker processes may be forked for ``model``: the ``fork`` start method exists and the
    model's tensors are on the CPU (a forked child cannot use an accelerator its parent initialised)."""
    on_cpu = all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    return on_cpu and "fork" in mp.get_all_start_methods()


def weights_fingerprint(model: nn.Module) -> int:
    """Changes whenever a parameter or buffer of ``model`` is replaced or modified in place."""
    return hash(tuple((id(t), t._version) for t in [*model.parameters(), *model.buffers()]))


def _start_worker() -> None:
    exit_with_parent()  # a killed search leaves no scorer behind
    torch.set_num_threads(1)
    _WORKER.update(_PENDING)


def _score(arch: Architecture) -> EvalResult:
    result: EvalResult = _WORKER["evaluator"].evaluate(_WORKER["space"], arch)
    return result


class ForkedScorer:
    """``workers`` forked processes scoring with a copy of ``evaluator`` (its state at the fork).

    Args:
        evaluator: has ``worker_copy()``, the evaluator the children run (its ``evaluate`` never raises).
        space: the space the architectures belong to.
        workers: processes.
        fingerprint: identifies the state scored (see :func:`weights_fingerprint`).
    """

    def __init__(self, evaluator: Any, space: SearchSpace, workers: int, fingerprint: tuple[Any, ...]) -> None:
        self.fingerprint = fingerprint
        self.workers = workers
        _PENDING.update(evaluator=evaluator.worker_copy(), space=space)
        try:
            self._pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_start_worker)
            self._pool.submit(int).result()  # the first task forks every worker, while _PENDING holds
        finally:
            _PENDING.clear()

    def map(self, archs: Sequence[Architecture]) -> list[EvalResult | None]:
        """One result per architecture, in order; None where the pool broke (a worker died) before it."""
        futures: list[Future[EvalResult]] = [self._pool.submit(_score, arch) for arch in archs]
        results: list[EvalResult | None] = []
        for arch, future in zip(archs, futures, strict=True):
            try:
                results.append(future.result())
            except BrokenProcessPool as error:
                log.warning("a scoring worker died (%s) on %s", error, arch.digest())
                results.append(None)
        return results

    @property
    def broken(self) -> bool:
        return bool(getattr(self._pool, "_broken", False))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
