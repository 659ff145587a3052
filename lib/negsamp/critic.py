"""The optimal critic shared by NCE, negative sampling and InfoNCE.

Scores are log-odds: a critic ``s(x)`` is trained to tell data ``x ~ p`` from
``k`` noise samples ``y ~ q``.  The pointwise minimiser of the logistic loss
is ``s*(x) = log p(x) - log(k q(x))`` and the InfoNCE-optimal critic is the log
density ratio ``log p(y | x) - log p(y)`` up to a function of ``x``.

References
----------
.. [1] M. Gutmann and A. Hyvärinen, "Noise-contrastive estimation: A new
   estimation principle for unnormalized statistical models", AISTATS 2010.
.. [2] O. Levy and Y. Goldberg, "Neural word embedding as implicit matrix
   factorization", NeurIPS 2014.
.. [3] A. van den Oord, Y. Li and O. Vinyals, "Representation learning with
   contrastive predictive coding", arXiv:1807.03748, 2018.
.. [4] B. Poole, S. Ozair, A. van den Oord, A. Alemi and G. Tucker, "On
   variational bounds of mutual information", ICML 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# === Pointwise objective and its minimiser === #


def _check_k(k: float) -> None:
    if not (isinstance(k, (int, float)) and k > 0 and math.isfinite(k)):
        raise ValueError(f"number of noise samples k must be a positive finite number, got {k!r}")


def nce_pointwise_loss(score: torch.Tensor, p: torch.Tensor, q: torch.Tensor, k: float) -> torch.Tensor:
    """Expected logistic loss at one point ``x`` as a function of its score.

    ``ell(s) = -p(x) log sigma(s) - k q(x) log sigma(-s)``: the data term has
    weight ``p(x)`` and the ``k`` noise samples contribute ``k q(x)``.
    Integrating over ``x`` gives the population NCE objective of [1]_.

    Parameters
    ----------
    score : Tensor
        Score ``s(x)``, any shape.
    p, q : Tensor
        Data and noise densities at ``x``, broadcastable to ``score``; non-negative.
    k : float
        Noise samples per data sample.
    """
    _check_k(k)
    return -p * F.logsigmoid(score) - k * q * F.logsigmoid(-score)


def optimal_nce_critic(log_p: torch.Tensor, log_q: torch.Tensor, k: float) -> torch.Tensor:
    """Return ``s*(x) = log p(x) - log q(x) - log k``, the minimiser of :func:`nce_pointwise_loss`.

    References
    ----------
    Gutmann and Hyvärinen (2010), [1]_; Levy and Goldberg (2014), [2]_, for
    the shifted PMI form of skip-gram with negative sampling.
    """
    _check_k(k)
    return log_p - log_q - math.log(k)


def nce_loss(scores_data: torch.Tensor, scores_noise: torch.Tensor, k: float,
             weights_data: torch.Tensor | None = None, weights_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled NCE objective ``mean_p[-log sigma(s)] + k mean_q[-log sigma(-s)]``.

    With ``n`` data scores and ``k n`` noise scores this equals the sum of all
    logistic losses divided by ``n``.  Optional non-negative weights turn each
    mean into a weighted mean (used for quadrature on a grid).
    """
    _check_k(k)
    data_terms = -F.logsigmoid(scores_data)
    noise_terms = -F.logsigmoid(-scores_noise)
    if weights_data is None:
        data_mean = data_terms.mean()
    else:
        data_mean = (weights_data * data_terms).sum() / weights_data.sum()
    if weights_noise is None:
        noise_mean = noise_terms.mean()
    else:
        noise_mean = (weights_noise * noise_terms).sum() / weights_noise.sum()
    return data_mean + k * noise_mean


# === A critic that is linear in fixed features === #


