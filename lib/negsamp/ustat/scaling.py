"""Deviations that each analysis controls, and slopes of how they scale.

For a finite family of losses (one per representation ``f``) and pools
drawn from a world with known class risks ``L_r``:

- the 2025 analysis controls every class at once, ``max_r sup_f |U_r - L_r|``;
- the refined 2026 analysis controls the class-weighted sum
  ``sum_r rho_hat_r sup_f |U_r - L_r|``;
- what matters for learning is the estimator's own deviation
  ``sup_f |sum_r rho_hat_r U_r - L_phi|``.

:func:`uniform_deviations` returns all three from the exact U-statistics.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..claims import SlopeFit, fit_slope
from .evaluator import ClassMoments, hieu_ledent_estimate

__all__ = ["Deviations", "bootstrap_loglog_slope", "uniform_deviations"]


class Deviations(NamedTuple):
    """Uniform deviations of one batch of pools; every field has the batch axis first.

    Attributes
    ----------
    per_class : Tensor, shape (B, R)
        ``sup_f |U_r - L_r|``; NaN for classes the pool cannot use.
    weighted : Tensor, shape (B,)
        ``sum_r rho_hat_r sup_f |U_r - L_r|`` over usable classes.
    estimator : Tensor, shape (B,)
        ``sup_f |sum_r rho_hat_r U_r - L_phi|``.
    dropped_mass : Tensor, shape (B,)
        Mass ``sum rho_hat_r`` of the classes the estimator could not use.
    """

    per_class: torch.Tensor
    weighted: torch.Tensor
    estimator: torch.Tensor
    dropped_mass: torch.Tensor


def uniform_deviations(pool: ClassMoments, population: ClassMoments) -> Deviations:
    """Compare a batch of pools' class-wise U-statistics with the exact class risks.

    Parameters
    ----------
    pool : ClassMoments
        From :func:`~negsamp.ustat.complete_class_ustatistics` with a batch of
        counts, ``mean`` of shape ``(B, L, R)`` (``L`` losses) or ``(B, R)``.
    population : ClassMoments
        From :func:`~negsamp.ustat.population_class_risks` with the same
        losses, ``mean`` of shape ``(L, R)`` or ``(R,)``.

    Returns
    -------
    Deviations
    """
    pool_mean = pool.mean if pool.mean.ndim == 3 else pool.mean.unsqueeze(1)
    risks = population.mean if population.mean.ndim == 2 else population.mean.unsqueeze(0)
    if pool_mean.ndim != 3 or pool_mean.shape[1:] != risks.shape:
        raise ValueError(f"pool means of shape {tuple(pool.mean.shape)} do not match population risks of "
                         f"shape {tuple(population.mean.shape)}. Evaluate both with the same losses and classes")
    sizes = pool.class_sizes
    if sizes.ndim != 2:
        raise ValueError("pool must come from a batch of count vectors (class_sizes of shape (B, R))")
    per_class = (pool_mean - risks.unsqueeze(0)).abs().amax(dim=1)  # NaN stays NaN for unusable classes
    frequencies = sizes / sizes.sum(dim=1, keepdim=True)
    weighted = torch.where(torch.isnan(per_class), torch.zeros_like(per_class), frequencies * per_class).sum(dim=1)
    estimate, dropped = hieu_ledent_estimate(pool_mean, sizes.unsqueeze(1))  # (B, L)
    risk = (population.class_sizes.unsqueeze(0) * risks).sum(dim=1)  # L_phi for each loss
    estimator = (estimate - risk.unsqueeze(0)).abs().amax(dim=1)
    return Deviations(per_class, weighted, estimator, dropped[:, 0])


def bootstrap_loglog_slope(x: Sequence[float], samples: Sequence[torch.Tensor], n_boot: int,
                           generator: torch.Generator | None = None) -> tuple[SlopeFit, float]:
    """Log-log slope of the mean of ``samples`` against ``x``, with a cluster-bootstrap standard error.

    ``samples[i]`` contains the replicates measured at ``x[i]``, shape
    ``(W, ...)``: the first axis indexes independent clusters (for example
    random worlds), and the same clusters appear at every ``x``, so one
    resampling of cluster indices is applied to all ``x`` at once.  The
    standard error is the spread of the refitted slope over ``n_boot``
    resamplings, so it includes the variation between clusters.

    Returns
    -------
    fit : SlopeFit
        Ordinary least-squares fit of ``log mean`` on ``log x``.
    stderr : float
        Bootstrap standard error of ``fit.slope``.
    """
    if len(x) != len(samples) or len(x) < 3:
        raise ValueError(f"need the same number (at least 3) of x values and samples, got {len(x)} and {len(samples)}")
    clusters = {int(s.shape[0]) for s in samples}
    if len(clusters) != 1 or min(clusters) < 2:
        raise ValueError(f"every sample needs the same number (at least 2) of clusters on axis 0, got {sorted(clusters)}")
    n_clusters = clusters.pop()
    flat = [s.reshape(n_clusters, -1).double() for s in samples]
    fit = fit_slope(x, [float(s.mean()) for s in flat], loglog=True)
    slopes = []
    for _ in range(n_boot):  # each resampling refits a 1-D regression, so the loop is cheap
        index = torch.randint(0, n_clusters, (n_clusters,), generator=generator)
        slopes.append(fit_slope(x, [float(s[index].mean()) for s in flat], loglog=True).slope)
    return fit, float(torch.tensor(slopes).std())
