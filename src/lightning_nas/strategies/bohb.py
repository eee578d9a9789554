"""BOHB-style search (Falkner et al., 2018): Hyperband brackets whose new candidates come from a TPE model.

Hyperband decides how many candidates start at which fidelity and which are promoted; this
strategy only replaces its uniformly random draw of new candidates. As in BOHB, the model is a
tree-structured Parzen estimator fitted on the results of the *highest* rung that has enough of
them: the top ``top_fraction`` form the good density ``l``, the rest the bad density ``g``, both
products of Aitchison-Aitken kernels over the categorical decisions (so interactions between
decisions are kept). ``num_candidates`` draws from a widened ``l`` are scored by ``l / g`` and the
best unseen one is started; a ``random_fraction`` of new candidates stays uniformly random.
"""

from __future__ import annotations

import math

import numpy as np

from lightning_nas.arch import Architecture
from lightning_nas.strategies.base import register_strategy
from lightning_nas.strategies.hyperband import HyperbandSearch
from lightning_nas.strategies.operators import _index_of, sample_unseen

__all__ = ["BOHBSearch", "aitchison_aitken_log_density"]


def aitchison_aitken_log_density(points: np.ndarray, centres: np.ndarray, sizes: np.ndarray,
                                 bandwidth: float) -> np.ndarray:
    """Log density at ``points`` of a kernel mixture over ``centres`` (rows of choice indices).

    Per decision, the kernel gives ``1 - bandwidth`` to the centre's own choice and spreads
    ``bandwidth`` over the other ``size - 1`` choices.

    Args:
        points: ``(n, d)`` choice indices to score.
        centres: ``(m, d)`` choice indices of the observations.
        sizes: ``(d,)`` number of candidates of each decision.
        bandwidth: probability mass moved off the centre's choice, in ``(0, 1)``.
    """
    same = points[:, None, :] == centres[None, :, :]
    log_same = math.log(1.0 - bandwidth)
    log_other = np.log(bandwidth / np.maximum(sizes - 1, 1))
    log_kernel = np.where(same, log_same, log_other[None, None, :]).sum(axis=2)
    peak = log_kernel.max(axis=1, keepdims=True)
    return (peak + np.log(np.exp(log_kernel - peak).mean(axis=1, keepdims=True)))[:, 0]


@register_strategy("bohb")
class BOHBSearch(HyperbandSearch):
    """Hyperband with model-based sampling of new candidates (BOHB, Falkner et al., 2018).

    Args:
        num_samples: budget in rung evaluations (jobs), promotions included.
        seed: seed of the ``numpy.random.Generator`` (random draws and model samples).
        min_epochs: epochs of rung 0.
        max_epochs: epochs of the top rung.
        eta: promotion ratio.
        random_fraction: share of new candidates drawn uniformly (BOHB: 1/3).
        top_fraction: share of a rung's results forming the good density (BOHB: 0.15).
        num_candidates: draws from the good density scored per new candidate (BOHB: 64).
        bandwidth: kernel bandwidth of both densities; sampling uses ``min(3 * bandwidth, 0.8)``.

    Example:
        >>> search = BOHBSearch(num_samples=200, min_epochs=4, max_epochs=200, eta=3)
        >>> search.epochs
        [4, 12, 36, 108, 200]
    """

    name = "bohb"

    def __init__(self, num_samples: int = 50, seed: int = 0, min_epochs: int = 1, max_epochs: int = 9, eta: int = 3,
                 random_fraction: float = 1 / 3, top_fraction: float = 0.15, num_candidates: int = 64,
                 bandwidth: float = 0.2) -> None:
        super().__init__(num_samples, seed, min_epochs, max_epochs, eta, mode="hyperband")
        for key, value in (("random_fraction", random_fraction), ("top_fraction", top_fraction),
                           ("bandwidth", bandwidth)):
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0 or (key != "random_fraction" and
                                                                                  value in (0.0, 1.0)):
                raise ValueError(f"strategy.{key} must be in (0, 1) ([0, 1] for random_fraction), got {value!r}")
        if not isinstance(num_candidates, int) or isinstance(num_candidates, bool) or num_candidates < 1:
            raise ValueError(f"strategy.num_candidates must be a positive int, got {num_candidates!r}")
        self.random_fraction, self.top_fraction = float(random_fraction), float(top_fraction)
        self.num_candidates, self.bandwidth = num_candidates, float(bandwidth)

    def _observations(self) -> tuple[list[Architecture], np.ndarray] | None:
        """The finite results of the highest rung with more than ``decisions + 1`` of them."""
        assert self.space is not None
        needed = len(self.space.decisions) + 2
        for rung in reversed(self._rungs):
            finite = [(arch, value) for arch, value in rung.items() if math.isfinite(value)]
            if len(finite) >= needed:
                return [a for a, _ in finite], np.array([v for _, v in finite])
        return None

    def _new_arch(self, seen: set[Architecture]) -> Architecture:
        assert self.space is not None
        observed = self._observations()
        if observed is None or self.rng.random() < self.random_fraction:
            return sample_unseen(self.space, self.rng, seen)
        archs, values = observed
        labels = list(self.space.decisions)
        sizes = np.array([len(self.space.decisions[lb].candidates) for lb in labels])
        index = np.array([[_index_of(self.space.decisions[lb].candidates, a[lb]) for lb in labels] for a in archs])
        order = np.argsort(-values, kind="stable")
        n_good = max(2, math.ceil(self.top_fraction * len(values)))
        good, bad = index[order[:n_good]], index[order[n_good:]]
        draws = self._sample_good(good, sizes)
        ratio = (aitchison_aitken_log_density(draws, good, sizes, self.bandwidth)
                 - aitchison_aitken_log_density(draws, bad, sizes, self.bandwidth))
        for row in np.argsort(-ratio, kind="stable"):
            arch = Architecture({lb: self.space.decisions[lb].candidates[int(draws[row, d])]
                                 for d, lb in enumerate(labels)})
            if arch not in seen:
                return arch
        return sample_unseen(self.space, self.rng, seen)

    def _sample_good(self, good: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """``num_candidates`` draws from the good density with a widened bandwidth."""
        width = min(3 * self.bandwidth, 0.8)
        centres = good[self.rng.integers(len(good), size=self.num_candidates)]
        move = self.rng.random(centres.shape) < width
        shift = 1 + (self.rng.random(centres.shape) * (sizes - 1)).astype(int)  # another choice, uniformly
        return np.where(move, (centres + shift) % sizes, centres)
