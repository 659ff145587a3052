"""Positive and negative sampling distributions and what they make a trained score learn.

Every distribution is a dense ``(n, n)`` tensor whose row ``u`` is the
distribution of the node paired with anchor ``u``: ``p+(v | u)`` for
positives and ``p-(v | u)`` for negatives.  Rows sum to 1 and the diagonal
is zero.  With ``T`` positives per anchor and ``k`` negatives per positive,
the sampled logistic (SGNS) objective is maximised pair by pair at
``s*(u, v) = log p+(v | u) - log(k p-(v | u))`` [1]_ [2]_, and the count
estimate of that score has the delta-method variance of
:func:`score_error_variance` [2]_.

The named strategies of :func:`strategy_distributions` are this library's
formalisation of the competing strategies described by Yan et al. [3]_;
the paper's own definitions were not available to us.

References
----------
.. [1] O. Levy and Y. Goldberg, "Neural word embedding as implicit matrix
   factorization", NeurIPS 2014.
.. [2] Z. Yang, M. Ding, C. Zhou, H. Yang, J. Zhou and J. Tang,
   "Understanding negative sampling in graph representation learning",
   KDD 2020 (MCNS).
.. [3] Y. Yan, B. Jing, L. Liu, R. Wang, J. Li, T. Abdelzaher and H. Tong,
   "Reconciling competing sampling strategies of network embedding",
   NeurIPS 2023.
"""

from __future__ import annotations

import math

import torch

from .proximity import relevant_mask, top_k_mask

STRATEGIES = ("standard", "distant_positives", "close_negatives", "top_k")
_DRAWS_PER_CHUNK = 2**22


# === Building blocks === #


def _check_k(k: float) -> None:
    if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
        raise ValueError(f"negatives per positive k must be a positive finite number, got {k!r}")


