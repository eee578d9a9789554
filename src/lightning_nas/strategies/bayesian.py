"""Bayesian optimisation with Optuna's TPE (or NSGA-II) sampler through its ask-and-tell interface.

Optuna is an optional extra: ``pip install lightning_nas[optuna]``; it is imported only when the
strategy is bound to a space.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lightning_nas.arch import Architecture

if TYPE_CHECKING:
    pass
from lightning_nas.arch import EvalResult
from lightning_nas.objectives.multi import as_objective
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, register_strategy
from lightning_nas.strategies.operators import MAX_RETRIES, sample_unseen

__all__ = ["BayesianStrategy"]

SAMPLERS = ("tpe", "nsga2")


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError("the 'bayesian' strategy needs Optuna: pip install lightning_nas[optuna]") from error
    return optuna


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial info logs and experimental-feature warnings for one block."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="optuna")
            yield
    finally:
        logger.setLevel(level)


@register_strategy("bayesian")
class BayesianStrategy(Strategy):
    """Tree-structured Parzen estimator search (Bergstra et al., 2011) via Optuna's ask-and-tell.

    Each decision becomes ``trial.suggest_categorical(label, [0, 1, ...])`` over the *indices* of
    its candidates (candidates such as tuples are not Optuna categories; categories are unordered
    for TPE either way). The score is read through the objective interface
    (:func:`~lightning_nas.objectives.multi.as_objective`): with a
    :class:`~lightning_nas.objectives.MultiObjective` score the study
    has one direction per objective (``"max"`` -> maximize) and is told the raw
    :meth:`~lightning_nas.objectives.MultiObjective.vector`; its constraint violation is passed
    to the sampler's ``constraints_func`` when it has constraints. Failed candidates (or a non-finite value) are told
    as ``FAIL``. A suggestion already told is answered to the study from the earlier result and
    a new one is asked (up to ``MAX_RETRIES`` times, then a random unseen architecture is
    enqueued), so the budget goes to new candidates.

    Resume: Optuna's samplers are deterministic given their seed and the sequence of told
    trials, so replaying the history through ask/tell rebuilds the same study; a checkpoint is
    restored by the same replay.

    Args:
        num_samples: evaluation budget.
        seed: seed of the Optuna sampler and of the fallback ``numpy.random.Generator``.
        sampler: ``"tpe"`` or ``"nsga2"`` (Optuna's ``NSGAIISampler``).
        n_startup_trials: random trials before TPE models the results.
        multivariate: model decisions jointly (multivariate TPE).
        population_size: NSGA-II population size.

    Example:
        >>> strategy = BayesianStrategy(num_samples=50, seed=0)
        >>> strategy.setup(space)  # doctest: +SKIP
        >>> arch = strategy.ask()  # doctest: +SKIP
    """

    name = "bayesian"
    replays = True
    checked = ("seed", "sampler")

    def __init__(self, num_samples: int = 50, seed: int = 0, sampler: str = "tpe", n_startup_trials: int = 10,
                 multivariate: bool = True, population_size: int = 20) -> None:
        super().__init__(num_samples, seed)
        if sampler not in SAMPLERS:
            raise ValueError(f"strategy.sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        for key, value, low in (("n_startup_trials", n_startup_trials, 0), ("population_size", population_size, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"strategy.{key} must be an int >= {low}, got {value!r}")
        self.sampler, self.n_startup_trials = sampler, n_startup_trials
        self.multivariate, self.population_size = bool(multivariate), population_size
        self.study: Any = None
        self._labels: list[str] = []
        self._trial: tuple[Architecture, Any] | None = None  # the pending ask's trial

    def _prepare(self, space: SearchSpace) -> None:
        """Create the Optuna study (imports Optuna); a study that has been told results is kept."""
        optuna = _import_optuna()
        if self._told or self._pending is not None:
            return
        objective = as_objective(self.score)
        self._labels = list(space.decisions)
        constrained = bool(objective.constraints)
        directions = [("maximize" if d == "max" else "minimize") for d in objective.directions]

        def constraints(trial: Any) -> list[float]:
            return [float(trial.user_attrs.get("violation", 0.0))]

        with _quiet_optuna():
            if self.sampler == "nsga2":
                sampler = optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=self.seed,
                                                        constraints_func=constraints if constrained else None)
            else:
                sampler = optuna.samplers.TPESampler(n_startup_trials=self.n_startup_trials, seed=self.seed,
                                                     multivariate=self.multivariate,
                                                     constraints_func=constraints if constrained else None)
            self.study = optuna.create_study(sampler=sampler, directions=directions)
        self._trial = None

    def _decode(self, params: dict[str, Any]) -> Architecture:
        assert self.space is not None
        return Architecture({lb: self.space.decisions[lb].candidates[int(params[lb])] for lb in self._labels})

    def _encode(self, arch: Architecture) -> dict[str, int]:
        assert self.space is not None
        out: dict[str, int] = {}
        for label in self._labels:
            candidates = self.space.decisions[label].candidates
            out[label] = next(i for i, c in enumerate(candidates) if c == arch[label] and type(c) is type(arch[label]))
        return out

    def _ask_trial(self) -> tuple[Architecture, Any]:
        assert self.space is not None
        trial = self.study.ask()
        params = {lb: trial.suggest_categorical(lb, list(range(len(self.space.decisions[lb].candidates))))
                  for lb in self._labels}
        return self._decode(params), trial

    def _propose(self, space: SearchSpace) -> Architecture:
        with _quiet_optuna():
            arch, trial = self._ask_trial()
            for _ in range(MAX_RETRIES):
                if not self.seen(arch):
                    break
                self._tell_trial(trial, self._results[arch])  # the model learns the repeat's known value
                arch, trial = self._ask_trial()
            else:
                self._tell_trial(trial, self._results[arch])
                fresh = sample_unseen(space, self.rng, self._results)
                self.study.enqueue_trial(self._encode(fresh))
                arch, trial = self._ask_trial()
        self._trial = (arch, trial)
        return arch

    def _values(self, result: EvalResult) -> tuple[list[float] | None, float]:
        """Values to tell the study (None: failed) and the constraint violation."""
        objective = as_objective(self.score)
        vector = [float(v) for v in objective.vector(result)]
        violation = objective.violation(result)
        ok = result.ok and all(math.isfinite(v) for v in vector)
        return (vector if ok else None), (violation if math.isfinite(violation) else 0.0)

    def _tell_trial(self, trial: Any, result: EvalResult) -> None:
        optuna = _import_optuna()
        values, violation = self._values(result)
        trial.set_user_attr("violation", violation)
        with _quiet_optuna():
            if values is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        if self._trial is None:  # told without asking: the study must ask it first (bind a trial)
            assert self.space is not None
            self._propose(self.space)
        assert self._trial is not None
        asked, trial = self._trial
        if asked != arch:
            raise ValueError(f"BayesianStrategy was told {arch.digest()} but asked {asked.digest()}")
        self._trial = None
        self._tell_trial(trial, result)