def rbf_features(x: torch.Tensor, centres: torch.Tensor, width: float) -> torch.Tensor:
    """Features ``[1, x, x**2, exp(-(x - c_j)**2 / (2 width**2))]`` of a 1-D input.

    Returns a tensor of shape ``(len(x), 3 + len(centres))``.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width!r}")
    x = x.reshape(-1, 1)
    bumps = torch.exp(-((x - centres.reshape(1, -1)) ** 2) / (2 * width**2))
    return torch.cat([torch.ones_like(x), x, x**2, bumps], dim=1)


def _weighted_mean_matrix(weights: torch.Tensor | None, n: int, dtype, device) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    return weights / weights.sum()


def nce_gradient_and_hessian(theta: torch.Tensor, phi_data: torch.Tensor, phi_noise: torch.Tensor, k: float,
                             weights_data: torch.Tensor | None = None, weights_noise: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of :func:`nce_loss` for the linear critic ``s = phi @ theta``.

    With ``a = sigma(-s)`` on data and ``b = sigma(s)`` on noise, the gradient
    is ``-E_p[a phi] + k E_q[b phi]`` and the Hessian
    ``E_p[a (1 - a) phi phi^T] + k E_q[b (1 - b) phi phi^T]``, where each
    expectation is the (weighted) sample mean.
    """
    _check_k(k)
    w_data = _weighted_mean_matrix(weights_data, phi_data.shape[0], phi_data.dtype, phi_data.device)
    w_noise = _weighted_mean_matrix(weights_noise, phi_noise.shape[0], phi_noise.dtype, phi_noise.device)
    s_data = phi_data @ theta
    s_noise = phi_noise @ theta
    a = torch.sigmoid(-s_data)
    b = torch.sigmoid(s_noise)
    gradient = -(w_data * a) @ phi_data + k * (w_noise * b) @ phi_noise
    hessian = (phi_data.T * (w_data * a * (1 - a))) @ phi_data + k * (phi_noise.T * (w_noise * b * (1 - b))) @ phi_noise
    return gradient, hessian


def fit_linear_nce_critic(phi_data: torch.Tensor, phi_noise: torch.Tensor, k: float,
                          weights_data: torch.Tensor | None = None, weights_noise: torch.Tensor | None = None,
                          ridge: float = 1e-9, max_steps: int = 100, tol: float = 1e-12) -> torch.Tensor:
    """Minimise :func:`nce_loss` over a critic ``s(x) = phi(x) @ theta`` by Newton's method.

    The objective is convex in ``theta``; each step solves with the
    closed-form gradient and Hessian of :func:`nce_gradient_and_hessian`
    and halves the step until the loss decreases.  A tiny ridge keeps the
    Hessian invertible when features are nearly collinear.

    Returns
    -------
    Tensor
        The fitted ``theta`` of shape ``(phi_data.shape[1],)``.
    """
    dim = phi_data.shape[1]
    if phi_noise.shape[1] != dim:
        raise ValueError(f"feature dimensions differ: {dim} for data, {phi_noise.shape[1]} for noise")
    theta = torch.zeros(dim, dtype=phi_data.dtype, device=phi_data.device)
    identity = torch.eye(dim, dtype=phi_data.dtype, device=phi_data.device)

    def objective(parameters: torch.Tensor) -> torch.Tensor:
        return (nce_loss(phi_data @ parameters, phi_noise @ parameters, k, weights_data, weights_noise)
                + 0.5 * ridge * parameters.pow(2).sum())

    loss = objective(theta)
    for _ in range(max_steps):
        gradient, hessian = nce_gradient_and_hessian(theta, phi_data, phi_noise, k, weights_data, weights_noise)
        step = torch.linalg.solve(hessian + ridge * identity, gradient + ridge * theta)
        scale = 1.0
        while True:
            candidate = theta - scale * step
            candidate_loss = objective(candidate)
            if candidate_loss <= loss or scale < 1e-6:
                break
            scale /= 2
        decrease = float(loss - candidate_loss)
        theta, loss = candidate, candidate_loss
        if decrease < tol:
            break
    return theta


def nce_sandwich_covariance(theta: torch.Tensor, phi_data: torch.Tensor, phi_noise: torch.Tensor,
                            k: float) -> torch.Tensor:
    """Asymptotic covariance of the fitted ``theta`` from :func:`fit_linear_nce_critic`.

    With ``n`` data and ``m = k n`` noise samples, ``Cov = H^-1 V H^-1`` where
    ``H`` is the Hessian of the objective and ``V = Var_p(g_1)/n + k**2 Var_q(g_0)/m``
    the variance of its gradient, ``g_1 = -sigma(-s) phi`` for data and
    ``g_0 = sigma(s) phi`` for noise points.  This sandwich form stays valid
    when the feature family does not contain the optimal critic.
    """
    n, m = phi_data.shape[0], phi_noise.shape[0]
    s_data = phi_data @ theta
    s_noise = phi_noise @ theta
    curvature_data = torch.sigmoid(s_data) * torch.sigmoid(-s_data)
    curvature_noise = torch.sigmoid(s_noise) * torch.sigmoid(-s_noise)
    hessian = (phi_data.T * curvature_data) @ phi_data / n + k * (phi_noise.T * curvature_noise) @ phi_noise / m
    g_data = -torch.sigmoid(-s_data).unsqueeze(1) * phi_data
    g_noise = torch.sigmoid(s_noise).unsqueeze(1) * phi_noise
    variance = torch.cov(g_data.T) / n + k**2 * torch.cov(g_noise.T) / m
    inverse = torch.linalg.inv(hessian)
    return inverse @ variance @ inverse


