"""UMAP's low-dimensional similarity and the gradient coefficients umap-learn uses.

With ``D = ||y_i - y_j||**2`` the embedding similarity is
``nu(D) = 1 / (1 + a D**b)``.  umap-learn never differentiates a loss: it
multiplies ``y_i - y_j`` by a scalar coefficient, one for attraction and one
for repulsion.  The two functions below return exactly those scalars, so that
``attraction_coefficient(D) * (y_i - y_j)`` is the gradient of
``log nu`` with respect to ``y_i`` and, with ``epsilon = 0``,
``repulsion_coefficient(D) * (y_i - y_j)`` is the gradient of ``log(1 - nu)``.

References
----------
.. [1] L. McInnes, J. Healy and J. Melville, "UMAP: Uniform manifold
   approximation and projection for dimension reduction", arXiv:1802.03426, 2018.
.. [2] umap-learn 0.5.12, ``umap/layouts.py``, function
   ``_optimize_layout_euclidean_single_epoch``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# umap-learn clips every coordinate of every sampled update to this range.
UPDATE_CLIP = 4.0
# umap-learn adds this to D in the denominator of the repulsive coefficient.
REPULSION_EPSILON = 1e-3


def _check_curve(a: float, b: float) -> None:
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"curve parameters must be positive and finite, got a={a!r}, b={b!r}")


def curve_parameters(spread: float = 1.0, min_dist: float = 0.1) -> tuple[float, float]:
    """Fit the curve parameters ``(a, b)`` of ``nu`` the way umap-learn does.

    The target curve is 1 for distances below ``min_dist`` and
    ``exp(-(x - min_dist) / spread)`` above it, sampled at 300 points in
    ``[0, 3 spread]``.  ``1 / (1 + a x**(2b))`` is fitted to it by least
    squares (``scipy.optimize.curve_fit``).

    Parameters
    ----------
    spread : float
        Scale of the embedded points, positive.
    min_dist : float
        Distance below which the target similarity is 1; ``0 <= min_dist < 3 spread``.

    Returns
    -------
    tuple of float
        ``(a, b)``; ``(1.577, 0.895)`` for the defaults.
    """
    from scipy.optimize import curve_fit

    if not spread > 0:
        raise ValueError(f"spread must be positive, got {spread!r}")
    if not 0 <= min_dist < 3 * spread:
        raise ValueError(f"min_dist must lie in [0, 3 * spread), got {min_dist!r}")

    def curve(x, a, b):
        return 1.0 / (1.0 + a * x ** (2 * b))

    x = np.linspace(0, spread * 3, 300)
    target = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(curve, x, target)
    return float(a), float(b)


def low_dimensional_similarity(squared_distance: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Return ``nu = 1 / (1 + a D**b)`` for squared embedding distances ``D``.

    Parameters
    ----------
    squared_distance : Tensor
        ``D = ||y_i - y_j||**2``, any shape, non-negative.
    a, b : float
        Curve parameters from :func:`curve_parameters`.
    """
    _check_curve(a, b)
    return 1.0 / (1.0 + a * squared_distance.pow(b))


def log_similarity_complement(squared_distance: torch.Tensor, a: float, b: float,
                              min_squared_distance: float = 1e-12) -> torch.Tensor:
    """Return ``log(1 - nu(D))`` computed stably as ``log(a D**b) - log(1 + a D**b)``.

    ``log(1 - nu)`` is minus infinity at ``D = 0``, so ``D`` is first clamped
    to ``min_squared_distance``; only coincident points are affected.
    """
    _check_curve(a, b)
    scaled = a * squared_distance.clamp_min(min_squared_distance).pow(b)
    return torch.log(scaled) - torch.log1p(scaled)


def attraction_coefficient(squared_distance: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Return umap-learn's attractive coefficient ``-2ab D**(b-1) / (1 + a D**b)``.

    Times ``y_i - y_j`` it is the gradient of ``log nu_ij`` with respect to
    ``y_i``.  At ``D = 0`` umap-learn uses 0, and so does this function.
    """
    _check_curve(a, b)
    positive = squared_distance > 0
    safe = torch.where(positive, squared_distance, torch.ones_like(squared_distance))
    coefficient = -2.0 * a * b * safe.pow(b - 1.0) / (1.0 + a * safe.pow(b))
    return torch.where(positive, coefficient, torch.zeros_like(coefficient))


def repulsion_coefficient(squared_distance: torch.Tensor, a: float, b: float,
                          epsilon: float = REPULSION_EPSILON) -> torch.Tensor:
    """Return umap-learn's repulsive coefficient ``2b / ((epsilon + D)(1 + a D**b))``.

    With ``epsilon = 0``, times ``y_i - y_j`` it is the gradient of
    ``log(1 - nu_ij)`` with respect to ``y_i``; umap-learn adds
    ``epsilon = 0.001`` to keep it finite for close pairs.  At ``D = 0`` the
    update is zero in umap-learn (a point drawn as its own negative is
    skipped), so this function returns 0 there.  Multiply by the repulsion
    strength ``gamma`` for umap-learn's ``grad_coeff``.
    """
    _check_curve(a, b)
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon!r}")
    positive = squared_distance > 0
    safe = torch.where(positive, squared_distance, torch.ones_like(squared_distance))
    coefficient = 2.0 * b / ((epsilon + safe) * (1.0 + a * safe.pow(b)))
    return torch.where(positive, coefficient, torch.zeros_like(coefficient))
