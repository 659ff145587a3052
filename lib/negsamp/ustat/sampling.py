"""Synthetic worlds, labelled pools, collision-free tuples and the incomplete U-statistic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .evaluator import ClassMoments, _check_reduction, _tuple_loss
from .shapes import _class_probabilities, check_negatives

__all__ = [
    "DiscreteWorld",
    "incomplete_ustatistic_moments",
    "make_discrete_world",
    "sample_collision_free_tuples",
    "sample_counts",
    "sample_population_tuples",
    "tuple_losses",
]


# === A world with finitely many points === #


@dataclass(frozen=True)
class DiscreteWorld:
    """Classes with finitely many points each, so every risk is an exact finite sum.

    Attributes
    ----------
    support : Tensor, shape (S, d)
        Unit-norm embeddings of the points.
    labels : Tensor of int, shape (S,)
        Class of each point.
    point_probs : Tensor, shape (S,)
        Probability of each point within its class.
    class_probs : Tensor, shape (R,)
        Class probabilities ``rho``.
    """

    support: torch.Tensor
    labels: torch.Tensor
    point_probs: torch.Tensor
    class_probs: torch.Tensor

    def to(self, device) -> "DiscreteWorld":
        """Return a copy whose tensors live on ``device``."""
        return DiscreteWorld(self.support.to(device), self.labels.to(device), self.point_probs.to(device),
                             self.class_probs.to(device))

    def restrict(self, n_classes: int, class_probs=None) -> "DiscreteWorld":
        """Keep the first ``n_classes`` classes, with new class probabilities (default: renormalised)."""
        if not 2 <= n_classes <= self.n_classes:
            raise ValueError(f"n_classes must lie in [2, {self.n_classes}], got {n_classes}")
        keep = self.labels < n_classes
        if class_probs is None:
            class_probs = self.class_probs[:n_classes] / self.class_probs[:n_classes].sum()
        rho = _class_probabilities(class_probs).to(self.support.device)
        if rho.shape != (n_classes,):
            raise ValueError(f"class_probs must have shape ({n_classes},), got {tuple(rho.shape)}")
        return DiscreteWorld(self.support[keep], self.labels[keep], self.point_probs[keep], rho)

    @property
    def n_classes(self) -> int:
        """Number of classes ``R``."""
        return int(self.class_probs.shape[0])

    def point_masses(self) -> torch.Tensor:
        """Probability ``rho_y mu_s`` of each point under the label mixture, shape (S,)."""
        return self.class_probs[self.labels] * self.point_probs

    def negative_masses(self, r: int) -> torch.Tensor:
        """Probability of each point as a negative for anchor class ``r``, shape (S,); zero on class ``r``."""
        masses = self.point_masses().clone()
        masses[self.labels == r] = 0
        return masses / masses.sum()

    def class_masses(self, r: int) -> torch.Tensor:
        """Probability of each point given class ``r``, shape (S,); zero off class ``r``."""
        return torch.where(self.labels == r, self.point_probs, torch.zeros_like(self.point_probs))


def make_discrete_world(class_probs, points_per_class: int, dim: int, spread: float,
                        generator: torch.Generator | None = None) -> DiscreteWorld:
    """Draw a world of ``R`` classes with ``points_per_class`` equally likely points each.

    Class ``r`` has a random unit mean ``mu_r``; its points are
    ``normalise(mu_r + spread * xi)`` with standard normal ``xi`` in ``dim``
    coordinates.

    Returns
    -------
    DiscreteWorld
        With ``S = R * points_per_class`` support points, grouped by class.
    """
    rho = _class_probabilities(class_probs)
    if rho.ndim != 1:
        raise ValueError(f"class_probs must be 1-D, got shape {tuple(rho.shape)}")
    if points_per_class < 1 or dim < 1 or spread < 0:
        raise ValueError(f"need points_per_class >= 1, dim >= 1 and spread >= 0, got "
                         f"{points_per_class}, {dim}, {spread}")
    n_classes = rho.shape[0]
    means = F.normalize(torch.randn(n_classes, dim, dtype=torch.float64, generator=generator), dim=1)
    noise = torch.randn(n_classes, points_per_class, dim, dtype=torch.float64, generator=generator)
    support = F.normalize(means.unsqueeze(1) + spread * noise, dim=2).reshape(-1, dim)
    labels = torch.arange(n_classes).repeat_interleave(points_per_class)
    point_probs = torch.full((support.shape[0],), 1.0 / points_per_class, dtype=torch.float64)
    return DiscreteWorld(support, labels, point_probs, rho)


def sample_counts(masses: torch.Tensor, n: int, replicates: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Multinomial counts of ``n`` i.i.d. draws from ``masses``, for ``replicates`` independent pools.

    The counts come from NumPy's multinomial sampler, seeded from
    ``generator``, whose cost grows with the number of support points but
    not with ``n``.

    Returns
    -------
    Tensor, shape (replicates, S), float64, on the CPU
    """
    if n < 0 or replicates < 1:
        raise ValueError(f"need n >= 0 and replicates >= 1, got n={n}, replicates={replicates}")
    probs = masses.detach().double().cpu().numpy()
    if probs.ndim != 1 or np.any(probs < 0) or probs.sum() <= 0:
        raise ValueError("masses must be a 1-D tensor of non-negative weights with a positive sum")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    counts = np.random.default_rng(seed).multinomial(n, probs / probs.sum(), size=replicates)
    return torch.from_numpy(counts.astype(np.float64))


