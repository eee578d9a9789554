"""Executors: evaluate a batch of candidates in parallel (in-process, a local process pool, or Ray).

An executor's :meth:`Executor.map_evaluate` returns one :class:`EvalResult` per architecture, in
input order. It never raises for a bad candidate and never hangs: a worker that dies mid-candidate
(killed, out of memory, segfault) has that candidate retried ``retries`` times, then
``EvalResult.failed("worker died: ...")``; a candidate running longer than ``timeout_s`` is
stopped and recorded as ``EvalResult.failed("timeout: ...")``. Finished results are never lost.
A process pool's workers end with their parent (:func:`~lightning_nas.executors.lifetime.exit_with_parent`):
a killed search leaves no worker training on.

:func:`lightning_nas.search.run_search` takes an executor: the strict ask/tell loop is unchanged,
so **the history is the same for the same seed whatever the
executor** (given a deterministic evaluator). Parallelism comes from *speculation*: on a cache
miss, a copy of the strategy is asked ahead (told a placeholder result for each pending
candidate), the real ask plus those guesses are evaluated as one batch, and the real loop then
takes results from that batch whenever it asks an architecture already evaluated. Strategies
whose next proposals do not depend on pending results (random search, a GA within a
generation) hit every guess; for the others a wrong guess costs compute, never correctness.
"""

from lightning_nas.executors.base import Executor, LocalExecutor
from lightning_nas.executors.parallel import speculate
from lightning_nas.executors.process import ProcessExecutor
from lightning_nas.executors.ray_executor import RayExecutor

__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "RayExecutor", "speculate"]
