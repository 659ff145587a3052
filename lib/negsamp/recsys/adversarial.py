"""InfoNCE, AdvInfoNCE and BPR for matrix factorisation, with a popularity-shift simulator.

In implicit-feedback collaborative filtering a user's interacted items are
positives and sampled other items are negatives.  AdvInfoNCE [1]_ gives each
negative ``j`` a hardness ``delta_j`` and scores a positive ``i`` against its
``N`` negatives with

    ``L = log(1 + K sum_j exp(delta_j + s_j - s_i))``,

where the hardness comes from a distribution ``p`` over the negatives,
``delta_j = log(N p_j)``, so that ``sum_j exp(delta_j) = N``.  An adversary
picks ``p`` to maximise the loss inside the ball ``KL(p || uniform) <= eta``.
With ``delta = 0`` and ``K = 1`` the loss is InfoNCE [2]_.  The inner
maximisation has a closed-form solution, an exponential tilt of the uniform
distribution (:func:`kl_ball_worst_case`), which makes AdvInfoNCE a
distributionally robust InfoNCE.

The module contains the losses, the hardness parameterisation and the KL
ball.  The ball is enforced by an explicit projection,
:func:`project_to_kl_ball`, which the authors' released code does not have.
It also contains matrix-factorisation scoring and a training loop with early
stopping.  For data it offers a simulator with popularity-biased exposure and
a uniform-exposure test split, and a popularity-debiased split of real
interactions.

References
----------
.. [1] A. Zhang, L. Sheng, Z. Cai, X. Wang and T.-S. Chua, "Empowering
   collaborative filtering with principled adversarial contrastive loss",
   NeurIPS 2023.
.. [2] A. van den Oord, Y. Li and O. Vinyals, "Representation learning with
   contrastive predictive coding", arXiv:1807.03748, 2018.
.. [3] S. Rendle, C. Freudenthaler, Z. Gantner and L. Schmidt-Thieme, "BPR:
   Bayesian personalized ranking from implicit feedback", UAI 2009.
.. [4] Y. Saito, S. Yaginuma, Y. Nishino, H. Sakata and K. Nakata, "Unbiased
   recommender learning from missing-not-at-random implicit feedback",
   WSDM 2020.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics

LOSSES = ("bpr", "infonce", "advinfonce", "kl-dro")


# === Losses on scores === #


def _check_pair_scores(positive: torch.Tensor, negative: torch.Tensor) -> None:
    if positive.ndim != 1 or negative.ndim != 2 or negative.shape[0] != positive.shape[0]:
        raise ValueError(
            f"positive must have shape (B,) and negative shape (B, N), got {tuple(positive.shape)} "
            f"and {tuple(negative.shape)}"
        )


def bpr_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss ``mean_j -log sigmoid(s_i - s_j)`` for each positive [3]_.

    Parameters
    ----------
    positive : Tensor, shape (B,)
        Score of each positive pair ``(u, i)``.
    negative : Tensor, shape (B, N)
        Scores of the ``N`` negatives sampled for that pair.

    Returns
    -------
    Tensor, shape (B,)
    """
    _check_pair_scores(positive, negative)
    return F.softplus(negative - positive.unsqueeze(1)).mean(dim=1)


