"""NNI tuners in-process: any built-in NNI 3.0 tuner (TPE, Evolution, Random, GridSearch, ...) as a Strategy.

NNI is an optional extra: ``pip install 'lightning_nas[nni]'``; it is imported only when the strategy
is bound to a space. The tuner is driven through its own API (``update_search_space``,
``generate_parameters``, ``receive_trial_result``, ``import_data``), with no NNI experiment or
dispatcher process.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from lightning_nas.arch import Architecture, EvalResult
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, register_strategy
from lightning_nas.strategies.operators import MAX_RETRIES, sample_unseen

__all__ = ["ADVISORS", "NNITunerStrategy"]

log = logging.getLogger(__name__)

ADVISORS = ("hyperband", "bohb")
"""NNI algorithms that are advisors (they need NNI's dispatcher), not in-process tuners."""

MISSING_NNI = "strategy=nni needs the optional extra: pip install 'lightning_nas[nni]'"


def _missing(error: ImportError) -> str:
    """:data:`MISSING_NNI`, naming the module whose import failed (a partial install shows which)."""
    cause = f"module {error.name!r} is missing" if error.name else str(error)
    return f"{MISSING_NNI} (importing NNI failed: {cause})"


def _tuner_class(name: str) -> tuple[type[Any], dict[str, Any]]:
    """The tuner class an NNI built-in name (or a dotted class path) names, and its built-in arguments."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nni.tools.package_utils.config_manager import get_algo_meta, get_all_algo_meta
    except ImportError as error:
        raise ImportError(_missing(error)) from error
    path, builtin_args = name, {}
    if "." not in name:
        meta = get_algo_meta(name)
        if meta is None or meta.algo_type != "tuner" or meta.is_advisor or meta.class_name is None:
            known = sorted(m.name for m in get_all_algo_meta() if m.algo_type == "tuner" and not m.is_advisor)
            raise ValueError(f"strategy.tuner: {name!r} is not an NNI in-process tuner; built-in tuners: {known}")
        path, builtin_args = meta.class_name, dict(meta.class_args or {})
    module, _, attr = path.rpartition(".")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls = getattr(importlib.import_module(module), attr)
    except ImportError as error:
        raise ImportError(f"strategy.tuner {name!r} needs a package NNI does not install: {error}") from error
    except AttributeError as error:
        raise ValueError(f"strategy.tuner: no class {attr!r} in {module!r}") from error
    return cls, builtin_args


class _KeepRepeats:
    """Stands in for NNI 3.0's ``Deduplicator``, which answers a repeated suggestion with grid-search
    order from index 0 (cells whose first edges are all ``none`` on NB-201): repeats reach the strategy,
    which tells the tuner the known value and asks again, then falls back to a random unseen architecture."""

    def __call__(self, formatted_parameters: Any) -> Any:
        return formatted_parameters

    def add_history(self, formatted_parameters: Any) -> None:
        """Nothing to remember: the strategy knows what it has evaluated."""


def _disable_dedup(tuner: Any) -> None:
    """Replace the tuner's NNI ``Deduplicator`` (TPE and Random have one) by :class:`_KeepRepeats`."""
    if type(getattr(tuner, "dedup", None)).__name__ == "Deduplicator":
        tuner.dedup = _KeepRepeats()


def _no_more_trials(error: Exception) -> bool:
    return type(error).__name__ == "NoMoreTrialError"


@contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """Make one tuner call deterministic and quiet: seed the global ``random``/``numpy`` RNGs and unseeded
    ``numpy.random.RandomState()`` (NNI's Evolution tuner uses all three) and raise NNI's log level to
    WARNING, restoring all of them afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    nni_log = logging.getLogger("nni")
    level = nni_log.level
    original = np.random.RandomState

    class _SeededRandomState(original):  # type: ignore[misc,valid-type]
        def __init__(self, state: Any = None) -> None:
            super().__init__(seed if state is None else state)

    random.seed(seed)
    np.random.seed(seed)
    setattr(np.random, "RandomState", _SeededRandomState)  # noqa: B010 - restored below
    nni_log.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        setattr(np.random, "RandomState", original)  # noqa: B010
        nni_log.setLevel(level)
        random.setstate(py_state)
        np.random.set_state(np_state)


@register_strategy("nni")
class NNITunerStrategy(Strategy):
    """Drive an NNI built-in tuner in-process through its tuner API.

    Every decision becomes an NNI ``choice`` over the *indices* of its candidates (so tuples, bools
    and floats need no translation), and the tuner maximises the scalar score. A failed candidate (or
    a non-finite score) is reported as the worst finite value told so far minus 1 (``-1`` before any).
    A suggestion already told is answered to the tuner from the earlier value and a new one is
    generated (up to ``MAX_RETRIES`` times); when the tuner repeats itself or runs dry
    (``NoMoreTrialError``), a random unseen architecture is evaluated instead and given to the tuner
    through ``import_data``. Told without asking (e.g. seeds from an ensemble), a result is imported
    the same way.

    Tested tuners (NNI 3.0): ``TPE``, ``Random``, ``Evolution``, ``GridSearch``. ``Anneal`` needs
    ``hyperopt``; ``SMAC``, ``PPO``, ``DNGO`` need their own packages; ``GP`` and ``Metis`` fail with
    current SciPy; ``Hyperband`` and ``BOHB`` are advisors that need NNI's dispatcher (use
    ``strategy=hyperband``). A dotted class path (``"my.module.MyTuner"``) names a custom tuner.

    Determinism: ``seed`` is passed to tuners that take one, and every tuner call runs with the global
    ``random``/``numpy`` RNGs (and unseeded ``RandomState()``) seeded from ``seed`` and the call's
    position. Resume: a checkpoint is restored by replaying its told results into a fresh tuner, which
    repeats the same tuner calls (:meth:`state_dict` also lists them, under ``"calls"``).

    Args:
        tuner: an NNI built-in tuner name (case-insensitive) or a dotted class path.
        tuner_kwargs: constructor arguments of the tuner (``optimize_mode`` defaults to ``"maximize"``).
        num_samples: evaluation budget.
        seed: seed of the tuner and of the fallback ``numpy.random.Generator``.

    Example:
        >>> strategy = NNITunerStrategy(tuner="TPE", num_samples=20, seed=0)
        >>> strategy.setup(space)  # doctest: +SKIP
        >>> arch = strategy.ask()  # doctest: +SKIP
    """

    name = "nni"
    replays = True
    checked = ("tuner_name", "seed")

    def __init__(self, tuner: str = "TPE", tuner_kwargs: dict[str, Any] | None = None, num_samples: int = 50,
                 seed: int = 0) -> None:
        super().__init__(num_samples, seed)
        if not isinstance(tuner, str) or not tuner.strip():
            raise ValueError(f"strategy.tuner must be an NNI tuner name such as 'TPE', got {tuner!r}")
        if tuner.lower() in ADVISORS:
            raise ValueError(f"strategy.tuner {tuner!r} is an NNI advisor that needs NNI's dispatcher, not an "
                             "in-process tuner; use strategy=hyperband instead")
        if tuner_kwargs is not None and not isinstance(tuner_kwargs, dict):
            raise ValueError(f"strategy.tuner_kwargs must be a mapping, got {tuner_kwargs!r}")
        if importlib.util.find_spec("nni") is not None:  # without nni, setup() names the missing extra
            _tuner_class(tuner)  # an unknown tuner fails here, at start, naming strategy.tuner
        self.tuner_name, self.tuner_kwargs = tuner, dict(tuner_kwargs or {})
        self.tuner: Any = None
        self._labels: list[str] = []
        self._log: list[dict[str, Any]] = []  # every tuner call since setup, replayed on resume
        self._next_id = 0
        self._values: dict[Architecture, float] = {}  # the value the tuner was told for each architecture
        self._suggestion: tuple[Architecture, int | None, dict[str, int]] | None = None  # the pending ask's

    # --- the tuner ----------------------------------------------------------------------------------
    def _create_tuner(self) -> Any:
        cls, kwargs = _tuner_class(self.tuner_name)
        kwargs.update(self.tuner_kwargs)
        params = inspect.signature(cls.__init__).parameters
        if "optimize_mode" in params:
            kwargs.setdefault("optimize_mode", "maximize")
        if "seed" in params:
            kwargs.setdefault("seed", self.seed)
        with self._call_seed():
            try:
                return cls(**kwargs)
            except TypeError as error:
                raise ValueError(f"strategy.tuner_kwargs do not fit tuner {self.tuner_name!r}: {error}") from error

    @contextmanager
    def _call_seed(self) -> Iterator[None]:
        """Seed the global RNGs for one tuner call from ``seed`` and the call's position in the log."""
        seed = int(np.random.SeedSequence([self.seed, len(self._log)]).generate_state(1)[0])
        with _seeded_globals(seed):
            yield

    def _generate(self, parameter_id: int) -> dict[str, int] | None:
        """The tuner's next suggestion as ``label -> index``; None when it has no more."""
        params: dict[str, int] | None
        with self._call_seed():
            try:
                raw = self.tuner.generate_parameters(parameter_id)
                params = None if raw is None else {label: int(raw[label]) for label in self._labels}
            except Exception as error:
                if not _no_more_trials(error):
                    raise
                params = None
        self._log.append({"op": "generate", "id": parameter_id, "params": params})
        return params

    def _receive(self, parameter_id: int | None, params: dict[str, int], value: float) -> None:
        with self._call_seed():
            if parameter_id is None:
                self.tuner.import_data([{"parameter": dict(params), "value": value}])
            else:
                self.tuner.receive_trial_result(parameter_id, dict(params), value)
        self._log.append({"op": "receive", "id": parameter_id, "params": dict(params), "value": value})

    def _prepare(self, space: SearchSpace) -> None:
        """Create the tuner and give it the search space (imports NNI); a tuner told results is kept."""
        if self._told or self._pending is not None:
            return
        self._labels = list(space.decisions)
        self._log, self._next_id, self._values, self._suggestion = [], 0, {}, None
        self.tuner = self._create_tuner()
        nni_space = {label: {"_type": "choice", "_value": list(range(len(space.decisions[label].candidates)))}
                     for label in self._labels}
        with self._call_seed():
            self.tuner.update_search_space(nni_space)
        _disable_dedup(self.tuner)
        self._log.append({"op": "space"})

    # --- ask / tell ---------------------------------------------------------------------------------
    def _decode(self, params: dict[str, int]) -> Architecture:
        assert self.space is not None
        decisions = self.space.decisions
        for label, index in params.items():
            if not 0 <= index < len(decisions[label].candidates):
                raise ValueError(f"NNI tuner suggested index {index} for {label!r} "
                                 f"({len(decisions[label].candidates)} candidates)")
        return self.space.validate({label: decisions[label].candidates[params[label]] for label in self._labels})

    def _encode(self, arch: Architecture) -> dict[str, int]:
        assert self.space is not None
        decisions = self.space.decisions
        return {label: _position(decisions[label].candidates, arch[label]) for label in self._labels}

    def _propose(self, space: SearchSpace) -> Architecture:
        for _ in range(MAX_RETRIES):
            parameter_id, self._next_id = self._next_id, self._next_id + 1
            params = self._generate(parameter_id)
            if params is None:
                break
            arch = self._decode(params)
            if arch not in self._values:
                self._suggestion = (arch, parameter_id, params)
                return arch
            self._receive(parameter_id, params, self._values[arch])  # the tuner learns the repeat's value
        fresh = sample_unseen(space, self.rng, self._results)
        self._suggestion = (fresh, None, self._encode(fresh))
        return fresh

    def _value(self, result: EvalResult) -> float:
        value = self.fitness(result)
        if math.isfinite(value):
            return value
        return min((v for v in self._values.values() if math.isfinite(v)), default=0.0) - 1.0

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        value = self._value(result)
        if self._told[-1].asked and self._suggestion is not None:
            _, parameter_id, params = self._suggestion
            self._suggestion = None
        else:  # told without asking (e.g. an ensemble's seed): imported; a pending suggestion stays pending
            parameter_id, params = None, self._encode(arch)
        self._receive(parameter_id, params, value)
        self._values[arch] = value

    # --- checkpointing ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base state (told results, replayed on load) plus the log of tuner calls (``"calls"``)."""
        return {**super().state_dict(), "calls": list(self._log)}


def _position(candidates: tuple[Any, ...], value: Any) -> int:
    """Index of ``value`` among ``candidates``, comparing types too (``1`` is not ``True``)."""
    return next(i for i, c in enumerate(candidates) if c == value and type(c) is type(value))
