"""Ray tasks: evaluate candidates on a local Ray instance or an existing cluster (``pip install ray``)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator, safe_evaluate
from lightning_nas.executors.base import Executor, check_retry_options
from lightning_nas.spaces.base import SearchSpace

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)


def _evaluate_task(evaluator: Evaluator, space: SearchSpace, arch: Architecture) -> EvalResult:
    return safe_evaluate(evaluator, space, arch)


class RayExecutor(Executor):
    """Evaluates each candidate as a Ray task (one CPU each); Ray retries tasks whose worker died.

    ``address="auto"`` (or ``"ray://..."``) joins an existing cluster; ``None`` starts a local Ray
    instance with ``num_cpus`` CPUs (all when None), whose workers see this process's ``sys.path``.
    :meth:`close` shuts Ray down only if this executor started it. At most one task per CPU runs
    at once, so ``timeout_s`` measures running time, not queueing; it does include the start of a
    fresh Ray worker (importing torch: seconds), so keep it well above that.

    Args:
        address: cluster to join, or None to start a local instance.
        num_cpus: CPUs of a local instance (ignored when joining a cluster).
        retries: re-runs of a candidate whose worker died (Ray's ``max_retries``).
        timeout_s: seconds one candidate may run before it is cancelled (None: no limit).

    Example:
        >>> with RayExecutor(num_cpus=2) as executor:  # doctest: +SKIP
        ...     results = executor.map_evaluate(evaluator, space, archs)
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, retries: int = 1,
                 timeout_s: float | None = None) -> None:
        if num_cpus is not None and (not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 1):
            raise ValueError(f"executor.num_cpus must be None or an int >= 1, got {num_cpus!r}")
        check_retry_options(retries, timeout_s)
        try:
            import ray
        except ImportError as error:
            raise ValueError("executor: RayExecutor needs ray (pip install 'lightning_nas[ray]')") from error
        self.address, self.num_cpus, self.retries = address, num_cpus, retries
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            self._init()
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_evaluate_task)

    def _init(self) -> None:
        if self.address is not None:
            self._ray.init(address=self.address, log_to_driver=False)
        else:
            path = os.pathsep.join(p for p in sys.path if p)
            self._ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                           runtime_env={"env_vars": {"PYTHONPATH": path}})
            self._started = True
        log.info("ray %s: %s", "started" if self._started else "joined", self._ray.cluster_resources())

    def map_evaluate(self, evaluator: Evaluator, space: SearchSpace,
                     archs: Sequence[Architecture]) -> list[EvalResult]:
        ray = self._ray
        refs = ray.put(evaluator), ray.put(space)
        queue = list(enumerate(archs))[::-1]
        running: dict[Any, tuple[int, Architecture, float]] = {}
        results: dict[int, EvalResult] = {}
        while queue or running:
            while queue and len(running) < self.parallelism:
                index, arch = queue.pop()
                running[self._remote.remote(*refs, arch)] = (index, arch, time.monotonic())
            done, _ = ray.wait(list(running), num_returns=1, timeout=self._wait_time(running))
            for ref in done:
                index, arch, _started = running.pop(ref)
                results[index] = self._fetch(ref, arch)
            self._cancel_overdue(running, results)
        return [results[i] for i in range(len(archs))]

    def _wait_time(self, running: dict[Any, tuple[int, Architecture, float]]) -> float | None:
        if self.timeout_s is None:
            return None
        now = time.monotonic()
        return max(0.0, min(started + self.timeout_s - now for _, _, started in running.values()))

    def _fetch(self, ref: Any, arch: Architecture) -> EvalResult:
        try:
            result: EvalResult = self._ray.get(ref)
            return result
        except self._ray.exceptions.RayError as error:  # worker crashed after all retries, or lost
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("worker died on %s: %s", arch.digest(), reason)
            return EvalResult.failed(f"worker died: {type(error).__name__}: {reason} "
                                     f"after {self.retries + 1} attempt(s)")

    def _cancel_overdue(self, running: dict[Any, tuple[int, Architecture, float]],
                        results: dict[int, EvalResult]) -> None:
        if self.timeout_s is None:
            return
        now = time.monotonic()
        for ref, (index, arch, started) in list(running.items()):
            if now - started >= self.timeout_s:
                self._ray.cancel(ref, force=True)
                del running[ref]
                log.warning("candidate %s timed out after %.1fs", arch.digest(), now - started)
                results[index] = EvalResult.failed(f"timeout: still running after {self.timeout_s:g}s",
                                                   duration_s=now - started)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