def sample_population_tuples(world: DiscreteWorld, k: int, n_tuples: int,
                             generator: torch.Generator | None = None):
    """Draw i.i.d. collision-free tuples from the world's population.

    The anchor's class is ``r ~ rho``, and anchor and positive are
    independent draws from class ``r``.  Each negative's class is drawn from
    ``rho`` with class ``r`` removed, by inverting the cumulative
    distribution, and then its point from that class.

    Returns
    -------
    anchors, positives : Tensor of int, shape (n_tuples,)
    negatives : Tensor of int, shape (n_tuples, k)
        Indices into ``world.support``.
    """
    check_negatives(k)
    rho = world.class_probs
    classes = torch.multinomial(rho, n_tuples, replacement=True, generator=generator)
    cumulative = rho.cumsum(0)
    below = cumulative[classes] - rho[classes]  # mass of the classes before the anchor's
    u = torch.rand(n_tuples, k, dtype=torch.float64, generator=generator) * (1 - rho[classes]).unsqueeze(1)
    shifted = torch.where(u < below.unsqueeze(1), u, u + rho[classes].unsqueeze(1))
    negative_classes = torch.searchsorted(cumulative, shifted, right=True).clamp(max=world.n_classes - 1)
    return (_point_in_class(world, classes, generator), _point_in_class(world, classes, generator),
            _point_in_class(world, negative_classes, generator))


def _point_in_class(world: DiscreteWorld, classes: torch.Tensor, generator) -> torch.Tensor:
    """Draw one point of each requested class, with the world's within-class probabilities."""
    order = torch.argsort(world.labels, stable=True)
    sizes = torch.bincount(world.labels, minlength=world.n_classes)
    offsets = torch.cumsum(sizes, 0) - sizes
    # Within-class probabilities sum to 1, so class c's cumulative sums run from c to c + 1.
    cumulative = world.point_probs[order].cumsum(0)
    u = torch.rand(classes.shape, dtype=torch.float64, generator=generator)
    position = torch.searchsorted(cumulative, classes + u, right=True)
    position = torch.minimum(torch.maximum(position, offsets[classes]), offsets[classes] + sizes[classes] - 1)
    return order[position]


# === Collision-free tuples from a finite pool === #


