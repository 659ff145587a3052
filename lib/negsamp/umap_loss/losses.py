"""UMAP's published loss, its effective loss under negative sampling, and the expected update.

Sums run over ordered pairs ``i != j``, so every unordered pair counts twice,
and ``D_ij = ||y_i - y_j||**2``.

* Published loss (fuzzy cross-entropy without its constant part):
  ``L_pub = -sum_{i != j} [mu_ij log nu_ij + (1 - mu_ij) log(1 - nu_ij)]``.
* Effective loss: ``L_eff = -sum_{i != j} [mu_ij log nu_ij + w_ij log(1 - nu_ij)]``
  with the repulsive weight ``w_ij`` of :func:`~negsamp.umap_loss.graph.repulsive_weight`.
* Expected update: the mean displacement per epoch of umap-learn's sampler,
  divided by the learning rate, for a frozen embedding and unclipped updates.
  For the push-tail variant it equals ``-grad L_eff / mu_max``; for stock
  umap-learn it does not equal the gradient of any function unless all
  degrees are equal.

Pairwise terms are computed in blocks of rows, so memory grows like
``block_size * n`` rather than ``n**2``.

References
----------
.. [1] S. Damrich and F. A. Hamprecht, "On UMAP's true loss function", NeurIPS 2021.
.. [2] L. McInnes, J. Healy and J. Melville, "UMAP: Uniform manifold
   approximation and projection for dimension reduction", arXiv:1802.03426, 2018.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .graph import FuzzyGraph, check_variant, negative_sampling_rate, repulsive_weight
from .similarity import (
    attraction_coefficient,
    log_similarity_complement,
    low_dimensional_similarity,
    repulsion_coefficient,
)


def _check_embedding(embedding: torch.Tensor, graph: FuzzyGraph) -> None:
    if embedding.ndim != 2 or embedding.shape[0] != graph.n_points:
        raise ValueError(f"embedding must have shape ({graph.n_points}, dim) to match the graph, "
                         f"got {tuple(embedding.shape)}")


def _row_blocks(n: int, block_size: int):
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    for start in range(0, n, block_size):
        yield start, min(start + block_size, n)


def _block_squared_distances(embedding: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Squared distances from rows ``start:stop`` to every row, without a square root so autograd stays finite."""
    difference = embedding[start:stop, None, :] - embedding[None, :, :]
    return difference.pow(2).sum(-1)


def _off_diagonal_sum(block: torch.Tensor, start: int) -> torch.Tensor:
    """Sum a block of rows ``start:start + len(block)`` of a pairwise matrix, leaving out its diagonal entries."""
    return block.sum() - torch.diagonal(block, offset=start).sum()


def _edge_squared_distances(embedding: torch.Tensor, graph: FuzzyGraph) -> torch.Tensor:
    return (embedding[graph.heads] - embedding[graph.tails]).pow(2).sum(-1)


# === Losses === #