def _check_share(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _normalise_rows(weights: torch.Tensor, name: str) -> torch.Tensor:
    totals = weights.sum(dim=1, keepdim=True)
    if torch.any(totals <= 0):
        rows = torch.nonzero(totals.flatten() <= 0).flatten().tolist()
        raise ValueError(f"{name} has no mass on rows {rows[:10]}, but every anchor needs a non-empty support")
    return weights / totals


def uniform_distribution(n: int, dtype: torch.dtype = torch.float64,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """Return the uniform distribution over the ``n - 1`` nodes other than the anchor."""
    if n < 2:
        raise ValueError(f"need at least 2 nodes, got {n}")
    uniform = torch.full((n, n), 1.0 / (n - 1), dtype=dtype, device=device)
    uniform.fill_diagonal_(0)
    return uniform


def degree_distribution(adjacency: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """Return negatives drawn in proportion to ``degree**power``, the word2vec and DeepWalk default.

    ``power = 0.75`` is word2vec's choice; ``power = 1`` is the setting of
    NetMF's analysis.  The anchor itself is excluded.
    """
    weights = adjacency.sum(dim=1).pow(power).expand_as(adjacency).clone()
    weights.fill_diagonal_(0)
    return _normalise_rows(weights, "degree distribution")


def power_distribution(proximity: torch.Tensor, exponent: float) -> torch.Tensor:
    """Return ``p_d**exponent`` renormalised on the support of ``p_d``.

    ``exponent < 1`` flattens the proximity, so distant relevant nodes are
    drawn more often than under ``p_d`` itself ("distant positives").
    ``exponent = 1`` returns ``p_d``.
    """
    if not exponent > 0:
        raise ValueError(f"exponent must be positive, got {exponent!r}")
    support = relevant_mask(proximity)
    weights = torch.where(support, proximity.clamp(min=0).pow(exponent), torch.zeros_like(proximity))
    return _normalise_rows(weights, "power distribution")


def restricted_distribution(proximity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``p_d`` restricted to ``mask`` (for example ``TopK(u)``) and renormalised."""
    if mask.shape != proximity.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from proximity shape {tuple(proximity.shape)}")
    return _normalise_rows(torch.where(mask, proximity, torch.zeros_like(proximity)), "restricted distribution")


def set_uniform_distribution(mask: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return the uniform distribution over each anchor's set in ``mask`` (hard negatives)."""
    return _normalise_rows(mask.to(dtype), "set-uniform distribution")


def mixture_distribution(base: torch.Tensor, close: torch.Tensor, close_share: float) -> torch.Tensor:
    """Return ``(1 - close_share) * base + close_share * close``.

    With ``base`` uniform and ``close`` uniform over the anchor's relevant
    set this is the close-negative sampler: a share of the negatives is
    drawn among the nodes that are close to the anchor.
    """
    _check_share("close_share", close_share)
    if base.shape != close.shape:
        raise ValueError(f"base shape {tuple(base.shape)} differs from close shape {tuple(close.shape)}")
    return (1 - close_share) * base + close_share * close


def strategy_distributions(name: str, proximity: torch.Tensor, *, exponent: float = 0.3,
                           close_share: float = 0.75, top_k: int = 10,
                           hard_share: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(p+, p-)`` for one of the named sampling strategies.

    ``standard``
        ``p+ = p_d``, ``p-`` uniform (DeepWalk with uniform noise).
    ``distant_positives``
        ``p+ = p_d**exponent`` renormalised, ``p-`` uniform.
    ``close_negatives``
        ``p+ = p_d``, and ``p-`` mixes uniform noise (share ``1 - close_share``)
        with the uniform distribution over ``R(u)`` (share ``close_share``).
    ``top_k``
        ``p+ = p_d`` restricted to ``TopK(u)``; ``p-`` mixes uniform noise
        (share ``1 - hard_share``) with the uniform distribution over
        ``TopK(u)`` (share ``hard_share``).  This is our top-K sampler in
        the spirit of SENSEI [3]_, not the paper's own model.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES`.
    proximity : Tensor of shape ``(n, n)``
        Row-stochastic proximity with zero diagonal.
    exponent, close_share, top_k, hard_share
        Strength of each strategy, used only by the strategy it names.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    n = proximity.shape[0]
    uniform = uniform_distribution(n, proximity.dtype, proximity.device)
    if name == "standard":
        return proximity.clone(), uniform
    if name == "distant_positives":
        return power_distribution(proximity, exponent), uniform
    if name == "close_negatives":
        close = set_uniform_distribution(relevant_mask(proximity), proximity.dtype)
        return proximity.clone(), mixture_distribution(uniform, close, close_share)
    top = top_k_mask(proximity, top_k)
    hard = set_uniform_distribution(top, proximity.dtype)
    return restricted_distribution(proximity, top), mixture_distribution(uniform, hard, hard_share)


# === What the sampled objective learns === #


def optimal_scores(positive: torch.Tensor, negative: torch.Tensor, k: float) -> torch.Tensor:
    """Return ``s* = log p+ - log p- - log k``, the maximiser of the sampled logistic objective.

    The result is ``-inf`` where ``p+ = 0 < p-`` (the pair is only ever a
    negative), ``+inf`` where ``p- = 0 < p+``, and NaN where both are zero,
    because such a pair is never trained.

    Parameters
    ----------
    positive, negative : Tensor
        ``p+(v | u)`` and ``p-(v | u)``, same shape, non-negative.
    k : float
        Negatives drawn per positive.

    References
    ----------
    Levy and Goldberg (2014) [1]_ for ``p-`` the unigram distribution;
    Yang et al. (2020) [2]_, theorem 1, for general ``p-``.
    """
    _check_k(k)
    return torch.log(positive) - torch.log(negative) - math.log(k)


def score_error_variance(positive: torch.Tensor, negative: torch.Tensor, positives_per_anchor: int,
                         k: float) -> torch.Tensor:
    """Return the delta-method variance of the count estimate ``log(c+ / c-)`` of ``s*``.

    With ``T`` positives and ``k T`` negatives per anchor, the counts are
    ``c+ ~ Binomial(T, p+)`` and ``c- ~ Binomial(k T, p-)``, independent, and

    ``Var[log(c+/c-)] ~= (1/T) (1/p+ - 1 + 1/(k p-) - 1/k)``.

    The error is large where either ``p+`` or ``p-`` is small [2]_.
    Returns ``inf`` where a probability is zero.
    """
    _check_k(k)
    if not isinstance(positives_per_anchor, int) or positives_per_anchor < 1:
        raise ValueError(f"positives_per_anchor must be a positive integer, got {positives_per_anchor!r}")
    return (1 / positive - 1 + 1 / (k * negative) - 1 / k) / positives_per_anchor


def sample_pair_counts(distribution: torch.Tensor, draws_per_anchor: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``draws_per_anchor`` nodes for every anchor and return how often each was drawn.

    Row ``u`` of the result is a multinomial count vector with total
    ``draws_per_anchor`` and probabilities ``distribution[u]``.  The draws
    are made in chunks of about ``2**22`` indices, so memory stays bounded.
    The generator must live on the distribution's device.

    Returns
    -------
    Tensor of shape ``(rows, n)``, the distribution's dtype.
    """
    if not isinstance(draws_per_anchor, int) or draws_per_anchor < 1:
        raise ValueError(f"draws_per_anchor must be a positive integer, got {draws_per_anchor!r}")
    counts = torch.zeros_like(distribution)
    chunk = max(1, _DRAWS_PER_CHUNK // distribution.shape[0])
    for start in range(0, draws_per_anchor, chunk):
        size = min(chunk, draws_per_anchor - start)
        drawn = torch.multinomial(distribution, size, replacement=True, generator=generator)
        counts.scatter_add_(1, drawn, torch.ones_like(drawn, dtype=distribution.dtype))
    return counts


def empirical_scores(positive_counts: torch.Tensor, negative_counts: torch.Tensor) -> torch.Tensor:
    """Return ``log(c+ / c-)``, the score an unconstrained model fits to a finite sample.

    With ``T`` positives and ``k T`` negatives per anchor this equals
    ``log(p+_hat / (k p-_hat))`` for the empirical frequencies, so it is the
    plug-in estimate of :func:`optimal_scores`.
    """
    return torch.log(positive_counts) - torch.log(negative_counts)


def expected_uncovered_share(positive: torch.Tensor, members: torch.Tensor,
                             positives_per_anchor: int) -> tuple[float, float]:
    """Return the expected share of member pairs that ``T`` positive draws per anchor never reach.

    A member ``v`` of anchor ``u`` is missed with probability
    ``pi = (1 - p+(v | u))**T`` (the marginal of the multinomial), so the
    expected share is the mean of ``pi`` over all ``N`` member pairs.  A pair
    that is never drawn as a positive carries no evidence that it is
    relevant.

    Returns
    -------
    share : float
        The expected share.
    stderr : float
        ``sqrt(sum pi (1 - pi)) / N``, the standard error of the share in
        one sample if misses were independent.  Misses of one anchor are
        negatively correlated (two nodes are both missed with probability
        ``(1 - p1 - p2)**T <= (1 - p1)**T (1 - p2)**T``), so this is an upper
        bound.
    """
    if not isinstance(positives_per_anchor, int) or positives_per_anchor < 1:
        raise ValueError(f"positives_per_anchor must be a positive integer, got {positives_per_anchor!r}")
    missed = (1 - positive[members]).pow(positives_per_anchor).double()
    count = missed.numel()
    if count == 0:
        raise ValueError("members is empty; there is no pair to cover")
    return float(missed.mean()), float(torch.sqrt((missed * (1 - missed)).sum()) / count)


def uncovered_share(positive_counts: torch.Tensor, members: torch.Tensor) -> float:
    """Return the share of member pairs whose positive count is zero in a sample."""
    return float((positive_counts[members] == 0).double().mean())
