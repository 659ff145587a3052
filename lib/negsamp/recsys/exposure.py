"""Exposure, relevance and clicks in implicit feedback, with the losses that correct for exposure.

A user clicks an item only when the item was shown (exposure ``O``) and is
relevant to the user (``S``): ``Y = O * S``.  For every user-item pair the
two are independent Bernoulli variables with probabilities ``theta``
(the exposure propensity) and ``gamma`` (the relevance probability), so
``P(Y = 1) = gamma * theta``.  An unclicked pair is therefore either
irrelevant or never shown, and popular items are shown more often.

This module contains

* a simulator of that world with a missing-at-random (MAR) test set,
* pointwise losses: the ideal loss (needs ``gamma``), the naive loss that
  treats every unclick as irrelevant, and the inverse-propensity (IPS) loss
  of Rel-MF [1]_ with optional clipping,
* pairwise losses: BPR and the unbiased pairwise loss UBPR [2]_,
* propensity estimators from click counts,
* the stratification of unclicked pairs by an exposure score used by
  Counter-IF [3]_, and
* closed forms (click probability, IPS weight variance, relevance posterior
  of an unclicked pair) that the tests and the chapter check against SymPy.

Tensors of per-pair quantities have shape ``(users, items)`` unless stated
otherwise; every function works on the device of its inputs.

References
----------
.. [1] Y. Saito, S. Yaginuma, Y. Nishino, H. Sakata and K. Nakata, "Unbiased
   recommender learning from missing-not-at-random implicit feedback",
   WSDM 2020.
.. [2] Y. Saito, "Unbiased pairwise learning from biased implicit feedback",
   ICTIR 2020.
.. [3] C. Zhou, L. Yao, H. Li and M. Gong, "Counterfactual implicit feedback
   modeling", NeurIPS 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..metrics import ndcg_at_k

LOSS_KINDS = ("log", "squared")
STRATA = ("DP", "HE", "UN", "HU")
"""Stratum names, indexed by the labels of :func:`stratify_unclicked`."""

# === Validation helpers === #


def _check_probability(values: torch.Tensor, name: str, *, allow_zero: bool = True) -> None:
    low_ok = bool((values >= 0).all()) if allow_zero else bool((values > 0).all())
    if not (low_ok and bool((values <= 1).all())):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got values in "
                         f"[{float(values.min()):.4g}, {float(values.max()):.4g}]")


def _check_clip(clip: float | None) -> None:
    if clip is not None and not (isinstance(clip, (int, float)) and 0 < clip <= 1):
        raise ValueError(f"clip must be None or a number in (0, 1], got {clip!r}")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"unknown reduction {reduction!r}; choose 'mean', 'sum' or 'none'")


# === The simulated world === #


def rank_propensity(popularity_rank: torch.Tensor, n_items: int, min_propensity: float) -> torch.Tensor:
    """Return the exposure propensity ``theta = min_propensity ** ((rank - 1) / (n_items - 1))`` of ranked items.

    The log-propensity falls linearly with the popularity rank: the most
    popular item (rank 1) is always shown, ``theta = 1``, and the least
    popular one (rank ``n_items``) is shown with probability ``min_propensity``.
    Half of the items have ``theta`` below ``sqrt(min_propensity)``, so a small
    ``min_propensity`` gives many rarely shown items and large IPS weights.

    Parameters
    ----------
    popularity_rank : Tensor
        Ranks in ``1 .. n_items``, any shape.
    n_items : int
        Number of items, at least 2.
    min_propensity : float
        Propensity of the least popular item, in (0, 1].
    """
    if n_items < 2:
        raise ValueError(f"n_items must be at least 2, got {n_items}")
    if not 0 < min_propensity <= 1:
        raise ValueError(f"min_propensity must lie in (0, 1], got {min_propensity!r}")
    return min_propensity ** ((popularity_rank.double() - 1) / (n_items - 1))


@dataclass(frozen=True)
class ExposureWorld:
    """Relevance and exposure probabilities of every user-item pair.

    Attributes
    ----------
    relevance : Tensor
        ``gamma``, shape ``(users, items)``: probability that the item is relevant to the user.
    propensity : Tensor
        ``theta``, shape ``(users, items)``: probability that the user is shown the item.
        In :func:`simulate_exposure_world` it depends on the item only.
    popularity_rank : Tensor
        Shape ``(items,)``: exposure popularity rank of each item, 1 for the most exposed.
    """

    relevance: torch.Tensor
    propensity: torch.Tensor
    popularity_rank: torch.Tensor

    @property
    def n_users(self) -> int:
        """Number of users."""
        return self.relevance.shape[0]

    @property
    def n_items(self) -> int:
        """Number of items."""
        return self.relevance.shape[1]


def simulate_exposure_world(n_users: int, n_items: int, *, generator: torch.Generator, dim: int = 8,
                            relevance_scale: float = 2.0, relevance_offset: float = -1.5,
                            item_relevance_spread: float = 0.0, min_propensity: float = 0.1,
                            device: torch.device | str | None = None) -> ExposureWorld:
    """Draw a world of relevance probabilities and popularity-driven exposure propensities.

    Relevance is a logistic low-rank model,
    ``gamma_ui = sigmoid(relevance_scale * a_u . b_i / sqrt(dim) + c_i + relevance_offset)``,
    with ``a_u, b_i ~ N(0, I_dim)`` and an item effect ``c_i ~ N(0, item_relevance_spread**2)``.
    Exposure depends on the item's popularity rank only (:func:`rank_propensity`),
    and the ranks are a random permutation, so relevance and exposure are independent.

    Parameters
    ----------
    n_users, n_items : int
        Size of the world.
    generator : torch.Generator
        Source of randomness; draws are made on the CPU and moved to ``device``.
    dim : int
        Rank of the relevance model.
    relevance_scale, relevance_offset : float
        Spread and level of the relevance logits.
    item_relevance_spread : float
        Standard deviation of the item effect ``c_i``; larger values make some
        items relevant to most users and others to few.
    min_propensity : float
        Exposure propensity of the least popular item.
    device : torch.device or str, optional
        Device of the returned tensors (CPU by default).

    Returns
    -------
    ExposureWorld
    """
    if n_users < 1 or n_items < 2 or dim < 1:
        raise ValueError(f"need n_users >= 1, n_items >= 2 and dim >= 1, got {n_users}, {n_items}, {dim}")
    if item_relevance_spread < 0:
        raise ValueError(f"item_relevance_spread must be >= 0, got {item_relevance_spread!r}")
    user_factors = torch.randn(n_users, dim, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(n_items, dim, generator=generator, dtype=torch.float64)
    item_effect = item_relevance_spread * torch.randn(n_items, generator=generator, dtype=torch.float64)
    logits = relevance_scale * user_factors @ item_factors.T / math.sqrt(dim) + item_effect + relevance_offset
    ranks = torch.randperm(n_items, generator=generator) + 1
    item_propensity = rank_propensity(ranks, n_items, min_propensity)
    propensity = item_propensity.expand(n_users, n_items).clone()
    return ExposureWorld(torch.sigmoid(logits).to(device), propensity.to(device), ranks.to(device))


def sample_feedback(relevance: torch.Tensor, propensity: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw exposure ``O ~ Bernoulli(theta)``, relevance ``S ~ Bernoulli(gamma)`` and clicks ``Y = O * S``.

    ``O`` and ``S`` are independent for every pair.  The draws use uniform
    numbers from ``generator`` on its own device and are moved to the device of
    ``relevance``.  Returns ``(exposure, relevant, clicks)`` as float tensors
    of zeros and ones, shaped like ``relevance``.
    """
    if relevance.shape != propensity.shape:
        raise ValueError(f"relevance and propensity must have one shape, got {tuple(relevance.shape)} "
                         f"and {tuple(propensity.shape)}")
    _check_probability(relevance, "relevance")
    _check_probability(propensity, "propensity")
    device = generator.device
    uniform_exposure = torch.rand(relevance.shape, generator=generator, device=device, dtype=torch.float64)
    uniform_relevance = torch.rand(relevance.shape, generator=generator, device=device, dtype=torch.float64)
    exposure = (uniform_exposure.to(relevance.device) < propensity).to(relevance.dtype)
    relevant = (uniform_relevance.to(relevance.device) < relevance).to(relevance.dtype)
    return exposure, relevant, exposure * relevant