# === Distributions with known densities === #


@dataclass(frozen=True)
class GaussianMixture1D:
    """A one-dimensional Gaussian mixture with known density."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self):
        if not (len(self.weights) == len(self.means) == len(self.stds) >= 1):
            raise ValueError("weights, means and stds must have the same positive length")
        if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights}")
        if any(s <= 0 for s in self.stds):
            raise ValueError(f"stds must be positive, got {self.stds}")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density at ``x``."""
        x = x.unsqueeze(-1)
        weights = torch.tensor(self.weights, dtype=x.dtype, device=x.device)
        means = torch.tensor(self.means, dtype=x.dtype, device=x.device)
        stds = torch.tensor(self.stds, dtype=x.dtype, device=x.device)
        log_components = (-0.5 * ((x - means) / stds) ** 2 - torch.log(stds) - 0.5 * math.log(2 * math.pi))
        return torch.logsumexp(torch.log(weights) + log_components, dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw ``n`` samples."""
        weights = torch.tensor(self.weights, dtype=dtype)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        means = torch.tensor(self.means, dtype=dtype)[component]
        stds = torch.tensor(self.stds, dtype=dtype)[component]
        return (means + stds * torch.randn(n, dtype=dtype, generator=generator)).to(device)


# === InfoNCE === #


def infonce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Per-anchor InfoNCE loss ``-log softmax(scores)[:, 0]``.

    ``scores`` has shape ``(N, K)``: row ``i`` holds the critic on anchor
    ``i``'s positive (column 0) and its ``K - 1`` negatives.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, K) with K >= 2, got {tuple(scores.shape)}")
    return -torch.log_softmax(scores, dim=1)[:, 0]


def infonce_bound(scores: torch.Tensor) -> tuple[float, float]:
    """InfoNCE lower bound on mutual information, ``log K - mean loss``, with its standard error.

    The standard error treats rows as independent, which holds when every
    row has its own negatives.  Each row's term is at most ``log K``, so the
    estimate never exceeds ``log K`` [3]_ [4]_.
    """
    per_anchor = math.log(scores.shape[1]) - infonce_loss(scores)
    n = per_anchor.numel()
    return float(per_anchor.mean()), float(per_anchor.std(unbiased=True) / math.sqrt(n))


def gaussian_mutual_information(rho: float, dim: int = 1) -> float:
    """Mutual information ``-dim/2 log(1 - rho**2)`` of ``dim`` independent pairs with correlation ``rho``."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    return -0.5 * dim * math.log1p(-rho**2)


def sample_correlated_gaussians(n: int, rho: float, dim: int = 1, generator: torch.Generator | None = None,
                                dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pairs ``(x, y)`` of standard normals in ``dim`` coordinates, each with correlation ``rho``."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    x = torch.randn(n, dim, dtype=dtype, generator=generator)
    noise = torch.randn(n, dim, dtype=dtype, generator=generator)
    y = rho * x + math.sqrt(1 - rho**2) * noise
    return x, y


def gaussian_log_density_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """``log p(y | x) - log p(y)`` for correlated standard normals, summed over coordinates.

    ``x`` and ``y`` broadcast against each other with the coordinate axis last.
    This is the InfoNCE-optimal critic (any added function of ``x`` is also optimal).
    """
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    one_minus = 1 - rho**2
    log_conditional = -0.5 * (y - rho * x) ** 2 / one_minus - 0.5 * math.log(one_minus)
    log_marginal = -0.5 * y**2
    return (log_conditional - log_marginal).sum(dim=-1)
