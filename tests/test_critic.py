"""The critic library against its SymPy forms and against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from negsamp import critic

DEFAULT_DTYPE = torch.float64  # conftest.py sets this per test and restores it afterwards


def _sympy_pointwise():
    s = sp.Symbol("s", real=True)
    p, q, k = sp.symbols("p q k", positive=True)
    ell = -p * sp.log(1 / (1 + sp.exp(-s))) - k * q * sp.log(1 / (1 + sp.exp(s)))
    return s, p, q, k, ell


def test_optimal_critic_matches_sympy_solution():
    s, p, q, k, ell = _sympy_pointwise()
    (solution,) = sp.solve(sp.Eq(sp.diff(ell, s), 0), s)
    for p_value, q_value, k_value in [(0.3, 0.1, 5), (2.0, 0.7, 1), (1e-3, 4.0, 20)]:
        expected = float(solution.subs({p: p_value, q: q_value, k: k_value}))
        got = critic.optimal_nce_critic(torch.tensor(math.log(p_value)), torch.tensor(math.log(q_value)), k_value)
        assert float(got) == pytest.approx(expected, abs=1e-12)


def test_pointwise_loss_gradient_matches_sympy():
    s, p, q, k, ell = _sympy_pointwise()
    derivative = sp.lambdify((s, p, q, k), sp.diff(ell, s), "math")
    score = torch.tensor(0.7, requires_grad=True)
    loss = critic.nce_pointwise_loss(score, torch.tensor(0.4), torch.tensor(0.9), 3)
    (gradient,) = torch.autograd.grad(loss, score)
    assert float(gradient) == pytest.approx(derivative(0.7, 0.4, 0.9, 3), abs=1e-12)


def test_pointwise_loss_is_minimised_at_optimal_critic():
    p, q, k = torch.tensor(0.8), torch.tensor(0.2), 4
    best = critic.optimal_nce_critic(torch.log(p), torch.log(q), k)
    grid = best + torch.linspace(-1, 1, 201)
    losses = critic.nce_pointwise_loss(grid, p, q, k)
    assert int(torch.argmin(losses)) == 100


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_bad_k_rejected(bad):
    with pytest.raises(ValueError, match="k must be"):
        critic.optimal_nce_critic(torch.tensor(0.0), torch.tensor(0.0), bad)


def test_linear_critic_recovers_gaussian_log_ratio():
    """With Gaussian p and q the optimal critic is quadratic, so features (1, x, x^2) contain it."""
    generator = torch.Generator().manual_seed(0)
    data = critic.GaussianMixture1D((1.0,), (1.0,), (0.8,))
    noise = critic.GaussianMixture1D((1.0,), (0.0,), (2.0,))
    k, n = 3, 40_000
    x_data, x_noise = data.sample(n, generator), noise.sample(k * n, generator)
    phi = lambda x: torch.stack([torch.ones_like(x), x, x**2], dim=1)  # noqa: E731
    theta = critic.fit_linear_nce_critic(phi(x_data), phi(x_noise), k)
    covariance = critic.nce_sandwich_covariance(theta, phi(x_data), phi(x_noise), k)
    grid = torch.linspace(-1, 3, 9)
    truth = critic.optimal_nce_critic(data.log_prob(grid), noise.log_prob(grid), k)
    fitted = phi(grid) @ theta
    stderr = torch.sqrt(torch.einsum("gi,ij,gj->g", phi(grid), covariance, phi(grid)))
    assert float(((fitted - truth) / stderr).abs().max()) < 5


def test_sandwich_covariance_matches_replicates():
    """The predicted standard error of theta agrees with the spread over independent fits."""
    data = critic.GaussianMixture1D((1.0,), (0.5,), (1.0,))
    noise = critic.GaussianMixture1D((1.0,), (0.0,), (1.5,))
    k, n, replicates = 2, 2000, 60
    phi = lambda x: torch.stack([torch.ones_like(x), x, x**2], dim=1)  # noqa: E731
    fits, predicted = [], []
    for index in range(replicates):
        generator = torch.Generator().manual_seed(100 + index)
        x_data, x_noise = data.sample(n, generator), noise.sample(k * n, generator)
        theta = critic.fit_linear_nce_critic(phi(x_data), phi(x_noise), k)
        fits.append(theta)
        predicted.append(torch.diagonal(critic.nce_sandwich_covariance(theta, phi(x_data), phi(x_noise), k)).sqrt())
    empirical = torch.stack(fits).std(dim=0)
    mean_predicted = torch.stack(predicted).mean(dim=0)
    ratio = empirical / mean_predicted
    # With 60 replicates the sample standard deviation is within about 3 x 9% of the truth.
    assert torch.all((ratio > 0.7) & (ratio < 1.3)), ratio


def test_mixture_density_integrates_to_one():
    mixture = critic.GaussianMixture1D((0.2, 0.8), (-1.0, 2.0), (0.5, 1.5))
    grid = torch.linspace(-15, 15, 30001)
    integral = torch.trapezoid(mixture.log_prob(grid).exp(), grid)
    assert float(integral) == pytest.approx(1.0, abs=1e-9)


def test_mixture_rejects_bad_weights():
    with pytest.raises(ValueError, match="sum to 1"):
        critic.GaussianMixture1D((0.5, 0.6), (0.0, 1.0), (1.0, 1.0))


def test_infonce_bound_never_exceeds_log_k():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(1000, 16, generator=generator) * 10
    scores[:, 0] += 100  # a critic that is always confident
    estimate, _ = critic.infonce_bound(scores)
    assert estimate <= math.log(16) + 1e-12
    assert estimate == pytest.approx(math.log(16), abs=1e-6)


def test_infonce_loss_rejects_single_column():
    with pytest.raises(ValueError, match="K >= 2"):
        critic.infonce_loss(torch.zeros(4, 1))


def test_gaussian_log_ratio_matches_density_formula():
    rho = 0.6
    x, y = torch.tensor([[0.3]]), torch.tensor([[-1.2]])
    conditional = torch.distributions.Normal(rho * x, math.sqrt(1 - rho**2)).log_prob(y)
    marginal = torch.distributions.Normal(0.0, 1.0).log_prob(y)
    assert float(critic.gaussian_log_density_ratio(x, y, rho)) == pytest.approx(float(conditional - marginal), abs=1e-12)


def test_gaussian_mutual_information_against_monte_carlo():
    generator = torch.Generator().manual_seed(2)
    rho = 0.8
    x, y = critic.sample_correlated_gaussians(200_000, rho, generator=generator)
    monte_carlo = float(critic.gaussian_log_density_ratio(x, y, rho).mean())
    assert monte_carlo == pytest.approx(critic.gaussian_mutual_information(rho), abs=0.01)
    assert critic.gaussian_mutual_information(0.0) == 0.0
    assert critic.gaussian_mutual_information(0.5, dim=3) == pytest.approx(-1.5 * np.log(0.75))


def test_closed_form_gradient_and_hessian_match_autograd():
    generator = torch.Generator().manual_seed(3)
    phi_data = torch.randn(50, 4, generator=generator)
    phi_noise = torch.randn(120, 4, generator=generator)
    weights_data = torch.rand(50, generator=generator)
    theta = torch.randn(4, generator=generator)

    def objective(parameters):
        return critic.nce_loss(phi_data @ parameters, phi_noise @ parameters, 2.5, weights_data, None)

    gradient, hessian = critic.nce_gradient_and_hessian(theta, phi_data, phi_noise, 2.5, weights_data, None)
    assert torch.allclose(gradient, torch.autograd.functional.jacobian(objective, theta), atol=1e-12)
    assert torch.allclose(hessian, torch.autograd.functional.hessian(objective, theta), atol=1e-12)