def sample_mar_test_items(n_users: int, n_items: int, n_per_user: int, generator: torch.Generator) -> torch.Tensor:
    """Draw a missing-at-random test set: ``n_per_user`` distinct uniformly random items per user.

    This mimics the randomised test sets of Coat and Yahoo! R3, where each user
    rates items chosen at random instead of items the system exposed.
    Returns item indices of shape ``(n_users, n_per_user)`` on the generator's device.
    """
    if not 1 <= n_per_user <= n_items:
        raise ValueError(f"n_per_user must lie in [1, {n_items}], got {n_per_user}")
    keys = torch.rand(n_users, n_items, generator=generator, device=generator.device)
    return torch.argsort(keys, dim=1)[:, :n_per_user]


def mar_test_ndcg(scores: torch.Tensor, relevance: torch.Tensor, test_items: torch.Tensor, k: int) -> torch.Tensor:
    """Compute per-user NDCG@k on a MAR test set, with the relevance probability ``gamma`` as graded gain.

    Each user's test items are ranked among themselves only, as in the Coat and
    Yahoo! R3 protocols.  ``scores`` and ``relevance`` have shape
    ``(users, items)``, ``test_items`` shape ``(users, n_per_user)``.
    """
    test_items = test_items.to(scores.device)
    return ndcg_at_k(scores.gather(1, test_items), relevance.to(scores.device).gather(1, test_items), k)


