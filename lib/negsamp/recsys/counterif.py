"""Counter-IF's stratified objective, as far as its paper specifies it.

Counter-IF [1]_ imputes exposure for unclicked pairs with a support vector
data description (SVDD): a sphere in a kernel feature space around the
features of clicked pairs.  Clicked pairs are definitely positive (DP).
Unclicked pairs closest to the sphere's centre are labelled highly exposed
(HE), the farthest highly unexposed (HU) and the rest unknown (UN).
A model is then trained on

* ``L1``: cross-entropy pushing DP pairs up and HE pairs down,
* ``L2``: pairwise logistic terms ranking DP above HE, UN above HE and HU above UN,
* an IPM term aligning the representations of confident and unconfident
  strata, and of imputed-unexposed and exposed strata.

The paper leaves several choices open (the features, the kernel width, the
IPM estimator, how pairs are sampled).  The choices made here are marked
``NOTE:`` where they are made, so that results can be read as one reading of
the method and not as the authors' implementation, which was not available.

References
----------
.. [1] C. Zhou, L. Yao, H. Li and M. Gong, "Counterfactual implicit feedback
   modeling", NeurIPS 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .exposure import STRATA
from .mf import MatrixFactorization

DP, HE, UN, HU = range(len(STRATA))

# === Kernel sphere around clicked pairs (SVDD) === #


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, rate: float) -> torch.Tensor:
    """Return ``exp(-rate * ||x_a - y_b||**2)`` for rows ``x`` (n, d) and ``y`` (m, d), shape ``(n, m)``.

    NOTE: the paper names a Gaussian RBF kernel but prints ``exp(-q ||x - x'||)``
    without the square.  This module uses the Gaussian form, because it
    factorises over the user and item halves of a pair's features, which
    makes scoring every pair cheap.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    return torch.exp(-rate * torch.cdist(x, y).pow(2))


def project_capped_simplex(values: torch.Tensor, upper: float, iterations: int = 60) -> torch.Tensor:
    """Euclidean projection of ``values`` (m,) onto ``{w : sum(w) = 1, 0 <= w <= upper}``.

    The projection is ``clamp(values - tau, 0, upper)`` with the shift ``tau``
    found by bisection, because the clamped sum decreases in ``tau``.
    """
    m = values.numel()
    if upper * m < 1:
        raise ValueError(f"upper bound {upper!r} times {m} weights is below 1, so no weights sum to 1; raise it")
    low = float(values.min()) - 1.0
    high = float(values.max())
    for _ in range(iterations):
        tau = 0.5 * (low + high)
        if float((values - tau).clamp(0, upper).sum()) > 1:
            low = tau
        else:
            high = tau
    return (values - 0.5 * (low + high)).clamp(0, upper)


def svdd_dual_weights(kernel: torch.Tensor, upper: float, steps: int = 300) -> torch.Tensor:
    """Solve the SVDD dual for a kernel with unit diagonal: minimise ``w^T K w`` over the capped simplex.

    With ``K(x, x) = 1`` the dual objective ``sum_k w_k K_kk - w^T K w`` (section 3.3 of [1]_)
    differs from ``-w^T K w`` by a constant, so projected gradient descent on
    ``w^T K w`` with step ``1 / (2 lambda_max(K))`` solves it.  The upper
    bound ``upper = C`` limits how much weight one point gets.  With
    ``C = 1 / (nu m)`` at most a share ``nu`` of the ``m`` points falls outside the sphere.

    Parameters
    ----------
    kernel : Tensor
        Positive semi-definite kernel matrix with unit diagonal, shape ``(m, m)``.
    upper : float
        Box constraint ``C``; needs ``C * m >= 1``.
    steps : int
        Projected gradient steps.

    Returns
    -------
    Tensor
        Weights ``w`` of shape ``(m,)``, summing to 1.
    """
    m = kernel.shape[0]
    if kernel.shape != (m, m):
        raise ValueError(f"kernel must be square, got shape {tuple(kernel.shape)}")
    step = 1.0 / (2.0 * float(torch.linalg.eigvalsh(kernel)[-1]))
    weights = project_capped_simplex(torch.full((m,), 1.0 / m, dtype=kernel.dtype, device=kernel.device), upper)
    for _ in range(steps):
        weights = project_capped_simplex(weights - step * 2.0 * (kernel @ weights), upper)
    return weights


@dataclass(frozen=True)
class PairSVDD:
    """A fitted SVDD sphere over pair features ``x_ui = (a_u, b_i)``.

    Attributes
    ----------
    support_users, support_items : Tensor
        User and item index of the clicked pairs the sphere was fitted on, shape ``(m,)``.
    weights : Tensor
        Dual weights, shape ``(m,)``.
    rate : float
        Gaussian kernel rate.
    centre_norm : float
        ``w^T K w``, the squared norm of the centre in feature space.
    """

    support_users: torch.Tensor
    support_items: torch.Tensor
    weights: torch.Tensor
    rate: float
    centre_norm: float


def fit_pair_svdd(user_features: torch.Tensor, item_features: torch.Tensor, clicks: torch.Tensor, *,
                  inside_fraction: float, max_support: int, generator: torch.Generator,
                  steps: int = 300) -> PairSVDD:
    """Fit an SVDD sphere around clicked pairs with features ``x_ui = concat(a_u, b_i)``.

    The box constraint is ``C = 1 / ((1 - inside_fraction) m)``, our reading of
    "enclose a share alpha of the clicked pairs".  The kernel rate is
    ``1 / median squared distance`` between fitted pairs (the median heuristic).

    NOTE: the paper does not say what the features are, nor how ``q``, ``C``
    and alpha relate.  It fits on every clicked pair.  This function fits on
    a uniform random subset of at most ``max_support`` of them, which bounds
    the ``O(m**2)`` kernel matrix.

    Parameters
    ----------
    user_features : Tensor
        ``a_u``, shape ``(users, d_u)``.
    item_features : Tensor
        ``b_i``, shape ``(items, d_i)``.
    clicks : Tensor
        Clicks in {0, 1}, shape ``(users, items)``.
    inside_fraction : float
        Share of clicked pairs meant to lie inside the sphere, in (0, 1).
    max_support : int
        Largest number of clicked pairs to fit on.
    generator : torch.Generator
        Draws the subset.
    steps : int
        Projected gradient steps of :func:`svdd_dual_weights`.
    """
    if not 0 < inside_fraction < 1:
        raise ValueError(f"inside_fraction must lie in (0, 1), got {inside_fraction!r}")
    users, items = torch.nonzero(clicks > 0, as_tuple=True)
    if users.numel() < 2:
        raise ValueError("need at least two clicked pairs to fit a sphere")
    if users.numel() > max_support:
        keep = torch.randperm(users.numel(), generator=generator, device=generator.device)[:max_support]
        keep = keep.to(users.device)
        users, items = users[keep], items[keep]
    m = users.numel()
    squared = (torch.cdist(user_features[users], user_features[users]).pow(2)
               + torch.cdist(item_features[items], item_features[items]).pow(2))
    rate = 1.0 / float(squared[~torch.eye(m, dtype=torch.bool, device=squared.device)].median())
    kernel = torch.exp(-rate * squared)
    weights = svdd_dual_weights(kernel, 1.0 / ((1.0 - inside_fraction) * m), steps)
    return PairSVDD(users, items, weights, rate, float(weights @ kernel @ weights))


def svdd_squared_distance(fit: PairSVDD, user_features: torch.Tensor, item_features: torch.Tensor) -> torch.Tensor:
    """Squared feature-space distance ``d**2`` of every pair to the sphere's centre, shape ``(users, items)``.

    ``d**2(x) = K(x, x) - 2 sum_k w_k K(x_k, x) + w^T K w`` with ``K(x, x) = 1``.
    The Gaussian kernel of a concatenated feature is the product of a user
    kernel and an item kernel, so the middle sum is one matrix product.
    """
    user_kernel = gaussian_kernel(user_features, user_features[fit.support_users], fit.rate)
    item_kernel = gaussian_kernel(item_features, item_features[fit.support_items], fit.rate)
    cross = (user_kernel * fit.weights) @ item_kernel.T
    return 1.0 - 2.0 * cross + fit.centre_norm


# === The stratified objective === #


def counterif_pointwise_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return ``L1 = mean_DP[-log h] + mean_HE[-log(1 - h)]`` with ``h = sigmoid(s)``.

    ``scores`` and ``labels`` (from :func:`~negsamp.recsys.exposure.stratify_unclicked`)
    have shape ``(users, items)``.
    """
    positive = -F.logsigmoid(scores[labels == DP]).mean()
    negative = -F.logsigmoid(-scores[labels == HE]).mean()
    return positive + negative


def sliced_wasserstein_distance(x: torch.Tensor, y: torch.Tensor, n_projections: int,
                                generator: torch.Generator) -> torch.Tensor:
    """Estimate the sliced 1-Wasserstein distance between two equal-size samples ``x`` and ``y`` of shape ``(n, d)``.

    Each random unit direction reduces both samples to one dimension, where
    the 1-Wasserstein distance is the mean absolute gap between sorted values.
    The result averages over ``n_projections`` directions and is differentiable.
    """
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be 2-D of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    directions = torch.randn(x.shape[1], n_projections, generator=generator, device=generator.device)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(x.device, x.dtype)
    projected_x = torch.sort(x @ directions, dim=0).values
    projected_y = torch.sort(y @ directions, dim=0).values
    return (projected_x - projected_y).abs().mean()


def make_counterif_objective(labels: torch.Tensor, *, generator: torch.Generator, lambda_point: float = 1.0,
                             lambda_pair: float = 1.0, lambda_balance: float = 1.0, n_pairs: int = 4096,
                             n_balance: int = 512, n_projections: int = 16
                             ) -> Callable[[MatrixFactorization], torch.Tensor]:
    """Build ``lambda_point L1 + lambda_pair L2 + lambda_balance L_IPM`` as a function of a matrix-factorisation model.

    * ``L1``: :func:`counterif_pointwise_loss`.
    * ``L2``: for each ordered stratum pair (DP over HE, UN over HE, HU over UN),
      the mean of ``-log sigmoid(h_a - h_b)`` over ``n_pairs`` pairs drawn
      uniformly from the two strata, where ``h = sigmoid(s)`` is the predicted
      probability, as printed.  The two members of a pair may belong to
      different users, as in the printed sum over all cross-stratum pairs.
    * ``L_IPM``: sliced 1-Wasserstein distances between the representations
      ``p_u * q_i`` of ``n_balance`` pairs with ``R = 0`` (UN) and ``R = 1``
      (DP, HE, HU), plus those of ``R = 1, O = 0`` (HU) and ``R = 1, O = 1`` (DP, HE).

    NOTE: the paper prints the pair term without the minus sign.  It names no
    IPM estimator, pair-sampling scheme or sample size.  This reading uses the
    sign that makes the term a ranking loss, and a sliced Wasserstein estimate
    of the "Wass" term.  The paper's theorem bounds the representation
    model's error and does not cover these choices.
    """
    flat = labels.reshape(-1)
    n_items = labels.shape[1]
    members = {stratum: torch.nonzero(flat == stratum).squeeze(1) for stratum in range(len(STRATA))}
    empty = [STRATA[stratum] for stratum, index in members.items() if index.numel() == 0]
    if empty:
        raise ValueError(f"strata {', '.join(empty)} are empty; change the stratum fractions")
    confident = torch.cat([members[DP], members[HE], members[HU]])
    exposed = torch.cat([members[DP], members[HE]])

    def draw(index: torch.Tensor, n: int) -> torch.Tensor:
        positions = torch.randint(index.numel(), (n,), generator=generator, device=generator.device)
        return index[positions.to(index.device)]

    def representation(model: MatrixFactorization, index: torch.Tensor) -> torch.Tensor:
        return model.pair_representation(index // n_items, index % n_items)

    def objective(model: MatrixFactorization) -> torch.Tensor:
        scores = model.score_matrix()
        probabilities = torch.sigmoid(scores).reshape(-1)
        pair_loss = scores.new_zeros(())
        for higher, lower in ((DP, HE), (UN, HE), (HU, UN)):
            gap = probabilities[draw(members[higher], n_pairs)] - probabilities[draw(members[lower], n_pairs)]
            pair_loss = pair_loss + (-F.logsigmoid(gap)).mean()
        balance = (sliced_wasserstein_distance(representation(model, draw(members[UN], n_balance)),
                                               representation(model, draw(confident, n_balance)),
                                               n_projections, generator)
                   + sliced_wasserstein_distance(representation(model, draw(members[HU], n_balance)),
                                                 representation(model, draw(exposed, n_balance)),
                                                 n_projections, generator))
        return (lambda_point * counterif_pointwise_loss(scores, labels) + lambda_pair * pair_loss
                + lambda_balance * balance)

    return objective
