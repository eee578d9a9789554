"""Reinforcement-learning search (ENAS-style controller): an LSTM policy trained with REINFORCE."""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_nas.arch import Architecture, ChoiceValue, EvalResult
from lightning_nas.spaces.base import SearchSpace
from lightning_nas.strategies.base import Strategy, register_strategy
from lightning_nas.strategies.operators import MAX_RETRIES, sample_unseen

__all__ = ["LSTMPolicy", "RLStrategy"]


def _position(candidates: tuple[ChoiceValue, ...], value: ChoiceValue) -> int:
    for i, candidate in enumerate(candidates):
        if candidate == value and type(candidate) is type(value):
            return i
    raise ValueError(f"value {value!r} is not one of {list(candidates)}")


class LSTMPolicy(nn.Module):
    """Samples one decision per step; the embedding of each choice is the next step's input.

    Args:
        sizes: number of candidates of each decision, in order.
        hidden_size: LSTM hidden and embedding size.
    """

    def __init__(self, sizes: list[int], hidden_size: int) -> None:
        super().__init__()
        self.sizes = sizes
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in sizes)

    def reset_parameters(self, generator: torch.Generator, scale: float = 0.1) -> None:
        """Uniform ``[-scale, scale]`` initialisation drawn from ``generator`` (as in ENAS)."""
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.rand(param.shape, generator=generator) * 2 * scale - scale)

    def run(
        self, generator: torch.Generator | None = None, forced: list[int] | None = None
    ) -> tuple[list[int], torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Sample (or, with ``forced``, score) one choice per decision.

        Returns:
            Choice indices, summed log-probability, summed entropy and each step's probabilities.
        """
        x, state = self.start, None
        choices: list[int] = []
        log_prob, entropy = torch.zeros(()), torch.zeros(())
        probs: list[torch.Tensor] = []
        for step, (head, embedding) in enumerate(zip(self.heads, self.embeddings, strict=True)):
            h, c = self.cell(x, state)
            state = (h, c)
            logp = torch.log_softmax(head(h)[0], dim=-1)
            if forced is not None:
                index = forced[step]
            else:
                index = int(torch.multinomial(logp.exp().detach(), 1, generator=generator))
            choices.append(index)
            log_prob = log_prob + logp[index]
            entropy = entropy - (logp.exp() * logp).sum()
            probs.append(logp.exp().detach())
            x = embedding(torch.tensor([index]))
        return choices, log_prob, entropy, probs


@register_strategy("rl")
class RLStrategy(Strategy):
    """REINFORCE over an LSTM controller (Zoph & Le, 2017; ENAS, Pham et al., 2018).

    The controller samples the decisions of ``space.decisions`` in order; at each step a softmax
    head sized to that decision's candidates gives the distribution, and the embedding of the
    sampled choice is the next input. After each told result the policy takes one Adam step on
    ``-(reward - baseline) * log p(arch) - entropy_weight * entropy``; the baseline is an
    exponential moving average of rewards (``baseline_decay``), started at the first reward.
    The reward is the score; a failed or non-finite candidate gets ``baseline - failure_penalty``
    (``-failure_penalty`` before any reward), never ``-inf``. Architectures already told are
    re-sampled (up to ``MAX_RETRIES`` times), then replaced by a random unseen one, so the budget
    goes to new candidates.

    All randomness (initial weights, sampling) comes from a ``torch.Generator`` seeded with
    ``seed``, so the search is a deterministic function of the seed and the told results (a
    resumed search replays exactly); a checkpoint is restored by that replay.

    Args:
        num_samples: evaluation budget.
        seed: seed of the controller's ``torch.Generator``.
        hidden_size: LSTM hidden and choice-embedding size.
        lr: Adam learning rate of the controller.
        baseline_decay: decay of the reward moving average.
        entropy_weight: weight of the entropy bonus.
        failure_penalty: a failed candidate's reward is the baseline minus this.

    Example:
        >>> strategy = RLStrategy(num_samples=50, seed=0, lr=0.05)
        >>> strategy.setup(space)  # doctest: +SKIP
        >>> arch = strategy.ask()  # doctest: +SKIP
    """

    name = "rl"
    replays = True
    checked = ("seed", "hidden_size", "lr")

    def __init__(
        self,
        num_samples: int = 100,
        seed: int = 0,
        hidden_size: int = 64,
        lr: float = 0.0035,
        baseline_decay: float = 0.95,
        entropy_weight: float = 0.0001,
        failure_penalty: float = 1.0,
    ) -> None:
        super().__init__(num_samples, seed)
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 1:
            raise ValueError(f"strategy.hidden_size must be a positive int, got {hidden_size!r}")
        numbers = {"lr": lr, "entropy_weight": entropy_weight, "failure_penalty": failure_penalty}
        for key, value in numbers.items():
            bad = not isinstance(value, int | float) or not math.isfinite(value) or value < 0
            if bad or (key == "lr" and not value):
                raise ValueError(f"strategy.{key} must be a finite number >= 0 (lr > 0), got {value!r}")
        if not isinstance(baseline_decay, int | float) or not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"strategy.baseline_decay must be in [0, 1), got {baseline_decay!r}")
        self.hidden_size, self.lr = hidden_size, float(lr)
        self.baseline_decay, self.entropy_weight = float(baseline_decay), float(entropy_weight)
        self.failure_penalty = float(failure_penalty)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.baseline: float | None = None
        self.policy: LSTMPolicy | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._labels: list[str] = []

    def _prepare(self, space: SearchSpace) -> None:
        """Build the controller for the space's decisions (weights from the seed)."""
        sizes = [len(space.decisions[lb].candidates) for lb in space.decisions]
        if self.policy is not None and self._labels == list(space.decisions) and self.policy.sizes == sizes:
            return  # already built and maybe trained: keep it
        self._labels = list(space.decisions)
        self.policy = LSTMPolicy(sizes, self.hidden_size)
        self.policy.reset_parameters(self.generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)

    def _require_policy(self) -> tuple[LSTMPolicy, torch.optim.Adam]:
        if self.policy is None or self.optimizer is None:
            raise RuntimeError("RLStrategy.setup(space) must be called first")
        return self.policy, self.optimizer

    def _to_arch(self, space: SearchSpace, choices: list[int]) -> Architecture:
        pairs = zip(self._labels, choices, strict=True)
        return Architecture({lb: space.decisions[lb].candidates[i] for lb, i in pairs})

    def _indices(self, space: SearchSpace, arch: Architecture) -> list[int]:
        return [_position(space.decisions[lb].candidates, arch[lb]) for lb in self._labels]

    def _propose(self, space: SearchSpace) -> Architecture:
        policy, _ = self._require_policy()
        with torch.no_grad():
            arch = self._to_arch(space, policy.run(self.generator)[0])
            for _ in range(MAX_RETRIES - 1):
                if not self.seen(arch):
                    break
                arch = self._to_arch(space, policy.run(self.generator)[0])
        if self.seen(arch):  # the policy has collapsed onto told architectures: a random unseen one
            arch = sample_unseen(space, self.rng, self._results)
        return arch

    def probabilities(self, arch: Architecture) -> dict[str, list[float]]:
        """Each decision's candidate probabilities along ``arch`` (teacher-forced).

        Args:
            arch: an architecture of the bound space.
        """
        policy, _ = self._require_policy()
        assert self.space is not None
        with torch.no_grad():
            probs = policy.run(forced=self._indices(self.space, arch))[3]
        return {lb: p.tolist() for lb, p in zip(self._labels, probs, strict=True)}

    def reward(self, result: EvalResult) -> float:
        """The REINFORCE reward of a result (failure: baseline minus ``failure_penalty``)."""
        value = self.fitness(result)
        if math.isfinite(value):
            return value
        return (self.baseline if self.baseline is not None else 0.0) - self.failure_penalty

    def _observe(self, arch: Architecture, result: EvalResult) -> None:
        policy, optimizer = self._require_policy()
        assert self.space is not None
        reward = self.reward(result)
        baseline = reward if self.baseline is None else self.baseline
        _, log_prob, entropy, _ = policy.run(forced=self._indices(self.space, arch))
        loss = -(reward - baseline) * log_prob - self.entropy_weight * entropy
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * reward