def infonce_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Sampled-softmax (InfoNCE) loss ``-log exp(s_i) / (exp(s_i) + sum_j exp(s_j))`` [2]_.

    Shapes as in :func:`bpr_loss`; returns one loss per positive, shape (B,).
    """
    _check_pair_scores(positive, negative)
    return -torch.log_softmax(torch.cat([positive.unsqueeze(1), negative], dim=1), dim=1)[:, 0]


def adv_infonce_loss(positive: torch.Tensor, negative: torch.Tensor, hardness: torch.Tensor | None = None,
                     negative_weight: float = 1.0) -> torch.Tensor:
    """AdvInfoNCE loss ``log(1 + K sum_j exp(delta_j + s_j - s_i))`` for each positive [1]_.

    Parameters
    ----------
    positive : Tensor, shape (B,)
    negative : Tensor, shape (B, N)
    hardness : Tensor, shape (B, N), optional
        ``delta_j``; ``None`` means zero hardness.  Entries may be ``-inf``
        (a negative the adversary ignores).
    negative_weight : float
        ``K``, the constant weight on the negative term.  The authors' code
        uses ``K = 64`` for AdvInfoNCE but ``K = 1`` for its InfoNCE baseline;
        ``K`` shifts every negative logit by ``log K``, like a margin.

    Returns
    -------
    Tensor, shape (B,)
    """
    _check_pair_scores(positive, negative)
    if not (negative_weight > 0 and math.isfinite(negative_weight)):
        raise ValueError(f"negative_weight must be a positive finite number, got {negative_weight!r}")
    logits = negative - positive.unsqueeze(1) + math.log(negative_weight)
    if hardness is not None:
        if hardness.shape != negative.shape:
            raise ValueError(f"hardness must have the shape of negative, {tuple(negative.shape)}, "
                             f"got {tuple(hardness.shape)}")
        logits = logits + hardness
    zero = torch.zeros_like(positive).unsqueeze(1)
    return torch.logsumexp(torch.cat([zero, logits], dim=1), dim=1)


# === Hardness and the KL ball === #


def hardness_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Hardness ``delta_j = log(N softmax(logits)_j)`` of each row's ``N`` negatives.

    The parameterisation of [1]_: ``sum_j exp(delta_j) = N`` holds for any
    logits, so zero logits give zero hardness.  Shape (B, N) in and out.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, N), got {tuple(logits.shape)}")
    return math.log(logits.shape[1]) + torch.log_softmax(logits, dim=1)


def kl_from_uniform(hardness: torch.Tensor) -> torch.Tensor:
    """``KL(p || uniform)`` of the distribution ``p_j = exp(delta_j) / N`` behind a hardness row.

    Equals ``mean_j exp(delta_j) delta_j``.  Shape (B, N) in, (B,) out.
    """
    if hardness.ndim != 2:
        raise ValueError(f"hardness must have shape (B, N), got {tuple(hardness.shape)}")
    weights = hardness.exp()
    return torch.special.xlogy(weights, weights).mean(dim=1)


def _kl_of_distribution(p: torch.Tensor) -> torch.Tensor:
    return torch.special.xlogy(p, p).sum(dim=-1) + math.log(p.shape[-1])


def _check_budget(budget: float) -> None:
    if not (budget >= 0 and math.isfinite(budget)):
        raise ValueError(f"KL budget must be a non-negative finite number of nats, got {budget!r}")


def kl_regularised_objective(p: torch.Tensor, values: torch.Tensor, temperature: float) -> torch.Tensor:
    """``E_p[values] - temperature * KL(p || uniform)`` for each row.

    Parameters
    ----------
    p : Tensor, shape (B, N)
        Rows on the probability simplex.
    values : Tensor, shape (B, N)
    temperature : float
        Positive weight of the KL term.

    Returns
    -------
    Tensor, shape (B,)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if p.shape != values.shape:
        raise ValueError(f"p and values must have the same shape, got {tuple(p.shape)} and {tuple(values.shape)}")
    return (p * values).sum(dim=-1) - temperature * _kl_of_distribution(p)