# === Closed forms === #


def click_probability(relevance: torch.Tensor, propensity: torch.Tensor) -> torch.Tensor:
    """Return ``P(Y = 1) = gamma * theta`` for independent exposure and relevance."""
    return relevance * propensity


def ips_weight_variance(relevance: torch.Tensor, propensity: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """Return the variance ``gamma theta (1 - gamma theta) / max(theta, M)**2`` of the IPS weight ``Y / max(theta, M)``.

    Without clipping it simplifies to ``gamma (1 - gamma theta) / theta``,
    which grows like ``1 / theta`` for rarely exposed items.
    """
    _check_clip(clip)
    p = click_probability(relevance, propensity)
    return p * (1 - p) / clipped_propensity(propensity, clip) ** 2


def unclicked_relevance_posterior(relevance: torch.Tensor, propensity: torch.Tensor) -> torch.Tensor:
    """Return ``P(S = 1 | Y = 0) = gamma (1 - theta) / (1 - gamma theta)``.

    It decreases in ``theta`` whenever ``0 < gamma < 1``: an unclicked pair
    that was very likely shown is likely irrelevant, which is why Counter-IF
    expects highly exposed unclicked pairs to be less relevant than the others.
    """
    return relevance * (1 - propensity) / (1 - relevance * propensity)


# === Pointwise losses === #


def pointwise_losses(scores: torch.Tensor, kind: str = "log") -> tuple[torch.Tensor, torch.Tensor]:
    """Return the per-pair losses ``(delta_1, delta_0)`` of a score if the pair is relevant or irrelevant.

    ``kind="log"`` gives the cross-entropy ``-log sigmoid(s)`` and ``-log sigmoid(-s)``;
    ``kind="squared"`` gives ``(1 - sigmoid(s))**2`` and ``sigmoid(s)**2``,
    the bounded losses of the Rel-MF authors' public code.
    """
    if kind == "log":
        return -F.logsigmoid(scores), -F.logsigmoid(-scores)
    if kind == "squared":
        probability = torch.sigmoid(scores)
        return (1 - probability) ** 2, probability**2
    raise ValueError(f"unknown loss kind {kind!r}; choose one of {', '.join(LOSS_KINDS)}")


def weighted_pointwise_loss(scores: torch.Tensor, weights: torch.Tensor, kind: str = "log",
                            reduction: str = "mean") -> torch.Tensor:
    """Compute the pointwise loss ``w delta_1 + (1 - w) delta_0`` for a weight ``w`` on the relevant branch.

    The ideal, naive and IPS losses are this loss with ``w = gamma``, ``Y``
    and ``Y / theta``.  Training loops can precompute ``w`` once and call this.
    For ``kind="squared"`` the loss is evaluated as ``(sigmoid(s) - w)**2 + w (1 - w)``,
    which equals the definition and takes fewer operations.
    """
    if kind == "squared":
        probability = torch.sigmoid(scores)
        return _reduce((probability - weights) ** 2 + weights * (1 - weights), reduction)
    loss_relevant, loss_irrelevant = pointwise_losses(scores, kind)
    return _reduce(weights * loss_relevant + (1 - weights) * loss_irrelevant, reduction)


def ideal_pointwise_loss(scores: torch.Tensor, relevance: torch.Tensor, kind: str = "log",
                         reduction: str = "mean") -> torch.Tensor:
    """Compute the ideal loss ``mean[gamma delta_1 + (1 - gamma) delta_0]``, which needs the true relevance."""
    return weighted_pointwise_loss(scores, relevance, kind, reduction)


def naive_pointwise_loss(scores: torch.Tensor, clicks: torch.Tensor, kind: str = "log",
                         reduction: str = "mean") -> torch.Tensor:
    """Compute the naive loss ``mean[Y delta_1 + (1 - Y) delta_0]``, which counts every unclicked pair as irrelevant."""
    return weighted_pointwise_loss(scores, clicks, kind, reduction)


def clipped_propensity(propensity: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Return ``max(theta, M)`` for ``clip = M``, or ``theta`` unchanged when ``clip`` is None.

    Clipping from below bounds the IPS weight by ``1 / M`` at the price of a
    bias ``gamma (theta / M - 1)`` in the weight's mean wherever ``theta < M``.
    """
    _check_clip(clip)
    if clip is None:
        return propensity
    return propensity.clamp(min=clip)


def ips_weights(clicks: torch.Tensor, propensity: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """Return the inverse-propensity weights ``Y / max(theta, M)``, whose mean is ``gamma`` when ``clip`` is None.

    Raises ``ValueError`` if a propensity is not in ``(0, 1]`` after clipping.
    """
    clipped = clipped_propensity(propensity, clip)
    _check_probability(clipped, "propensity (after clipping)", allow_zero=False)
    return clicks / clipped


def ips_pointwise_loss(scores: torch.Tensor, clicks: torch.Tensor, propensity: torch.Tensor, kind: str = "log",
                       clip: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """Compute Rel-MF's IPS loss ``mean[w delta_1 + (1 - w) delta_0]`` with ``w = Y / max(theta, M)``.

    With the true propensities and no clipping its expectation over exposure
    and relevance equals :func:`ideal_pointwise_loss` for any scores.  With
    ``kind="log"`` it is unbounded below for a clicked pair with ``theta < 1``,
    because the weight ``1 - 1/theta`` of ``delta_0`` is negative.

    Parameters
    ----------
    scores : Tensor
        Logits ``s``, shape ``(users, items)`` or ``(n,)``.
    clicks : Tensor
        Clicks ``Y`` in {0, 1}, shaped like ``scores``.
    propensity : Tensor
        ``theta``, broadcastable to ``scores``.
    kind : {'log', 'squared'}
        Per-pair loss, see :func:`pointwise_losses`.
    clip : float, optional
        Lower clip ``M`` of the propensity.
    reduction : {'mean', 'sum', 'none'}

    References
    ----------
    Saito et al. (2020), [1]_.
    """
    return weighted_pointwise_loss(scores, ips_weights(clicks, propensity, clip), kind, reduction)


# === Pairwise losses === #


def sample_click_pairs(clicks: torch.Tensor, n_negatives: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair every click ``(u, i)`` with ``n_negatives`` items ``j`` drawn uniformly from all items.

    The second items are not filtered: they may be clicked, which is what
    the UBPR weight needs (its expectation sums over every ``j``).
    Returns ``(users, first_items, second_items)``, each of shape
    ``(clicks.sum() * n_negatives,)`` on the device of ``clicks``.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be at least 1, got {n_negatives}")
    users, items = torch.nonzero(clicks > 0, as_tuple=True)
    users = users.repeat_interleave(n_negatives)
    items = items.repeat_interleave(n_negatives)
    second = torch.randint(clicks.shape[1], (users.numel(),), generator=generator, device=generator.device)
    return users, items, second.to(clicks.device)


def bpr_pair_weights(clicks_first: torch.Tensor, clicks_second: torch.Tensor) -> torch.Tensor:
    """Return BPR's pair weight ``Y_ui (1 - Y_uj)``, which is 1 for a clicked first and an unclicked second item."""
    return clicks_first * (1 - clicks_second)


def ubpr_pair_weights(clicks_first: torch.Tensor, clicks_second: torch.Tensor, propensity_first: torch.Tensor,
                      propensity_second: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """Return UBPR's pair weight ``(Y_ui / theta_ui) (1 - Y_uj / theta_uj)``.

    With independent pairs and no clipping its mean is ``gamma_ui (1 - gamma_uj)``,
    the weight of the ideal pairwise loss.  It is negative when both items
    were clicked and ``theta_uj < 1``.

    References
    ----------
    Saito (2020), [2]_.
    """
    first = ips_weights(clicks_first, propensity_first, clip)
    second = ips_weights(clicks_second, propensity_second, clip)
    return first * (1 - second)


def pairwise_logistic_loss(scores_first: torch.Tensor, scores_second: torch.Tensor, weights: torch.Tensor,
                           floor: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """Compute the weighted pairwise loss ``mean[w * (-log sigmoid(s_i - s_j))]``.

    ``floor = beta`` clips every weighted term from below at ``-beta``.  This is
    the non-negative variant of UBPR, which keeps negative weights from driving
    the loss to minus infinity.  ``floor=None`` leaves the terms unclipped.
    """
    terms = -weights * F.logsigmoid(scores_first - scores_second)
    if floor is not None:
        if floor < 0:
            raise ValueError(f"floor must be None or >= 0, got {floor!r}")
        terms = terms.clamp(min=-floor)
    return _reduce(terms, reduction)


# === Propensity estimators === #


def popularity_propensity(clicks: torch.Tensor, power: float = 0.5, normaliser: str = "max") -> torch.Tensor:
    """Estimate item propensities from click counts, ``(n_i / N) ** power``.

    ``N`` is the largest item click count (``normaliser="max"``, the Yahoo! R3
    recipe of the Rel-MF and UBPR code) or the number of users
    (``"users"``, their Coat recipe).  Click counts estimate ``theta_i`` times
    the item's summed relevance, not ``theta_i`` alone, so an item that many
    users find relevant looks more exposed than it is.  Items without clicks
    get 0, so callers must clip before dividing.

    Returns
    -------
    Tensor
        Shape ``(items,)``.
    """
    if power <= 0:
        raise ValueError(f"power must be positive, got {power!r}")
    counts = clicks.sum(dim=0).double()
    if normaliser == "max":
        total = counts.max()
    elif normaliser == "users":
        total = torch.tensor(float(clicks.shape[0]), dtype=torch.float64, device=clicks.device)
    else:
        raise ValueError(f"unknown normaliser {normaliser!r}; choose 'max' or 'users'")
    if total <= 0:
        raise ValueError("clicks contain no click, so no propensity can be estimated")
    return (counts / total) ** power


# === Strata of unclicked pairs === #


def stratify_unclicked(exposure_score: torch.Tensor, clicks: torch.Tensor, he_fraction: float,
                       hu_fraction: float) -> torch.Tensor:
    """Split pairs into Counter-IF's strata by an exposure score.

    Clicked pairs are definitely positive (DP, label 0).  Among unclicked
    pairs, the ``he_fraction`` share with the highest exposure score is highly
    exposed (HE, label 1), the ``hu_fraction`` share with the lowest score is
    highly unexposed (HU, label 3) and the rest is unknown (UN, label 2).
    Quantiles are taken over all unclicked pairs at once, and ties are broken by
    position.  Counter-IF's score is minus the squared distance to a
    support-vector sphere around clicked pairs; any score that grows with the
    exposure probability fits here.

    Parameters
    ----------
    exposure_score : Tensor
        Shape ``(users, items)``; larger means more likely exposed.
    clicks : Tensor
        Clicks in {0, 1}, same shape.
    he_fraction, hu_fraction : float
        Shares of unclicked pairs labelled HE and HU, each in (0, 1), summing to less than 1.

    Returns
    -------
    Tensor
        int64 labels indexing :data:`STRATA`, shape ``(users, items)``.

    References
    ----------
    Zhou et al. (2025), [3]_, section 3.3.
    """
    if exposure_score.shape != clicks.shape:
        raise ValueError(f"exposure_score and clicks must have one shape, got {tuple(exposure_score.shape)} "
                         f"and {tuple(clicks.shape)}")
    if not (0 < he_fraction < 1 and 0 < hu_fraction < 1 and he_fraction + hu_fraction < 1):
        raise ValueError(f"he_fraction and hu_fraction must lie in (0, 1) with a sum below 1, "
                         f"got {he_fraction!r} and {hu_fraction!r}")
    labels = torch.zeros(clicks.shape, dtype=torch.long, device=clicks.device)
    unclicked = clicks.reshape(-1) == 0
    scores = exposure_score.reshape(-1)[unclicked]
    n_unclicked = scores.numel()
    if n_unclicked == 0:
        return labels
    order = torch.argsort(scores, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_unclicked, device=order.device)
    n_he = int(round(he_fraction * n_unclicked))
    n_hu = int(round(hu_fraction * n_unclicked))
    stratum = torch.full_like(rank, 2)
    stratum[rank >= n_unclicked - n_he] = 1
    stratum[rank < n_hu] = 3
    flat = labels.reshape(-1)
    flat[unclicked] = stratum
    return flat.reshape(clicks.shape)


def stratum_summary(values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the mean, the standard error of the mean and the size of ``values`` in each stratum.

    Returns three float64 tensors of shape ``(4,)`` indexed like :data:`STRATA`;
    an empty stratum gets NaN mean and standard error.
    """
    if values.shape != labels.shape:
        raise ValueError(f"values and labels must have one shape, got {tuple(values.shape)} and {tuple(labels.shape)}")
    flat_values = values.reshape(-1).double()
    flat_labels = labels.reshape(-1)
    counts = torch.bincount(flat_labels, minlength=len(STRATA)).double()
    sums = torch.bincount(flat_labels, weights=flat_values, minlength=len(STRATA))
    squares = torch.bincount(flat_labels, weights=flat_values**2, minlength=len(STRATA))
    means = sums / counts
    variances = (squares - counts * means**2) / (counts - 1)
    stderrs = torch.sqrt(variances.clamp(min=0) / counts)
    return means, stderrs, counts