def published_loss_terms(embedding: torch.Tensor, graph: FuzzyGraph, a: float, b: float,
                         block_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the attractive and repulsive parts of UMAP's published loss.

    Attractive: ``-sum_{i != j} mu_ij log nu_ij``; repulsive:
    ``-sum_{i != j} (1 - mu_ij) log(1 - nu_ij)``.  Their sum is
    :func:`published_loss`.

    Parameters
    ----------
    embedding : Tensor
        Embedding ``Y``, shape ``(n, dim)``; gradients flow through it.
    graph : FuzzyGraph
        Memberships ``mu`` (both directed copies of each edge).
    a, b : float
        Curve parameters of ``nu``.
    block_size : int
        Rows per block of pairwise distances.
    """
    _check_embedding(embedding, graph)
    edge_distances = _edge_squared_distances(embedding, graph)
    log_nu = torch.log(low_dimensional_similarity(edge_distances, a, b))
    log_complement = log_similarity_complement(edge_distances, a, b)
    attractive = -(graph.weights * log_nu).sum()
    # Split (1 - mu) log(1 - nu) into a dense sum over all pairs minus a sparse sum over edges.
    repulsive = (graph.weights * log_complement).sum()
    for start, stop in _row_blocks(graph.n_points, block_size):
        terms = log_similarity_complement(_block_squared_distances(embedding, start, stop), a, b)
        repulsive = repulsive - _off_diagonal_sum(terms, start)
    return attractive, repulsive


def published_loss(embedding: torch.Tensor, graph: FuzzyGraph, a: float, b: float,
                   block_size: int = 2048) -> torch.Tensor:
    """Return ``L_pub = -sum_{i != j} [mu log nu + (1 - mu) log(1 - nu)]``, UMAP's published loss.

    See :func:`published_loss_terms` for the parameters.
    """
    attractive, repulsive = published_loss_terms(embedding, graph, a, b, block_size)
    return attractive + repulsive


def effective_loss_terms(embedding: torch.Tensor, graph: FuzzyGraph, a: float, b: float,
                         negative_sample_rate: float = 5, repulsion_strength: float = 1.0,
                         variant: str = "push_tail", block_size: int = 2048
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the attractive and repulsive parts of UMAP's effective loss.

    Attractive: ``-sum_{i != j} mu_ij log nu_ij`` (the same as the published
    loss); repulsive: ``-sum_{i != j} w_ij log(1 - nu_ij)`` with ``w_ij`` from
    :func:`~negsamp.umap_loss.graph.repulsive_weight` for ``variant``.

    Parameters
    ----------
    embedding : Tensor
        Embedding ``Y``, shape ``(n, dim)``; gradients flow through it.
    graph : FuzzyGraph
        Memberships of the graph the optimiser samples (prune it first, as umap-learn does).
    a, b : float
        Curve parameters of ``nu``.
    negative_sample_rate, repulsion_strength : float
        ``m`` and ``gamma``.
    variant : {'push_tail', 'stock'}
        ``push_tail`` gives the loss of Damrich and Hamprecht (2021);
        ``stock`` the loss whose gradient is the conservative part of stock
        umap-learn's update (half the repulsive weight).
    block_size : int
        Rows per block of pairwise distances.
    """
    _check_embedding(embedding, graph)
    check_variant(variant)
    edge_distances = _edge_squared_distances(embedding, graph)
    attractive = -(graph.weights * torch.log(low_dimensional_similarity(edge_distances, a, b))).sum()
    degrees = graph.degrees()
    repulsive = torch.zeros((), dtype=embedding.dtype, device=embedding.device)
    for start, stop in _row_blocks(graph.n_points, block_size):
        weights = repulsive_weight(degrees[start:stop, None], degrees[None, :], graph.n_points,
                                   negative_sample_rate, repulsion_strength, variant)
        terms = weights * log_similarity_complement(_block_squared_distances(embedding, start, stop), a, b)
        repulsive = repulsive - _off_diagonal_sum(terms, start)
    return attractive, repulsive


def effective_loss(embedding: torch.Tensor, graph: FuzzyGraph, a: float, b: float,
                   negative_sample_rate: float = 5, repulsion_strength: float = 1.0,
                   variant: str = "push_tail", block_size: int = 2048) -> torch.Tensor:
    """Return ``L_eff = -sum_{i != j} [mu log nu + w log(1 - nu)]``, UMAP's effective loss.

    See :func:`effective_loss_terms` for the parameters.
    """
    attractive, repulsive = effective_loss_terms(embedding, graph, a, b, negative_sample_rate,
                                                 repulsion_strength, variant, block_size)
    return attractive + repulsive


# === Expected update of the sampler === #


def expected_update(embedding: torch.Tensor, graph: FuzzyGraph, a: float, b: float,
                    negative_sample_rate: float = 5, repulsion_strength: float = 1.0,
                    variant: str = "stock", epsilon: float = 0.0, block_size: int = 2048) -> torch.Tensor:
    """Return the expected displacement per epoch of umap-learn's sampler, divided by the learning rate.

    The formula is built from the sampling scheme, not from a loss.  Each
    directed edge ``(i, j)`` fires ``mu_ij / mu_max`` times per epoch and
    pulls both ends together, and head ``i`` draws ``m d_i / mu_max`` uniform
    negatives per epoch.
    Stock umap-learn moves only the head of a negative pair, so ``y_i`` is
    pushed from ``y_j`` at rate ``c_i``; the push-tail variant also moves the
    tail, giving rate ``c_i + c_j`` (``c`` from
    :func:`~negsamp.umap_loss.graph.negative_sampling_rate`).

    The formula assumes the embedding does not move within the epoch (a
    small learning rate) and that umap-learn's clip of each coordinate to
    ``[-4, 4]`` never binds; it then holds at every finite ``n``.

    Parameters
    ----------
    embedding : Tensor
        Embedding ``Y``, shape ``(n, dim)``.
    graph : FuzzyGraph
        The graph the sampler uses (pruned).
    a, b : float
        Curve parameters of ``nu``.
    negative_sample_rate, repulsion_strength : float
        ``m`` and ``gamma``.
    variant : {'stock', 'push_tail'}
        Which sampler.
    epsilon : float
        Added to ``D`` in the repulsive coefficient; 0 gives the exact
        gradient of ``log(1 - nu)``, 0.001 models umap-learn's code.
    block_size : int
        Rows per block of pairwise distances.

    Returns
    -------
    Tensor
        Shape ``(n, dim)``.
    """
    _check_embedding(embedding, graph)
    variant = check_variant(variant)
    max_weight = graph.max_weight
    update = torch.zeros_like(embedding)

    # Attraction: every sampled edge moves its head and, with the opposite sign, its tail.
    edge_difference = embedding[graph.heads] - embedding[graph.tails]
    coefficient = attraction_coefficient(edge_difference.pow(2).sum(-1), a, b)
    pull = (graph.weights / max_weight * coefficient)[:, None] * edge_difference
    update.index_add_(0, graph.heads, pull)
    update.index_add_(0, graph.tails, -pull)

    # Repulsion: uniform negatives, one rate per head (stock) or per pair (push-tail).
    rate = negative_sampling_rate(graph.degrees(), graph.n_points, negative_sample_rate,
                                  repulsion_strength, max_weight)
    for start, stop in _row_blocks(graph.n_points, block_size):
        distances = _block_squared_distances(embedding, start, stop)
        pair_rate = rate[start:stop, None].expand_as(distances)
        if variant == "push_tail":
            pair_rate = pair_rate + rate[None, :]
        push = pair_rate * repulsion_coefficient(distances, a, b, epsilon)
        update[start:stop] += push.sum(1, keepdim=True) * embedding[start:stop] - push @ embedding
    return update


# === Global rescaling === #


def loss_scale_derivative(loss: Callable[[torch.Tensor], torch.Tensor], embedding: torch.Tensor) -> float:
    """Return ``d/ds loss(s Y)`` at ``s = 1``, by autograd.

    Zero means the embedding is stationary under a global rescaling; a
    negative value means the loss prefers a larger embedding.
    """
    scale = torch.ones((), dtype=embedding.dtype, device=embedding.device, requires_grad=True)
    (derivative,) = torch.autograd.grad(loss(scale * embedding.detach()), scale)
    return float(derivative)


def best_global_scale(loss: Callable[[torch.Tensor], torch.Tensor], embedding: torch.Tensor,
                      bounds: tuple[float, float] = (1 / 32, 32), tolerance: float = 1e-4) -> float:
    """Return ``s* = argmin_s loss(s Y)`` over ``s`` in ``bounds``, by bounded Brent search on ``log s``.

    Raises
    ------
    ValueError
        If the bounds are not ``0 < low < 1 < high``, or if the minimum lies
        on a bound (widen ``bounds`` then).
    """
    from scipy.optimize import minimize_scalar

    low, high = bounds
    if not 0 < low < 1 < high:
        raise ValueError(f"bounds must satisfy 0 < low < 1 < high, got {bounds!r}")
    fixed = embedding.detach()
    with torch.no_grad():
        result = minimize_scalar(lambda log_scale: float(loss(math.exp(log_scale) * fixed)),
                                 bounds=(math.log(low), math.log(high)), method="bounded",
                                 options={"xatol": tolerance})
    if min(result.x - math.log(low), math.log(high) - result.x) < 10 * tolerance:
        raise ValueError(f"the best scale {math.exp(result.x):.4g} lies on the search bound {bounds!r}; "
                         "widen the bounds")
    return float(math.exp(result.x))