def sample_collision_free_tuples(labels: torch.Tensor, k: int, n_tuples: int,
                                 generator: torch.Generator | None = None):
    """Draw i.i.d. tuples from a labelled pool, as in the sub-sampling scheme of Hieu and Ledent (2025).

    Each tuple picks a class ``c`` with probability proportional to ``N_c``
    among the classes that can form a tuple (``N_c >= 2`` and
    ``N - N_c >= k``).  It then draws an ordered pair of distinct class-``c``
    points uniformly as anchor and positive.  Its negatives are a uniformly
    random ``k``-subset of the other classes' points, drawn without
    replacement by Floyd's algorithm.

    Returns
    -------
    anchors, positives : Tensor of int, shape (n_tuples,)
    negatives : Tensor of int, shape (n_tuples, k)
        Indices into the pool.

    References
    ----------
    The scheme follows the description of the 2025 paper's sub-sampled
    estimator in third-party summaries; the paper's own text was not
    available to us.
    """
    check_negatives(k)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    n_points = labels.shape[0]
    order = torch.argsort(labels, stable=True)
    sizes = torch.bincount(labels)
    offsets = torch.cumsum(sizes, 0) - sizes
    eligible = (sizes >= 2) & (n_points - sizes >= k)
    if not torch.any(eligible):
        raise ValueError(f"no class has two points and {k} points outside it. Lower k or add points")
    weights = torch.where(eligible, sizes, torch.zeros_like(sizes)).double()
    classes = torch.multinomial(weights, n_tuples, replacement=True, generator=generator)
    size = sizes[classes]

    anchor_rank = torch.floor(torch.rand(n_tuples, generator=generator, dtype=torch.float64) * size).long()
    step = 1 + torch.floor(torch.rand(n_tuples, generator=generator, dtype=torch.float64) * (size - 1)).long()
    positive_rank = (anchor_rank + step) % size
    anchors = order[offsets[classes] + anchor_rank]
    positives = order[offsets[classes] + positive_rank]

    # Floyd's algorithm over positions 0 .. M - 1 of the other classes' points
    n_others = n_points - size
    chosen = torch.empty(n_tuples, k, dtype=torch.long)
    for i in range(k):  # k rounds, each vectorised over all tuples
        top = n_others - k + i
        candidate = torch.floor(torch.rand(n_tuples, generator=generator, dtype=torch.float64)
                                * (top + 1)).long()
        already_chosen = (chosen[:, :i] == candidate.unsqueeze(1)).any(dim=1)
        chosen[:, i] = torch.where(already_chosen, top, candidate)
    start = offsets[classes].unsqueeze(1)
    skipped = torch.where(chosen < start, chosen, chosen + size.unsqueeze(1))  # skip class c's block
    return anchors, positives, order[skipped]


def tuple_losses(embeddings: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor,
                 negatives: torch.Tensor, *, margin: float = 1.0, scale: float = 1.0,
                 reduction: str = "hardest") -> torch.Tensor:
    """Hinge loss of each tuple, as defined in :mod:`negsamp.ustat.evaluator`.

    Parameters
    ----------
    embeddings : Tensor, shape (S, d)
    anchors, positives : Tensor of int, shape (T,)
    negatives : Tensor of int, shape (T, k)

    Returns
    -------
    Tensor, shape (T,), float64
    """
    _check_reduction(reduction)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    points = embeddings.to(torch.float64)
    anchor_points = points[anchors]
    positive_similarity = (anchor_points * points[positives]).sum(dim=1, keepdim=True)
    negative_similarity = torch.einsum("td,tkd->tk", anchor_points, points[negatives])
    return _tuple_loss(scale * (positive_similarity - negative_similarity), margin, reduction)


def incomplete_ustatistic_moments(moments: ClassMoments, k: int):
    """Mean and per-tuple variance of one tuple drawn by :func:`sample_collision_free_tuples`.

    The class is drawn with probability ``pi_r`` proportional to ``N_r``
    among usable classes, so, given the pool, one tuple's loss has mean
    ``sum_r pi_r U_r`` and variance ``sum_r pi_r U2_r - (sum_r pi_r U_r)**2``
    with ``U2_r`` the complete U-statistic of the squared loss.  The average
    of ``B`` i.i.d. tuples (the incomplete U-statistic) has the same mean and
    ``1 / B`` times the variance.  Without dropped classes the mean is the
    complete estimate ``sum_r (N_r / N) U_r``.

    Parameters
    ----------
    moments : ClassMoments
        From :func:`complete_class_ustatistics` for one pool (no batch or loss axis).
    k : int
        Negatives per tuple, used to decide which classes are usable.

    Returns
    -------
    mean, variance : float
    """
    check_negatives(k)
    if moments.mean.ndim != 1:
        raise ValueError(f"pass the moments of a single pool and loss, got shape {tuple(moments.mean.shape)}")
    sizes = moments.class_sizes
    usable = (sizes >= 2) & (sizes.sum() - sizes >= k) & ~torch.isnan(moments.mean)
    weights = torch.where(usable, sizes, torch.zeros_like(sizes))
    weights = weights / weights.sum()
    mean = float((weights * torch.nan_to_num(moments.mean)).sum())
    second = float((weights * torch.nan_to_num(moments.second_moment)).sum())
    return mean, second - mean**2

