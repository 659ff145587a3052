"""A torch skip-gram-with-negative-sampling (SGNS) trainer for node embeddings.

The trainer fits ``s(u, v) = e_u . c_v`` to pair weights: ``w+(u, v)`` is how
often (or how probably) ``v`` is a positive for ``u`` and ``w-(u, v)`` how
often it is a negative.  It minimises

``L = sum_{u,v} [ w+(u,v) softplus(-s(u,v)) + w-(u,v) softplus(s(u,v)) ] / sum w+``

full-batch with Adam.  On sampled counts this is the loss that stochastic
gradient descent over the same fixed sample corpus minimises, so the
result is deterministic given the counts and the initial embeddings.  With
expected weights ``w+ = p+`` and ``w- = k p-`` it is the population
objective whose pointwise maximiser is :func:`~negsamp.graph_sampling.optimal_scores`.

References
----------
.. [1] T. Mikolov, I. Sutskever, K. Chen, G. Corrado and J. Dean,
   "Distributed representations of words and phrases and their
   compositionality", NeurIPS 2013 (skip-gram with negative sampling).
.. [2] O. Levy and Y. Goldberg, "Neural word embedding as implicit matrix
   factorization", NeurIPS 2014.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sgns_pair_loss(scores: torch.Tensor, positive_weight: torch.Tensor,
                   negative_weight: torch.Tensor) -> torch.Tensor:
    """Return ``-w+ log sigma(s) - w- log sigma(-s)`` elementwise.

    With ``w+ = p+`` and ``w- = k p-`` this is minus the expected per-pair
    objective ``p+ log sigma(s) + k p- log sigma(-s)``.  Pairs with both
    weights zero contribute exactly zero, whatever their score.
    """
    positive_term = torch.where(positive_weight > 0, positive_weight * F.softplus(-scores),
                                torch.zeros_like(scores))
    negative_term = torch.where(negative_weight > 0, negative_weight * F.softplus(scores),
                                torch.zeros_like(scores))
    return positive_term + negative_term


@dataclass
class NodeEmbedding:
    """Source and context embeddings of shape ``(n, dim)`` with training diagnostics."""

    source: torch.Tensor
    context: torch.Tensor
    final_loss: float
    seconds: float

    def scores(self, symmetric: bool = False) -> torch.Tensor:
        """Return the ``(n, n)`` score matrix ``e_u . c_v``, or its symmetric part when asked."""
        scores = self.source @ self.context.T
        return 0.5 * (scores + scores.T) if symmetric else scores


def _check_weights(positive_weight: torch.Tensor, negative_weight: torch.Tensor) -> None:
    if positive_weight.ndim != 2 or positive_weight.shape[0] != positive_weight.shape[1]:
        raise ValueError(f"positive_weight must be square, got shape {tuple(positive_weight.shape)}")
    if negative_weight.shape != positive_weight.shape:
        raise ValueError(f"negative_weight shape {tuple(negative_weight.shape)} differs from "
                         f"positive_weight shape {tuple(positive_weight.shape)}")
    if torch.any(positive_weight < 0) or torch.any(negative_weight < 0):
        raise ValueError("pair weights must be non-negative")
    if float(positive_weight.sum()) <= 0:
        raise ValueError("positive_weight has no mass; there is nothing to fit")


def train_sgns(positive_weight: torch.Tensor, negative_weight: torch.Tensor, dim: int, *,
               steps: int = 300, lr: float = 0.05, final_lr: float | None = None, init_scale: float = 0.1,
               seed: int = 0) -> NodeEmbedding:
    """Fit node embeddings to SGNS pair weights with full-batch Adam.

    Parameters
    ----------
    positive_weight, negative_weight : Tensor of shape ``(n, n)``
        Counts or expected weights of positive and negative pairs.  The
        embeddings are created on their device and in their dtype.
    dim : int
        Embedding dimension; ``dim = n`` gives a full-rank score matrix.
    steps : int
        Adam steps.
    lr : float
        Adam learning rate.
    final_lr : float or None
        If given, the learning rate decays geometrically from ``lr`` to
        ``final_lr`` over the steps, which lets Adam settle on the optimum
        instead of oscillating around it; ``None`` keeps it constant.
    init_scale : float
        Standard deviation of the Gaussian initial embeddings.
    seed : int
        Seed of the initial embeddings (drawn on the CPU, then moved).

    Returns
    -------
    NodeEmbedding
    """
    _check_weights(positive_weight, negative_weight)
    n = positive_weight.shape[0]
    if not isinstance(dim, int) or not 1 <= dim <= n:
        raise ValueError(f"dim must be an integer in [1, {n}], got {dim!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    dtype, device = positive_weight.dtype, positive_weight.device
    generator = torch.Generator().manual_seed(seed)
    source = (init_scale * torch.randn(n, dim, generator=generator, dtype=dtype)).to(device).requires_grad_()
    context = (init_scale * torch.randn(n, dim, generator=generator, dtype=dtype)).to(device).requires_grad_()
    total = positive_weight.sum()
    if final_lr is not None and not 0 < final_lr <= lr:
        raise ValueError(f"final_lr must lie in (0, lr = {lr}], got {final_lr!r}")
    optimiser = torch.optim.Adam([source, context], lr=lr)
    decay = (final_lr / lr) ** (1 / steps) if final_lr is not None else 1.0
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=decay)
    start = time.perf_counter()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = sgns_pair_loss(source @ context.T, positive_weight, negative_weight).sum() / total
        loss.backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        final = sgns_pair_loss(source @ context.T, positive_weight, negative_weight).sum() / total
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return NodeEmbedding(source.detach(), context.detach(), float(final), time.perf_counter() - start)
