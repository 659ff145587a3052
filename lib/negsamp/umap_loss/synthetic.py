"""A noisy ring in the plane: the toy data set of Damrich and Hamprecht (2021)."""

from __future__ import annotations

import math

import torch


def sample_ring(n_points: int, radius: float = 4.0, noise_radius: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``n_points`` points on a circle of ``radius``, each moved uniformly within a disc of ``noise_radius``.

    Returns
    -------
    Tensor
        Shape ``(n_points, 2)``, float64, on the CPU.
    """
    if int(n_points) < 1 or not radius > 0 or not noise_radius >= 0:
        raise ValueError(f"need n_points >= 1, radius > 0 and noise_radius >= 0, "
                         f"got {n_points!r}, {radius!r}, {noise_radius!r}")
    angle = 2 * math.pi * torch.rand(n_points, generator=generator, dtype=torch.float64)
    noise_angle = 2 * math.pi * torch.rand(n_points, generator=generator, dtype=torch.float64)
    # The square root makes the noise uniform over the disc's area.
    noise_length = noise_radius * torch.rand(n_points, generator=generator, dtype=torch.float64).sqrt()
    circle = radius * torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)
    noise = noise_length[:, None] * torch.stack([torch.cos(noise_angle), torch.sin(noise_angle)], dim=1)
    return circle + noise
