"""A local process pool (``spawn``) that survives dying workers and enforces per-candidate timeouts."""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import pickle
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.evaluators.base import Evaluator, safe_evaluate
from lightning_nas.executors.base import Executor, check_retry_options, exit_reason
from lightning_nas.executors.lifetime import exit_with_parent
from lightning_nas.spaces.base import SearchSpace

__all__ = ["ProcessExecutor"]

log = logging.getLogger(__name__)

_STARTED = "started"  # sent by a worker once the payload is loaded: the candidate's timeout starts then
_STARTUP_ALLOWANCE_S = 600.0  # a fresh worker may spend this long importing before its first candidate


def _worker_loop(conn: Connection, threads: int, nice: int = 0) -> None:
    """A process-pool worker: receives ``(token, payload | None, arch)``, sends back an EvalResult."""
    exit_with_parent()  # a killed search leaves no worker training on
    if nice:
        os.nice(nice)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    state: tuple[int, Any, Any] = (-1, None, None)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        token, payload, arch = message
        if payload is not None:
            state = (token, *pickle.loads(payload))
        conn.send(_STARTED)
        conn.send(safe_evaluate(state[1], state[2], arch))


@dataclass
class _Task:
    index: int
    arch: Architecture
    attempts: int = 0


class _Worker:
    def __init__(self, context: Any, threads: int, nice: int = 0) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child, threads, nice), daemon=True)
        self.process.start()
        child.close()
        self.token = -1
        self.task: _Task | None = None
        self.started = 0.0
        self.running = False  # the worker acknowledged the candidate (its payload is loaded)

    def assign(self, task: _Task, token: int, payload: bytes) -> None:
        self.conn.send((token, None if self.token == token else payload, task.arch))
        self.token, self.task, self.started, self.running = token, task, time.monotonic(), False

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.process.join(timeout=2)  # an idle worker exits at once; one still importing is killed
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class ProcessExecutor(Executor):
    """A pool of ``max_workers`` local processes (``spawn``), kept alive between batches.

    Evaluator and space are pickled once per batch and sent to each worker once; evaluator-side
    caches (e.g. trained models) stay in the workers.

    Args:
        max_workers: processes evaluating at once.
        retries: re-runs of a candidate whose worker died before giving up on it.
        timeout_s: seconds one candidate may run before its worker is killed (None: no limit).
        nice: niceness added to each worker process (0-19; POSIX): a search that shares the machine with
            work of a fixed size (e.g. baselines training beside it) yields the CPU to that work and takes
            what is left, its deadline deciding how many candidates that is.

    Example:
        >>> with ProcessExecutor(max_workers=2) as executor:  # doctest: +SKIP
        ...     results = executor.map_evaluate(evaluator, space, archs)
    """

    def __init__(self, max_workers: int = 2, retries: int = 1, timeout_s: float | None = None,
                 nice: int = 0) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError(f"executor.max_workers must be an int >= 1, got {max_workers!r}")
        if not isinstance(nice, int) or isinstance(nice, bool) or not 0 <= nice <= 19:
            raise ValueError(f"executor.nice must be an int from 0 to 19, got {nice!r}")
        if nice and not hasattr(os, "nice"):
            raise ValueError(f"executor.nice={nice} needs os.nice, which this platform lacks; use 0")
        check_retry_options(retries, timeout_s)
        self.max_workers = self.parallelism = max_workers
        self.retries = retries
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self._context = mp.get_context("spawn")
        self._threads = max(1, (os.cpu_count() or 1) // max_workers)
        self.nice = nice
        self._workers: list[_Worker] = []
        self._token = 0

    def map_evaluate(self, evaluator: Evaluator, space: SearchSpace,
                     archs: Sequence[Architecture]) -> list[EvalResult]:
        if not archs:
            return []
        self._token += 1
        payload = pickle.dumps((evaluator, space))
        queue = deque(_Task(i, arch) for i, arch in enumerate(archs))
        results: dict[int, EvalResult] = {}
        while len(results) < len(archs):
            busy_count = sum(w.task is not None for w in self._workers)
            while len(self._workers) < min(self.max_workers, busy_count + len(queue)):  # (re)start lazily
                self._workers.append(_Worker(self._context, self._threads, self.nice))
            for worker in self._workers:
                if worker.task is None and queue:
                    worker.assign(queue.popleft(), self._token, payload)
            busy = [w for w in self._workers if w.task is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=self._wait_time(busy))
            self._workers = [w for w in self._workers if self._collect(w, queue, results)]
        return [results[i] for i in range(len(archs))]

    def _limit(self, worker: _Worker) -> float:
        if not worker.running:
            return _STARTUP_ALLOWANCE_S + (self.timeout_s or 0.0)
        return math.inf if self.timeout_s is None else self.timeout_s

    def _wait_time(self, busy: list[_Worker]) -> float | None:
        deadline = min((w.started + self._limit(w) for w in busy), default=math.inf)
        return None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())

    def _collect(self, worker: _Worker, queue: deque[_Task], results: dict[int, EvalResult]) -> bool:
        """Take a finished result, or handle a dead or overdue worker; False when the worker is gone."""
        task = worker.task
        if task is None:
            return True
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message == _STARTED:
                    worker.started, worker.running = time.monotonic(), True
                    continue
                results[task.index] = message
                worker.task = None
                return True
        except (EOFError, OSError):
            pass  # the worker died mid-send: handled as a death below
        elapsed = time.monotonic() - worker.started
        if worker.process.is_alive() and elapsed < self._limit(worker):
            return True
        if worker.process.is_alive():
            worker.stop(kill=True)
            log.warning("candidate %s timed out after %.1fs", task.arch.digest(), elapsed)
            what = f"still running after {self.timeout_s:g}s" if worker.running else "the worker did not start"
            results[task.index] = EvalResult.failed(f"timeout: {what}", duration_s=elapsed)
        else:
            worker.process.join()
            reason = exit_reason(worker.process.exitcode)
            worker.stop()
            self._retry_or_fail(task, reason, elapsed, queue, results)
        return False

    def _retry_or_fail(self, task: _Task, reason: str, elapsed: float, queue: deque[_Task],
                       results: dict[int, EvalResult]) -> None:
        task.attempts += 1
        if task.attempts <= self.retries:
            log.warning("worker died (%s) on %s: retry %d of %d", reason, task.arch.digest(), task.attempts,
                        self.retries)
            queue.appendleft(task)
        else:
            results[task.index] = EvalResult.failed(f"worker died: {reason} after {task.attempts} attempt(s)",
                                                    duration_s=elapsed)

    def close(self) -> None:
        for worker in getattr(self, "_workers", []):
            worker.stop()
        self._workers = []

    def __del__(self) -> None:
        self.close()


