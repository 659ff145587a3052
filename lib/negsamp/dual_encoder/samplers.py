"""Negative samplers: a similarity-tempered sampler over real captions and its annealing schedule.

With similarities ``s_j`` between an anchor and a pool of candidate
negatives, the sampler draws ``j`` with probability
``softmax(s / t)_j``.  A large ``t`` makes it nearly uniform over the pool,
a small ``t`` picks the most similar candidate, which is hard-negative
mining.  A curriculum lowers ``t`` during training, so the sampled
negatives move from easy to hard.  This is our miniature of the
boundary-aware negative sampler of [1]_, whose exact form was not
available to us.

References
----------
.. [1] H. Ye, H. Ding, S. Chen, Y. Jiang, C. Zhang and X. Zhang, "Aligning by
   misaligning: Boundary-aware curriculum learning for multimodal
   alignment", NeurIPS 2025 (abstract only).
"""

from __future__ import annotations

import math

import torch


def curriculum_temperature(step: int, total_steps: int, start: float, end: float,
                           anneal_fraction: float) -> float:
    """Return the sampler temperature at ``step``, annealed geometrically from ``start`` to ``end``.

    ``t(step) = start * (end / start) ** min(1, step / (anneal_fraction * total_steps))``:
    the logarithm of ``t`` falls linearly over the first ``anneal_fraction``
    of training and then stays at ``end``.
    """
    if not (start > 0 and end > 0):
        raise ValueError(f"temperatures must be positive, got start={start!r}, end={end!r}")
    if total_steps < 1 or not 0 < anneal_fraction <= 1:
        raise ValueError(f"need total_steps >= 1 and anneal_fraction in (0, 1], got {total_steps} "
                         f"and {anneal_fraction}")
    progress = min(1.0, step / (anneal_fraction * total_steps))
    return start * math.exp(progress * math.log(end / start))


def tempered_negative_probabilities(similarity: torch.Tensor, temperature: torch.Tensor | float,
                                    allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Probabilities ``softmax(similarity / temperature)`` over the last axis, zero where not allowed.

    Parameters
    ----------
    similarity : Tensor
        Shape ``(..., P)``: an anchor against ``P`` candidate negatives.
    temperature : float or Tensor
        Positive, broadcastable to ``similarity``.
    allowed : Tensor, optional
        Boolean, shape ``(..., P)``; candidates that must never be drawn
        (duplicates of the positive) are False.  Each row needs at least one
        allowed candidate.
    """
    temperature = torch.as_tensor(temperature, dtype=similarity.dtype, device=similarity.device)
    if torch.any(temperature <= 0):
        raise ValueError("temperature must be positive")
    logits = similarity / temperature
    if allowed is not None:
        if not torch.all(allowed.any(dim=-1)):
            raise ValueError("every row of allowed needs at least one True candidate")
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample_tempered_negatives(similarity: torch.Tensor, temperature: torch.Tensor | float,
                              allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one candidate per row from :func:`tempered_negative_probabilities`, by inverting its CDF.

    One uniform number per row is compared with the row's cumulative
    probabilities, so every row is sampled at once.  A candidate that is not
    allowed has probability 0, adds nothing to the cumulative sum and is
    never drawn.  One uniform per row is much cheaper on the CPU than the
    Gumbel-max trick's one random number per candidate.

    Returns
    -------
    Tensor
        Shape ``(...)``: the index of the drawn candidate in each row.
    """
    probabilities = tempered_negative_probabilities(similarity, temperature, allowed)
    cumulative = probabilities.cumsum(dim=-1)
    uniform = torch.rand((*similarity.shape[:-1], 1), generator=generator, dtype=similarity.dtype)
    target = uniform.to(similarity.device) * cumulative[..., -1:]
    drawn = torch.searchsorted(cumulative, target, right=True).squeeze(-1)
    return drawn.clamp_(max=similarity.shape[-1] - 1)