def gibbs_worst_case(values: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximiser and maximum of :func:`kl_regularised_objective` over the simplex.

    By the Gibbs variational principle the maximiser is the tilt
    ``p* = softmax(values / temperature)`` and the maximum is
    ``temperature * log mean_j exp(values_j / temperature)``.

    Returns
    -------
    p_star : Tensor, shape (B, N)
    value : Tensor, shape (B,)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    scaled = values / temperature
    value = temperature * (torch.logsumexp(scaled, dim=-1) - math.log(values.shape[-1]))
    return torch.softmax(scaled, dim=-1), value


def _tilt_kl(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(scale * values, dim=-1)
    return (log_p.exp() * log_p).sum(dim=-1) + math.log(values.shape[-1])


def _bisect_tilt_scale(values: torch.Tensor, budget: float, low: torch.Tensor, high: torch.Tensor,
                       log_scale: bool, iterations: int) -> torch.Tensor:
    """Largest scale in ``[low, high]`` whose tilt ``softmax(scale * values)`` has KL at most ``budget``.

    ``KL(softmax(c v) || uniform)`` has derivative ``c Var_p(v) >= 0`` in
    ``c``, so it is non-decreasing and bisection applies.  The returned scale
    is the feasible end of the final bracket.
    """
    for _ in range(iterations):
        middle = (low + high) / 2
        scale = middle.exp() if log_scale else middle
        feasible = (_tilt_kl(values, scale) <= budget).unsqueeze(-1)
        low = torch.where(feasible, middle, low)
        high = torch.where(feasible, high, middle)
    return low.exp() if log_scale else low


def project_to_kl_ball(logits: torch.Tensor, budget: float, iterations: int = 24) -> torch.Tensor:
    """Temper each row of hardness logits so that ``KL(softmax(row) || uniform) <= budget``.

    Rows already inside the ball are returned unchanged.  Other rows are
    multiplied by the largest ``t`` in ``[0, 1]`` that brings them inside.
    The tempered distribution ``softmax(t h)`` is the information projection
    of ``softmax(h)`` onto the ball: it minimises ``KL(q || softmax(h))`` over
    all ``q`` in the ball, because the minimiser of that problem is the
    geometric mixture ``p^t u^(1 - t)``.  ``t`` is found without gradient and
    treated as a constant, so gradients flow through the logits only.

    Parameters
    ----------
    logits : Tensor, shape (B, N)
    budget : float
        ``eta``, the radius of the ball in nats.
    iterations : int
        Bisection steps; 24 pin ``t`` to within 6e-8 below the exact scale.

    Returns
    -------
    Tensor, shape (B, N)
        ``t * logits`` row by row.
    """
    _check_budget(budget)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, N), got {tuple(logits.shape)}")
    with torch.no_grad():
        values = logits.detach()
        inside = _tilt_kl(values, torch.ones(1, dtype=values.dtype, device=values.device)) <= budget
        low = torch.zeros(values.shape[0], 1, dtype=values.dtype, device=values.device)
        high = torch.ones_like(low)
        scale = _bisect_tilt_scale(values, budget, low, high, log_scale=False, iterations=iterations)
        scale = torch.where(inside.unsqueeze(1), torch.ones_like(scale), scale)
    return logits * scale.to(logits.dtype)


def kl_ball_worst_case(values: torch.Tensor, budget: float, iterations: int = 40) -> torch.Tensor:
    """Distribution ``p`` that maximises ``E_p[values]`` subject to ``KL(p || uniform) <= budget``.

    The maximiser is the tilt ``p proportional to exp(beta * values)`` whose
    ``beta >= 0`` puts ``KL`` exactly at the budget (a Lagrange argument; the
    chapter derives it).  When the budget reaches ``log(N / m)``, with ``m``
    the number of entries tied at the maximum, the maximiser is uniform on
    those entries.  ``beta`` is found by bisection on ``log beta``.

    Parameters
    ----------
    values : Tensor, shape (B, N)
    budget : float
        ``eta`` in nats.
    iterations : int
        Bisection steps on ``log beta`` over a bracket of width about 37.

    Returns
    -------
    Tensor, shape (B, N), float64
    """
    _check_budget(budget)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (B, N), got {tuple(values.shape)}")
    with torch.no_grad():
        values = values.detach().double()
        spread = (values.max(dim=1, keepdim=True).values - values.min(dim=1, keepdim=True).values)
        flat = spread.squeeze(1) == 0
        shifted = values - values.min(dim=1, keepdim=True).values
        normalised = shifted / torch.where(flat.unsqueeze(1), 1.0, spread)
        at_maximum = normalised == normalised.max(dim=1, keepdim=True).values
        limit = at_maximum.double() / at_maximum.sum(dim=1, keepdim=True)
        saturated = _kl_of_distribution(limit) <= budget
        low = torch.full((values.shape[0], 1), math.log(1e-8), dtype=values.dtype, device=values.device)
        high = torch.full_like(low, math.log(1e8))
        beta = _bisect_tilt_scale(normalised, budget, low, high, log_scale=True, iterations=iterations)
        if budget == 0:  # only the uniform distribution (beta = 0) is feasible
            beta = torch.zeros_like(beta)
        tilt = torch.softmax(beta * normalised, dim=1)
        uniform = torch.full_like(tilt, 1.0 / values.shape[1])
        tilt = torch.where(saturated.unsqueeze(1), limit, tilt)
        return torch.where(flat.unsqueeze(1), uniform, tilt)


def adv_infonce_worst_case(positive: torch.Tensor, negative: torch.Tensor, budget: float,
                           negative_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inner maximisation of AdvInfoNCE over hardness in the KL ball.

    The loss ``log(1 + K N E_p[exp(s_j - s_i)])`` increases with the
    expectation, so its maximiser over ``KL(p || uniform) <= budget`` is
    :func:`kl_ball_worst_case` of ``g_j = exp(s_j - s_i)``.

    Returns
    -------
    loss : Tensor, shape (B,)
        The maximal loss, in the dtype of ``negative``.
    hardness : Tensor, shape (B, N)
        The maximising ``delta_j = log(N p_j)``, possibly ``-inf``.
    """
    _check_pair_scores(positive, negative)
    with torch.no_grad():
        gaps = (negative - positive.unsqueeze(1)).double()
        values = torch.exp(gaps - gaps.max(dim=1, keepdim=True).values)  # g_j up to a positive factor
        p = kl_ball_worst_case(values, budget)
        hardness = (math.log(negative.shape[1]) + torch.log(p)).to(negative.dtype)
    return adv_infonce_loss(positive, negative, hardness, negative_weight), hardness


# === Ranks behind the ranking bound === #


def positive_rank(positive: torch.Tensor, negative: torch.Tensor,
                  hardness: torch.Tensor | None = None) -> torch.Tensor:
    """Rank ``1 + #{j : s_j + delta_j >= s_i}`` of each positive among its negatives.

    Ties count against the positive.  Without hardness this is the plain rank
    that NDCG with one relevant item discounts.  Returns shape (B,), float.
    """
    _check_pair_scores(positive, negative)
    shifted = negative if hardness is None else negative + hardness
    return 1.0 + (shifted >= positive.unsqueeze(1)).sum(dim=1).to(positive.dtype)


# === Matrix factorisation and the adversary === #


class MatrixFactorisation(torch.nn.Module):
    """User and item embeddings scored by dot product, or by cosine similarity over a temperature.

    Parameters
    ----------
    n_users, n_items, dim : int
        Table sizes and embedding dimension.
    similarity : {'dot', 'cosine'}
        ``dot``: ``s(u, i) = e_u . e_i``.  ``cosine``: ``s(u, i) = cos(e_u, e_i) / temperature``.
    temperature : float
        Used by ``cosine`` only.
    init_std : float
        Standard deviation of the normal initialisation.
    generator : torch.Generator, optional
        CPU generator for the initialisation.
    device : torch.device or str
    """

    def __init__(self, n_users: int, n_items: int, dim: int, *, similarity: str = "dot",
                 temperature: float = 1.0, init_std: float = 0.1, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        if min(n_users, n_items, dim) < 1:
            raise ValueError(f"n_users, n_items and dim must be positive, got {n_users}, {n_items}, {dim}")
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.similarity = similarity
        self.temperature = float(temperature)
        users = torch.randn(n_users, dim, generator=generator, dtype=dtype) * init_std
        items = torch.randn(n_items, dim, generator=generator, dtype=dtype) * init_std
        self.user_embedding = torch.nn.Parameter(users.to(device))
        self.item_embedding = torch.nn.Parameter(items.to(device))

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.similarity == "cosine":
            return F.normalize(self.user_embedding, dim=1), F.normalize(self.item_embedding, dim=1)
        return self.user_embedding, self.item_embedding

    def _scale(self) -> float:
        return 1.0 / self.temperature if self.similarity == "cosine" else 1.0

    def scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of users ``(B,)`` against items ``(B,)`` or ``(B, M)``; the output has the items' shape."""
        user_vectors, item_vectors = self._vectors()
        u = user_vectors[users]
        if items.ndim == 1:
            return (u * item_vectors[items]).sum(dim=-1) * self._scale()
        if item_vectors.shape[0] <= 16 * items.shape[1]:
            # With a small catalogue, scoring every item and picking columns is cheaper than
            # gathering (B, M, d) item vectors, whose backward pass is a large scatter-add.
            return (u @ item_vectors.T).gather(1, items) * self._scale()
        return torch.einsum("bd,bmd->bm", u, item_vectors[items]) * self._scale()

    def all_scores(self) -> torch.Tensor:
        """Scores of every user against every item, shape ``(n_users, n_items)``."""
        user_vectors, item_vectors = self._vectors()
        return user_vectors @ item_vectors.T * self._scale()


def adversarial_step(loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
    """Take one gradient-ascent step on the adversary's parameters, which ``optimiser`` holds.

    The adversary maximises the loss, so the step descends on ``-loss``.
    """
    optimiser.zero_grad()
    (-loss).backward()
    optimiser.step()


# === Negative sampling and evaluation === #


def sample_negatives(users: torch.Tensor, positives: torch.Tensor, n_negatives: int,
                     generator: torch.Generator, max_rounds: int = 20) -> torch.Tensor:
    """Draw ``n_negatives`` items per user uniformly from the items that user has no training positive on.

    Parameters
    ----------
    users : Tensor, shape (B,)
    positives : Tensor, shape (n_users, n_items), bool
        Training positives; a sampled item that is a positive is redrawn.
    generator : torch.Generator
        Generator on the device of ``positives``.
    max_rounds : int
        Redraw rounds.  NOTE: a draw still colliding after them is kept; with
        fewer than half the items positive per user the chance is below 1e-6.

    Returns
    -------
    Tensor, shape (B, n_negatives), long
    """
    n_items = positives.shape[1]
    shape = (users.shape[0], n_negatives)
    negatives = torch.randint(0, n_items, shape, generator=generator, device=positives.device)
    for _ in range(max_rounds):
        collided = positives[users.unsqueeze(1), negatives]
        if not bool(collided.any()):
            break
        redraw = torch.randint(0, n_items, shape, generator=generator, device=positives.device)
        negatives = torch.where(collided, redraw, negatives)
    return negatives


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor, exclude: torch.Tensor,
                    k: int = 20) -> dict[str, torch.Tensor]:
    """Per-user Recall@k and NDCG@k over all items, with the excluded items ranked last.

    Parameters
    ----------
    scores : Tensor, shape (n_users, n_items)
    relevant : Tensor, shape (n_users, n_items), bool
        Test positives.
    exclude : Tensor, shape (n_users, n_items), bool
        Items removed from the ranking (training and other held-out positives).

    Returns
    -------
    dict
        ``recall`` and ``ndcg``, each of shape (n_users,), NaN for users
        without test positives; computed by :mod:`negsamp.metrics`.
    """
    if not (scores.shape == relevant.shape == exclude.shape):
        raise ValueError(f"scores, relevant and exclude must have equal shapes, got {tuple(scores.shape)}, "
                         f"{tuple(relevant.shape)} and {tuple(exclude.shape)}")
    if bool((relevant & exclude).any()):
        raise ValueError("an item is both relevant and excluded; remove test positives from exclude")
    masked = scores.double().masked_fill(exclude, -math.inf)
    return {
        "recall": metrics.recall_at_k(masked, relevant, k),
        "ndcg": metrics.ndcg_at_k(masked, relevant.double(), k),
    }


def popularity_scores(train: torch.Tensor) -> torch.Tensor:
    """Score every item for every user by its number of training positives, shape ``(n_users, n_items)``."""
    counts = train.double().sum(dim=0)
    return counts.unsqueeze(0).expand(train.shape[0], -1)


def gini_coefficient(counts: torch.Tensor) -> float:
    """Gini coefficient of non-negative counts: 0 when all are equal, near 1 when one item has them all."""
    values = torch.sort(counts.double().reshape(-1)).values
    if values.numel() == 0 or bool((values < 0).any()) or float(values.sum()) == 0:
        raise ValueError("counts must be non-empty, non-negative and not all zero")
    n = values.numel()
    ranks = torch.arange(1, n + 1, dtype=values.dtype, device=values.device)
    return float((2 * (ranks * values).sum() / (n * values.sum())) - (n + 1) / n)


def evaluate_splits(scores: torch.Tensor, splits: "FeedbackSplits", k: int = 20) -> dict:
    """Recall@k and NDCG@k on the out-of-distribution and in-distribution test sets.

    For ``test_ood`` every observed positive (train, valid, ``test_id``) is
    ranked last; for ``test_id`` the training, validation and ``test_ood``
    positives are.

    Returns
    -------
    dict
        ``ood_recall``, ``ood_ndcg``, ``id_recall`` and ``id_ndcg``: means
        over users with test positives (float).  The same keys with the suffix
        ``_per_user`` hold the per-user values, shape (n_users,), NaN for
        users without test positives.
    """
    ood = ranking_metrics(scores, splits.test_ood, splits.observed, k)
    in_distribution = ranking_metrics(scores, splits.test_id, splits.train | splits.valid | splits.test_ood, k)
    result = {}
    for prefix, values in (("ood", ood), ("id", in_distribution)):
        for name, per_user in values.items():
            result[f"{prefix}_{name}"] = float(torch.nanmean(per_user))
            result[f"{prefix}_{name}_per_user"] = per_user.cpu()
    return result


def paired_user_difference(first, second, confidence: float = 0.975) -> dict[str, float]:
    """Mean over users of the per-user difference ``first - second``, with its standard error and z margin.

    Parameters
    ----------
    first, second : sequence of Tensor, each of shape (n_users,)
        Per-user metric values, one tensor per seed, NaN for users without
        test positives.  Each user's difference is averaged over the seeds
        before the mean over users.
    confidence : float
        One-sided confidence level of the normal-quantile margin.

    Returns
    -------
    dict
        ``mean``, ``stderr``, ``margin`` and ``users``.  The standard error is
        the spread over users; variation between training seeds that is shared
        by all users is not in it.
    """
    from scipy import stats

    differences = torch.stack([a.double() - b.double() for a, b in zip(first, second)])
    per_user = torch.nanmean(differences, dim=0)
    per_user = per_user[~torch.isnan(per_user)]
    if per_user.numel() < 2:
        raise ValueError(f"need at least two users with test positives, got {per_user.numel()}")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must lie in (0.5, 1), got {confidence!r}")
    stderr = float(per_user.std(unbiased=True)) / math.sqrt(per_user.numel())
    margin = float(stats.norm.ppf(confidence)) * stderr
    return {"mean": float(per_user.mean()), "stderr": stderr, "margin": margin, "users": per_user.numel()}


def paired_seed_difference(first, second, confidence: float = 0.975) -> dict[str, float]:
    """Mean of the per-seed differences ``first - second`` with its standard error and t margin.

    Each seed trains both models on the same data, so the differences are
    paired.  ``margin`` is ``t_{confidence, S - 1}`` times the standard error:
    the mean exceeds it when a one-sided t test at level ``1 - confidence``
    finds ``first`` better.

    Parameters
    ----------
    first, second : sequence of float
        One value per seed, at least two seeds.
    confidence : float
        One-sided confidence level of the margin.

    Returns
    -------
    dict
        ``mean``, ``stderr``, ``sd``, ``margin`` and ``seeds``.
    """
    from scipy import stats

    differences = torch.as_tensor(first, dtype=torch.float64) - torch.as_tensor(second, dtype=torch.float64)
    if differences.ndim != 1 or differences.numel() < 2:
        raise ValueError(f"need one value per seed for at least two seeds, got shape {tuple(differences.shape)}")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must lie in (0.5, 1), got {confidence!r}")
    seeds = differences.numel()
    sd = float(differences.std(unbiased=True))
    stderr = sd / math.sqrt(seeds)
    margin = float(stats.t.ppf(confidence, seeds - 1)) * stderr
    return {"mean": float(differences.mean()), "stderr": stderr, "sd": sd, "margin": margin, "seeds": seeds}


def false_negative_hardness_gap(logits: torch.Tensor, false_negatives: torch.Tensor,
                                true_negatives: torch.Tensor) -> torch.Tensor:
    """Per-user mean hardness logit of false negatives minus that of true negatives, in standard deviations.

    Logits are standardised within each user over the union of both sets, so
    the gap is comparable across users.  A positive gap means the adversary
    makes the user's false negatives (liked but never observed) harder than
    the items the user does not like.

    Parameters
    ----------
    logits : Tensor, shape (n_users, n_items)
        Hardness logits, for example ``adversary.all_scores()``.
    false_negatives, true_negatives : Tensor, shape (n_users, n_items), bool
        Disjoint sets of unobserved items.

    Returns
    -------
    Tensor, shape (n_users,)
        NaN for users who lack either set.
    """
    if not (logits.shape == false_negatives.shape == true_negatives.shape):
        raise ValueError(f"logits and both masks must have one shape, got {tuple(logits.shape)}, "
                         f"{tuple(false_negatives.shape)} and {tuple(true_negatives.shape)}")
    if bool((false_negatives & true_negatives).any()):
        raise ValueError("an item is both a false and a true negative; the two masks must be disjoint")
    values = logits.double()
    pool = false_negatives | true_negatives
    nan = torch.full_like(values, math.nan)
    pooled = torch.where(pool, values, nan)
    centre = torch.nanmean(pooled, dim=1, keepdim=True)
    spread = torch.sqrt(torch.nanmean((pooled - centre) ** 2, dim=1, keepdim=True))
    standardised = (values - centre) / spread
    false_mean = torch.nanmean(torch.where(false_negatives, standardised, nan), dim=1)
    true_mean = torch.nanmean(torch.where(true_negatives, standardised, nan), dim=1)
    return false_mean - true_mean


# === Training === #


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of :func:`train_recommender`; one set serves every loss."""

    loss: str                      # one of LOSSES
    dim: int = 16                  # embedding dimension
    n_negatives: int = 32          # uniform negatives per positive
    temperature: float = 0.2       # cosine temperature (InfoNCE, AdvInfoNCE, KL-DRO)
    learning_rate: float = 0.01    # Adam, recommender embeddings
    batch_size: int = 1024         # positives per step
    max_epochs: int = 60           # passes over the training positives
    patience: int = 5              # epochs without a better validation Recall@k before stopping
    top_k: int = 20                # k of the validation Recall@k
    kl_budget: float = 0.1         # eta in nats (AdvInfoNCE, KL-DRO)
    adversary_learning_rate: float = 0.01  # Adam, hardness embeddings (AdvInfoNCE)
    adversary_dim: int = 16        # hardness embedding dimension (AdvInfoNCE)
    negative_weight: float = 1.0   # K on the negative term (AdvInfoNCE, KL-DRO)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("dim", "n_negatives", "batch_size", "max_epochs", "patience", "top_k", "adversary_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        _check_budget(self.kl_budget)


@dataclass
class TrainingResult:
    """A trained recommender with its training record."""

    model: MatrixFactorisation
    best_epoch: int
    validation_recall: list[float] = field(default_factory=list)  # one per epoch
    max_kl: list[float] = field(default_factory=list)  # largest KL of a hardness row per epoch, in nats
    adversary: MatrixFactorisation | None = None  # hardness model at the end of training (AdvInfoNCE)


def _batch_loss(config: TrainingConfig, model: MatrixFactorisation, adversary: MatrixFactorisation | None,
                adversary_optimiser: torch.optim.Optimizer | None, users: torch.Tensor, items: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Recommender loss on one batch and the largest KL of the hardness rows it used (0 without hardness)."""
    positive = model.scores(users, items)
    negative = model.scores(users, negatives)
    if config.loss == "bpr":
        return bpr_loss(positive, negative).mean(), 0.0
    if config.loss == "infonce":
        return infonce_loss(positive, negative).mean(), 0.0
    if config.loss == "kl-dro":
        _, hardness = adv_infonce_worst_case(positive.detach(), negative.detach(), config.kl_budget,
                                             config.negative_weight)
    else:
        logits = project_to_kl_ball(adversary.scores(users, negatives), config.kl_budget)
        hardness = hardness_from_logits(logits)
        adversary_loss = adv_infonce_loss(positive.detach(), negative.detach(), hardness,
                                          config.negative_weight).mean()
        adversarial_step(adversary_loss, adversary_optimiser)
        hardness = hardness.detach()
    loss = adv_infonce_loss(positive, negative, hardness, config.negative_weight).mean()
    return loss, float(kl_from_uniform(hardness.double()).max())


def train_recommender(train: torch.Tensor, valid: torch.Tensor, config: TrainingConfig, *,
                      generator: torch.Generator, device: torch.device | str = "cpu",
                      exclude_from_validation: torch.Tensor | None = None) -> TrainingResult:
    """Train matrix factorisation with one of BPR, InfoNCE, AdvInfoNCE or exact KL-DRO and early stopping.

    Every epoch shuffles the training positives into batches, samples
    ``n_negatives`` uniform negatives per positive, and takes one Adam step
    per batch.  BPR scores by dot product; the contrastive losses by cosine
    over ``temperature``.  Training stops when validation Recall@k has not
    improved for ``patience`` epochs and returns the best epoch's model.

    * ``advinfonce``: the adversary is a second matrix factorisation whose
      dot products are the hardness logits.  Its logits pass through
      :func:`project_to_kl_ball`, so every hardness row used in the loss lies
      in the ball ``KL <= kl_budget``.  On each batch the adversary takes one
      ascent step (:func:`adversarial_step`) on the batch loss with the
      recommender's scores detached, and the recommender takes one descent
      step with the same hardness detached (simultaneous gradient
      descent-ascent).  The authors' code instead runs whole adversarial
      epochs every few epochs and bounds the KL only through their number.
    * ``kl-dro``: the hardness is the exact worst case in the ball,
      :func:`adv_infonce_worst_case`, recomputed for each batch.

    Parameters
    ----------
    train, valid : Tensor, shape (n_users, n_items), bool
        Training and validation positives, on ``device``.
    config : TrainingConfig
    generator : torch.Generator
        Generator on ``device``; it drives initialisation, shuffling and negatives.
    device : torch.device or str
    exclude_from_validation : Tensor, optional
        Further items to rank last during validation (training positives always are).

    Returns
    -------
    TrainingResult
    """
    if train.shape != valid.shape or train.dtype != torch.bool or valid.dtype != torch.bool:
        raise ValueError(f"train and valid must be boolean matrices of one shape, got {tuple(train.shape)} "
                         f"{train.dtype} and {tuple(valid.shape)} {valid.dtype}")
    n_users, n_items = train.shape
    cpu_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator,
                                                                     device=generator.device)))
    similarity = "dot" if config.loss == "bpr" else "cosine"
    model = MatrixFactorisation(n_users, n_items, config.dim, similarity=similarity,
                                temperature=config.temperature, generator=cpu_generator, device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    adversary = adversary_optimiser = None
    if config.loss == "advinfonce":
        adversary = MatrixFactorisation(n_users, n_items, config.adversary_dim, generator=cpu_generator,
                                        device=device)
        adversary_optimiser = torch.optim.Adam(adversary.parameters(), lr=config.adversary_learning_rate)

    exclude = train if exclude_from_validation is None else train | exclude_from_validation
    users_all, items_all = train.nonzero(as_tuple=True)
    n_pairs = users_all.numel()
    result = TrainingResult(model=model, best_epoch=-1)
    best_recall, best_state, stale = -math.inf, None, 0
    for epoch in range(config.max_epochs):
        order = torch.randperm(n_pairs, generator=generator, device=generator.device).to(train.device)
        epoch_max_kl = 0.0
        for start in range(0, n_pairs, config.batch_size):
            batch = order[start:start + config.batch_size]
            users, items = users_all[batch], items_all[batch]
            negatives = sample_negatives(users, train, config.n_negatives, generator)
            loss, kl = _batch_loss(config, model, adversary, adversary_optimiser, users, items, negatives)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_max_kl = max(epoch_max_kl, kl)
        result.max_kl.append(epoch_max_kl)

        with torch.no_grad():
            recall = ranking_metrics(model.all_scores(), valid, exclude & ~valid, config.top_k)["recall"]
        epoch_recall = float(torch.nanmean(recall))
        result.validation_recall.append(epoch_recall)
        if epoch_recall > best_recall:
            best_recall, best_state, stale = epoch_recall, copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    result.adversary = adversary
    return result


# === Data: simulator and splits === #


@dataclass(frozen=True)
class FeedbackSplits:
    """Boolean interaction matrices, shape ``(n_users, n_items)``, for training and two test sets.

    ``test_id`` is drawn like the training data (in distribution) and
    ``test_ood`` under a different, flatter item exposure (out of
    distribution).  The four sets are disjoint.  For simulated data
    ``relevance`` is the true probability that each user likes each item and
    ``liked`` is the drawn outcome.  Both are ``None`` for real data.
    """

    train: torch.Tensor
    valid: torch.Tensor
    test_id: torch.Tensor
    test_ood: torch.Tensor
    relevance: torch.Tensor | None = None
    liked: torch.Tensor | None = None

    @property
    def observed(self) -> torch.Tensor:
        """Union of the training, validation and in-distribution test positives."""
        return self.train | self.valid | self.test_id

    def to(self, device: torch.device | str) -> "FeedbackSplits":
        """Return a copy with every matrix on ``device``."""
        relevance = None if self.relevance is None else self.relevance.to(device)
        liked = None if self.liked is None else self.liked.to(device)
        return FeedbackSplits(self.train.to(device), self.valid.to(device), self.test_id.to(device),
                              self.test_ood.to(device), relevance, liked)


def _split_observed(observed: torch.Tensor, fractions: tuple[float, float, float],
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the True entries of ``observed`` at random into train, valid and test by ``fractions``."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    users, items = observed.nonzero(as_tuple=True)
    order = torch.randperm(users.numel(), generator=generator)
    cut_train = int(round(fractions[0] * users.numel()))
    cut_valid = cut_train + int(round(fractions[1] * users.numel()))
    parts = []
    for chosen in (order[:cut_train], order[cut_train:cut_valid], order[cut_valid:]):
        part = torch.zeros_like(observed)
        part[users[chosen], items[chosen]] = True
        parts.append(part)
    return parts[0], parts[1], parts[2]


def simulate_popularity_shift(n_users: int, n_items: int, *, generator: torch.Generator, dim: int = 8,
                              relevance_scale: float = 2.5, relevance_offset: float = -1.5,
                              exposure_exponent: float = 0.6, exposure_floor: float = 0.01,
                              ood_exposure: float = 0.05,
                              fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> FeedbackSplits:
    """Simulate implicit feedback with known relevance, popularity-biased exposure and a uniform-exposure test.

    The data model of [4]_: a click is ``Y = O * S``, exposure ``O`` times relevance ``S``.

    * Relevance probability ``gamma_ui = sigmoid(relevance_scale * a_u . b_i / sqrt(dim) + relevance_offset)``
      with standard normal ``a_u, b_i``; one draw ``S_ui ~ Bernoulli(gamma_ui)`` is fixed for each pair.
    * Biased exposure: item ``i`` with popularity rank ``r_i`` (a random permutation) is shown to each user
      with probability ``theta_i = clip(r_i ** -exposure_exponent, exposure_floor, 1)``, independently of
      relevance.  The observed positives ``O S`` are split at random into train, valid and ``test_id`` by
      ``fractions``.
    * Uniform exposure: each pair is shown with probability ``ood_exposure``; relevant shown pairs that were
      not observed under the biased exposure form ``test_ood``.  They are exactly the relevant items the
      training data treat as negatives.

    Returns
    -------
    FeedbackSplits
        On the CPU, with ``relevance = gamma`` and ``liked = S``.
    """
    if min(n_users, n_items, dim) < 1:
        raise ValueError(f"n_users, n_items and dim must be positive, got {n_users}, {n_items}, {dim}")
    if not 0 < ood_exposure <= 1 or not 0 < exposure_floor <= 1 or exposure_exponent < 0:
        raise ValueError(f"need 0 < ood_exposure <= 1, 0 < exposure_floor <= 1 and exposure_exponent >= 0, got "
                         f"{ood_exposure!r}, {exposure_floor!r}, {exposure_exponent!r}")
    user_factors = torch.randn(n_users, dim, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(n_items, dim, generator=generator, dtype=torch.float64)
    relevance = torch.sigmoid(relevance_scale * user_factors @ item_factors.T / math.sqrt(dim) + relevance_offset)
    liked = torch.rand(n_users, n_items, generator=generator, dtype=torch.float64) < relevance

    rank = (torch.randperm(n_items, generator=generator) + 1).double()
    exposure = rank.pow(-exposure_exponent).clamp(exposure_floor, 1.0)
    exposed = torch.rand(n_users, n_items, generator=generator, dtype=torch.float64) < exposure.unsqueeze(0)
    observed = exposed & liked
    train, valid, test_id = _split_observed(observed, fractions, generator)

    exposed_uniformly = torch.rand(n_users, n_items, generator=generator, dtype=torch.float64) < ood_exposure
    test_ood = exposed_uniformly & liked & ~observed
    return FeedbackSplits(train, valid, test_id, test_ood, relevance, liked)


def implicit_interactions(users, items, ratings, min_rating: float) -> tuple[torch.Tensor, int, int]:
    """Turn explicit ratings into a boolean user-item matrix of positives (rating >= ``min_rating``).

    User and item ids are re-indexed to ``0..n-1`` over the ids that keep at
    least one positive.  Takes array-likes of equal length.

    Returns
    -------
    positives : Tensor, shape (n_users, n_items), bool
    n_users, n_items : int
    """
    users, items, ratings = (torch.as_tensor(np.asarray(column)) for column in (users, items, ratings))
    if not (users.shape == items.shape == ratings.shape) or users.ndim != 1:
        raise ValueError(f"users, items and ratings must be 1-D of equal length, got {tuple(users.shape)}, "
                         f"{tuple(items.shape)} and {tuple(ratings.shape)}")
    keep = ratings >= min_rating
    if not bool(keep.any()):
        raise ValueError(f"no rating is at least min_rating={min_rating!r}")
    _, user_index = torch.unique(users[keep], return_inverse=True)
    _, item_index = torch.unique(items[keep], return_inverse=True)
    n_users, n_items = int(user_index.max()) + 1, int(item_index.max()) + 1
    positives = torch.zeros(n_users, n_items, dtype=torch.bool)
    positives[user_index, item_index] = True
    return positives, n_users, n_items


def popularity_debiased_split(positives: torch.Tensor, *, generator: torch.Generator, ood_fraction: float = 0.1,
                              fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> FeedbackSplits:
    """Hold out a test set that samples interactions inversely to item popularity, then split the rest at random.

    Each interaction with item ``i`` enters ``test_ood`` with probability
    ``min(1, c / n_i)``, where ``n_i`` counts the item's interactions and
    ``c`` is set by bisection so that the expected share is ``ood_fraction``.
    Below the cap every item then contributes about ``c`` test interactions,
    so the test set's item distribution is much flatter than the training
    set's.  The remaining interactions are split at random into train, valid
    and ``test_id`` by ``fractions``.

    Returns
    -------
    FeedbackSplits
        With ``relevance = None``.
    """
    if positives.dtype != torch.bool or positives.ndim != 2:
        raise ValueError(f"positives must be a boolean matrix, got {positives.dtype} "
                         f"of shape {tuple(positives.shape)}")
    if not 0 < ood_fraction < 1:
        raise ValueError(f"ood_fraction must lie in (0, 1), got {ood_fraction!r}")
    counts = positives.double().sum(dim=0)
    users, items = positives.nonzero(as_tuple=True)
    item_counts = counts[items]
    target = ood_fraction * users.numel()
    low, high = 0.0, float(counts.max())
    for _ in range(100):
        middle = (low + high) / 2
        if float((middle / item_counts).clamp(max=1.0).sum()) < target:
            low = middle
        else:
            high = middle
    probability = (high / item_counts).clamp(max=1.0)
    chosen = torch.rand(users.numel(), generator=generator, dtype=torch.float64) < probability
    test_ood = torch.zeros_like(positives)
    test_ood[users[chosen], items[chosen]] = True
    train, valid, test_id = _split_observed(positives & ~test_ood, fractions, generator)
    return FeedbackSplits(train, valid, test_id, test_ood, None)
