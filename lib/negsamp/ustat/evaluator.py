"""Exact class-wise U-statistics of a hinge contrastive loss, fast and by brute force.

A tuple has an anchor ``x``, a positive ``x+`` of the anchor's class and
``k`` negatives ``x_1-, ..., x_k-`` from other classes.  With embeddings
``e`` the scores are ``v_i = scale * <e(x), e(x+) - e(x_i-)>`` and the
library uses the hinge ``psi(t) = max(0, margin - t)`` in two reductions:

- ``"hardest"``: ``loss = psi(min_i v_i)``, the hardest-negative hinge, which
  depends on the negatives only through ``max_i <e(x), e(x_i-)>``;
- ``"mean"``: ``loss = mean_i psi(v_i)``, an additive loss.

The complete class-wise U-statistic averages the loss over every ordered
anchor-positive pair of class ``r`` and every ``k``-subset of the points of
other classes.  For ``"hardest"`` only the largest negative similarity
matters, and for a uniform ``k``-subset of ``M`` negatives sorted by
similarity the largest is the ``i``-th smallest with probability
``C(i - 1, k - 1) / C(M, k)``.  Sorting each anchor's negatives once and
taking tail sums of these weights gives the exact average in
``O(N**2 log N)`` operations instead of ``O(N**(k + 2))`` loss evaluations.
An additive loss averages over single negatives, so ``"mean"`` is the
``k = 1`` case of the same computation: a two-sample U-statistic of degree
``(2, 1)``.

The population risk of a discrete synthetic world is the same computation
with i.i.d. negatives, for which the largest of ``k`` draws is at most the
``i``-th value with probability ``W_i**k`` (``W_i`` the cumulative mass).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import torch

from .shapes import check_negatives

__all__ = [
    "ClassMoments",
    "brute_force_class_ustatistics",
    "brute_force_evaluation_count",
    "brute_force_population_risks",
    "complete_class_ustatistics",
    "hieu_ledent_estimate",
    "population_class_risks",
]

REDUCTIONS = ("hardest", "mean")


class ClassMoments(NamedTuple):
    """Per-class averages of the loss and of its square.

    ``mean`` and ``second_moment`` have shape ``(B, L, R)`` with the batch
    axis ``B`` present only when counts came with one, and the loss axis
    ``L`` present only when ``margin`` or ``scale`` was a 1-D tensor.
    Entries are NaN for classes the estimator cannot use (fewer than two
    points, or fewer than ``k`` points in the other classes).
    ``class_sizes`` has shape ``(B, R)`` (or ``(R,)``) and contains ``N_r``,
    or the class probabilities for a population.
    """

    mean: torch.Tensor
    second_moment: torch.Tensor
    class_sizes: torch.Tensor


# === Validation === #


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}. Choose one of {', '.join(REDUCTIONS)}")


def _check_points(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int | None) -> int:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (S, d), got {tuple(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int32, torch.int64) or (labels.numel() and int(labels.min()) < 0):
        raise ValueError("labels must be non-negative integer class indices")
    found = int(labels.max()) + 1 if labels.numel() else 0
    if n_classes is None:
        return found
    if n_classes < found:
        raise ValueError(f"n_classes={n_classes} is smaller than the largest label plus one ({found})")
    return n_classes


def _loss_parameters(margin, scale, device) -> tuple[torch.Tensor, torch.Tensor, bool]:
    margin_t = torch.as_tensor(margin, dtype=torch.float64, device=device)
    scale_t = torch.as_tensor(scale, dtype=torch.float64, device=device)
    if margin_t.ndim > 1 or scale_t.ndim > 1:
        raise ValueError("margin and scale must be numbers or 1-D tensors")
    has_axis = margin_t.ndim == 1 or scale_t.ndim == 1
    margin_t, scale_t = torch.broadcast_tensors(margin_t.reshape(-1), scale_t.reshape(-1))
    if not torch.all(scale_t > 0):
        raise ValueError(f"scale must be positive, got {scale_t.tolist()}")
    return margin_t, scale_t, has_axis


def _as_count_batch(counts, size: int, device) -> tuple[torch.Tensor, bool]:
    if counts is None:
        return torch.ones(1, size, dtype=torch.float64, device=device), False
    counts_t = torch.as_tensor(counts, dtype=torch.float64, device=device)
    has_batch = counts_t.ndim == 2
    if counts_t.ndim == 1:
        counts_t = counts_t.unsqueeze(0)
    if counts_t.ndim != 2 or counts_t.shape[1] != size:
        raise ValueError(f"counts must have shape ({size},) or (B, {size}), got {tuple(counts_t.shape)}")
    if torch.any(counts_t < 0) or torch.any(counts_t != counts_t.round()):
        raise ValueError("counts must be non-negative integers (how often each support point is in the pool)")
    return counts_t, has_batch


# === The shared engine === #


def _hypergeometric_max_cdf(k: int):
    """``P(max of a uniform k-subset <= the i-th value) = C(c_i, k) / C(M, k)``, ``c_i`` cumulative counts."""

    def cdf(cumulative: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        ratio = torch.ones_like(cumulative)
        for u in range(k):  # k factors (c - u) / (M - u); for an integer c < k one of them is 0
            ratio = ratio * (cumulative - u) / (total - u)
        return ratio

    return cdf


def _square_of_loss(reduction: str, k: int, without_replacement: bool):
    """Second moment of the loss from the first two moments ``F1``, ``F2`` of ``psi`` over the negatives.

    For the hardest negative the loss is ``psi`` of one draw, so it is ``F2``.
    The mean of ``psi`` over ``k`` negatives has second moment
    ``F2 / k + (1 - 1 / k) E[psi_t psi_t']`` over two distinct negatives:
    ``(M F1**2 - F2) / (M - 1)`` for ``M`` pool points without replacement,
    ``F1**2`` for i.i.d. draws.
    """

    def square(first: torch.Tensor, second: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        if reduction == "hardest" or k == 1:
            return second
        if without_replacement:
            cross = (total * first**2 - second) / (total - 1).clamp(min=1)
        else:
            cross = first**2
        return second / k + (1 - 1 / k) * cross

    return square


def _iid_max_cdf(k: int):
    """``P(max of k i.i.d. draws <= the i-th value) = (W_i / W)**k``, ``W_i`` cumulative mass."""

    def cdf(cumulative: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        return (cumulative / total) ** k

    return cdf


def _sort_rows(values: torch.Tensor, need_order: bool):
    """Sort each row ascending; return the sorted values and, if asked, the permutation.

    On the CPU this goes through NumPy, whose sort of 100 rows of 10**4
    float64 values took about a tenth of the time of ``torch.sort``
    (NumPy 2.4, torch 2.13, one thread of an Intel Xeon).
    """
    if values.device.type == "cpu":
        array = values.numpy()
        if not need_order:
            return torch.from_numpy(np.sort(array, axis=1)), None
        order = np.argsort(array, axis=1)
        return torch.from_numpy(np.take_along_axis(array, order, axis=1)), torch.from_numpy(order)
    return torch.sort(values, dim=1)


def _tail_sums(values: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``sum_{j >= position} values[..., j]`` along the last axis, for each query position."""
    cumulative = values.cumsum(dim=-1).expand(position.shape[:-1] + (-1,))
    before = cumulative.gather(-1, (position - 1).clamp(min=0))
    before = torch.where(position > 0, before, torch.zeros_like(before))
    return cumulative[..., -1:] - before


def _class_hinge_moments(embeddings, labels, n_classes, negative_weights, pair_weight_fn, max_cdf,
                         square_fn, margins, classes, max_block_elements):
    """Sum ``pair_weight * E[loss]`` and ``pair_weight * E[loss**2]`` over each class's anchors.

    ``negative_weights`` has shape ``(B, S)``: the count or mass of each
    support point when it serves as a negative.  ``pair_weight_fn(anchors,
    members)`` returns the ``(B, b, m)`` weight of each anchor-positive pair.
    ``max_cdf`` gives the law of the largest negative similarity, and
    ``square_fn(first, second, total)`` turns the moments of ``psi`` under
    that law into the second moment of the loss.  ``margins`` are effective
    margins (margin / scale), shape ``(L,)``.
    Returns two ``(B, L, R)`` tensors of sums (not yet normalised).
    """
    batch = negative_weights.shape[0]
    n_margins = margins.shape[0]
    device = embeddings.device
    first = torch.zeros(batch, n_margins, n_classes, dtype=torch.float64, device=device)
    second = torch.zeros_like(first)
    for r in classes:
        members = torch.nonzero(labels == r).flatten()
        others = torch.nonzero(labels != r).flatten()
        if members.numel() == 0 or others.numel() == 0:
            continue
        other_weights = negative_weights[:, others]  # (B, M)
        total_weight = other_weights.sum(dim=1).view(batch, 1, 1)
        # With one pool of equally weighted negatives the law of the largest does not depend on
        # the order, so it is computed once per class and only the values need sorting.
        shared = batch == 1 and bool(torch.all(other_weights == other_weights[:, :1]))
        if shared:
            cumulative = other_weights.cumsum(dim=1).unsqueeze(1)  # (1, 1, M)
            cdf = max_cdf(cumulative, cumulative[..., -1:])
            shared_probability = torch.diff(cdf, dim=2, prepend=torch.zeros_like(cdf[..., :1]))
        width = others.numel() + n_margins * members.numel()
        block = max(1, max_block_elements // (batch * width))
        for start in range(0, members.numel(), block):
            anchors = members[start:start + block]
            b = anchors.numel()
            negative_similarity = embeddings[anchors] @ embeddings[others].T  # (b, M)
            sorted_similarity, order = _sort_rows(negative_similarity, need_order=not shared)

            # === Law of the largest negative similarity, per anchor === #
            if shared:
                probability = shared_probability
            else:
                weights_sorted = other_weights.unsqueeze(1).expand(batch, b, -1).gather(
                    2, order.unsqueeze(0).expand(batch, -1, -1))
                cumulative = weights_sorted.cumsum(dim=2)
                cdf = max_cdf(cumulative, cumulative[..., -1:])
                probability = torch.diff(cdf, dim=2, prepend=torch.zeros_like(cdf[..., :1]))

            # === Hinge moments for every positive, through tail sums === #
            positive_similarity = embeddings[anchors] @ embeddings[members].T  # (b, m)
            # psi > 0 exactly when the largest negative similarity exceeds s_pos - margin
            offsets = (positive_similarity.unsqueeze(1) - margins.view(1, -1, 1)).reshape(b, -1)  # (b, L*m)
            position = torch.searchsorted(sorted_similarity, offsets, right=True)
            position = position.unsqueeze(0).expand(batch, -1, -1)
            weighted = probability * sorted_similarity
            mass = _tail_sums(probability, position)
            linear = _tail_sums(weighted, position)
            quadratic = _tail_sums(weighted * sorted_similarity, position)
            offsets = offsets.unsqueeze(0)
            moment1 = linear - offsets * mass
            moment2 = square_fn(moment1, quadratic - 2 * offsets * linear + offsets**2 * mass, total_weight)

            pair_weights = pair_weight_fn(anchors, members)  # (B, b, m)
            pair_weights = pair_weights.unsqueeze(2).expand(-1, -1, n_margins, -1)
            shape = (batch, b, n_margins, members.numel())
            first[:, :, r] += (pair_weights * moment1.reshape(shape)).sum(dim=(1, 3))
            second[:, :, r] += (pair_weights * moment2.reshape(shape)).sum(dim=(1, 3))
    return first, second


def _resolve_classes(classes, n_classes: int) -> list[int]:
    if classes is None:
        return list(range(n_classes))
    chosen = [int(r) for r in classes]
    bad = [r for r in chosen if not 0 <= r < n_classes]
    if bad:
        raise ValueError(f"classes {bad} are out of range for {n_classes} classes")
    return chosen


def _finish(first, second, scale, class_sizes, has_batch, has_axis):
    scale = scale.view(1, -1, 1)
    mean = first * scale
    second_moment = second * scale**2
    if not has_axis:
        mean, second_moment = mean[:, 0], second_moment[:, 0]
    if not has_batch:
        mean, second_moment, class_sizes = mean[0], second_moment[0], class_sizes[0]
    return ClassMoments(mean, second_moment, class_sizes)


# === Complete U-statistics of a finite pool === #


def complete_class_ustatistics(embeddings: torch.Tensor, labels: torch.Tensor, k: int, *, margin=1.0,
                               scale=1.0, counts=None, reduction: str = "hardest", n_classes: int | None = None,
                               classes=None, max_block_elements: int = 2**20) -> ClassMoments:
    """Exact complete class-wise U-statistics ``U_r`` of the hinge loss over a labelled pool.

    ``U_r`` averages the loss over all ordered anchor-positive pairs of
    distinct class-``r`` points and all ``k``-subsets of the points of other
    classes, so that ``sum_r (N_r / N) U_r`` is the estimator of Hieu and
    Ledent (2025) (see :func:`hieu_ledent_estimate`).  The evaluation sorts
    each anchor's negatives once, so it costs ``O(S**2 log S)`` per count
    vector for ``S`` support points, and works one block of anchors of one
    class at a time so that no intermediate array exceeds about
    ``max_block_elements`` entries.

    Parameters
    ----------
    embeddings : Tensor, shape (S, d)
        Embeddings of the support points.  Computations run in float64 on
        the embeddings' device.
    labels : Tensor of int, shape (S,)
        Class of each support point, in ``0 .. R - 1``.
    k : int
        Negatives per tuple.
    margin, scale : float or Tensor of shape (L,)
        Hinge margin and score scale; 1-D values evaluate ``L`` losses at
        once, sharing the sort.
    counts : Tensor, shape (S,) or (B, S), optional
        How many copies of each support point the pool contains; a batch of
        count vectors evaluates ``B`` pools over the same support.  The
        default is one copy of each point, so the support is the pool.
    reduction : {'hardest', 'mean'}
        Hardest-negative hinge, or the mean hinge over the ``k`` negatives
        (which does not depend on ``k``).
    n_classes : int, optional
        Number of classes ``R``; default ``labels.max() + 1``.
    classes : sequence of int, optional
        Evaluate only these classes; the others are NaN.
    max_block_elements : int
        Size limit for the intermediate arrays of one block.

    Returns
    -------
    ClassMoments
        ``mean`` contains ``U_r``, ``second_moment`` the same U-statistic of the
        squared loss, ``class_sizes`` the class sizes ``N_r``.

    References
    ----------
    N. M. Hieu and A. Ledent, "Generalization analysis for supervised
    contrastive representation learning under non-IID settings", ICML 2025.
    The sorting evaluator is this library's own.
    """
    check_negatives(k)
    _check_reduction(reduction)
    n_classes = _check_points(embeddings, labels, n_classes)
    device = embeddings.device
    embeddings = embeddings.to(torch.float64)
    labels = labels.to(device)
    margins, scales, has_axis = _loss_parameters(margin, scale, device)
    counts_t, has_batch = _as_count_batch(counts, embeddings.shape[0], device)
    negatives_per_tuple = k if reduction == "hardest" else 1

    class_sizes = torch.zeros(counts_t.shape[0], n_classes, dtype=torch.float64, device=device)
    class_sizes.index_add_(1, labels, counts_t)

    def pair_weights(anchors, members):
        anchor_counts = counts_t[:, anchors].unsqueeze(2)
        member_counts = counts_t[:, members].unsqueeze(1)
        same_point = (anchors.unsqueeze(1) == members.unsqueeze(0)).to(torch.float64)
        return anchor_counts * (member_counts - same_point)  # ordered pairs of distinct pool points

    first, second = _class_hinge_moments(
        embeddings, labels, n_classes, counts_t, pair_weights, _hypergeometric_max_cdf(negatives_per_tuple),
        _square_of_loss(reduction, k, without_replacement=True), margins / scales,
        _resolve_classes(classes, n_classes), max_block_elements)

    pool_size = class_sizes.sum(dim=1, keepdim=True)
    eligible = (class_sizes >= 2) & (pool_size - class_sizes >= k)  # a tuple needs k negatives for either loss
    if classes is not None:
        chosen = torch.zeros(n_classes, dtype=torch.bool, device=device)
        chosen[_resolve_classes(classes, n_classes)] = True
        eligible = eligible & chosen
    pairs = (class_sizes * (class_sizes - 1)).unsqueeze(1)
    nan = torch.full_like(first, math.nan)
    first = torch.where(eligible.unsqueeze(1), first / pairs.clamp(min=1), nan)
    second = torch.where(eligible.unsqueeze(1), second / pairs.clamp(min=1), nan)
    return _finish(first, second, scales, class_sizes, has_batch, has_axis)


def hieu_ledent_estimate(class_means: torch.Tensor, class_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-weighted estimate ``sum_r (N_r / N) U_r`` and the class mass it drops.

    Classes whose ``U_r`` is NaN (fewer than two points, or too few
    negatives) cannot contribute, so the estimate leaves out their mass
    ``sum (N_r / N)``, which is returned as the second value.

    Parameters
    ----------
    class_means : Tensor, shape (..., R)
        ``U_r``, for example ``ClassMoments.mean``.
    class_sizes : Tensor, shape (R,) or broadcastable to ``class_means``
        ``N_r``; with a loss axis, pass ``class_sizes.unsqueeze(-2)``.

    Returns
    -------
    estimate, dropped_mass : Tensor, shape (...)
    """
    sizes = torch.as_tensor(class_sizes, dtype=torch.float64, device=class_means.device)
    weights = sizes / sizes.sum(dim=-1, keepdim=True)
    weights = weights.expand_as(class_means)
    usable = ~torch.isnan(class_means)
    estimate = torch.where(usable, weights * class_means, torch.zeros_like(class_means)).sum(dim=-1)
    dropped = torch.where(usable, torch.zeros_like(weights), weights).sum(dim=-1)
    return estimate, dropped


# === Population risk of a discrete world === #


def population_class_risks(support: torch.Tensor, support_labels: torch.Tensor, class_probs, k: int, *,
                           point_probs=None, margin=1.0, scale=1.0, reduction: str = "hardest",
                           max_block_elements: int = 2**20) -> ClassMoments:
    """Exact class risks ``L_r`` of the hinge loss for a world with finitely many points.

    Class ``r`` draws its points from ``support[support_labels == r]`` with
    probabilities ``point_probs`` (uniform within the class by default).  The
    anchor and the positive are two independent draws from class ``r`` (they
    may coincide) and the ``k`` negatives are i.i.d. draws from the other
    classes, each class ``q`` with probability ``rho_q / (1 - rho_r)``: the
    collision-free population risk of Hieu and Ledent (2026), Definition 3.1,
    is ``sum_r rho_r L_r``.

    Parameters
    ----------
    support : Tensor, shape (S, d)
    support_labels : Tensor of int, shape (S,)
    class_probs : array_like, shape (R,)
    k : int
    point_probs : Tensor, shape (S,), optional
        Probabilities within each class; each class's entries sum to 1.
    margin, scale, reduction
        As in :func:`complete_class_ustatistics`.

    Returns
    -------
    ClassMoments
        ``mean`` contains ``L_r``, ``second_moment`` the population mean of the
        squared loss, ``class_sizes`` the class probabilities.
    """
    check_negatives(k)
    _check_reduction(reduction)
    rho = torch.as_tensor(class_probs, dtype=torch.float64, device=support.device)
    n_classes = _check_points(support, support_labels, rho.shape[0])
    if rho.ndim != 1 or torch.any(rho <= 0) or abs(float(rho.sum()) - 1) > 1e-9:
        raise ValueError("class_probs must be a 1-D vector of positive probabilities that sum to 1")
    device = support.device
    support = support.to(torch.float64)
    support_labels = support_labels.to(device)
    within = _within_class_probabilities(point_probs, support_labels, n_classes, device)
    margins, scales, has_axis = _loss_parameters(margin, scale, device)
    masses = (rho[support_labels] * within).unsqueeze(0)  # (1, S)

    def pair_weights(anchors, members):
        return (within[anchors].unsqueeze(1) * within[members].unsqueeze(0)).unsqueeze(0)

    negatives_per_tuple = k if reduction == "hardest" else 1
    first, second = _class_hinge_moments(
        support, support_labels, n_classes, masses, pair_weights, _iid_max_cdf(negatives_per_tuple),
        _square_of_loss(reduction, k, without_replacement=False), margins / scales, list(range(n_classes)),
        max_block_elements)
    return _finish(first, second, scales, rho.unsqueeze(0), False, has_axis)


def _within_class_probabilities(point_probs, labels: torch.Tensor, n_classes: int, device) -> torch.Tensor:
    if point_probs is None:
        sizes = torch.bincount(labels, minlength=n_classes).to(torch.float64)
        if torch.any(sizes == 0):
            raise ValueError("every class needs at least one support point")
        return 1 / sizes[labels]
    within = torch.as_tensor(point_probs, dtype=torch.float64, device=device)
    if within.shape != labels.shape or torch.any(within < 0):
        raise ValueError(f"point_probs must be non-negative with shape {tuple(labels.shape)}")
    sums = torch.zeros(n_classes, dtype=torch.float64, device=device).index_add_(0, labels, within)
    if not torch.allclose(sums, torch.ones_like(sums), rtol=0, atol=1e-9):
        raise ValueError("point_probs must sum to 1 within every class")
    return within


# === Brute force, for checking === #


def _tuple_loss(scores: torch.Tensor, margin: float, reduction: str) -> torch.Tensor:
    if reduction == "hardest":
        return torch.clamp(margin - scores.min(dim=-1).values, min=0)
    return torch.clamp(margin - scores, min=0).mean(dim=-1)


def brute_force_class_ustatistics(embeddings: torch.Tensor, labels: torch.Tensor, k: int, *,
                                  margin: float = 1.0, scale: float = 1.0, reduction: str = "hardest",
                                  n_classes: int | None = None) -> ClassMoments:
    """``U_r`` by enumerating every anchor, positive and ``k``-subset of negatives.

    Meant for pools of a few dozen points: it evaluates
    :func:`brute_force_evaluation_count` losses.

    Returns
    -------
    ClassMoments
        Means and second moments of shape (R,), NaN for classes with fewer
        than two points or fewer than ``k`` negatives, and the class sizes.
    """
    check_negatives(k)
    _check_reduction(reduction)
    n_classes = _check_points(embeddings, labels, n_classes)
    gram = embeddings.to(torch.float64) @ embeddings.to(torch.float64).T
    mean = torch.full((n_classes,), math.nan, dtype=torch.float64, device=embeddings.device)
    second_moment = mean.clone()
    for r in range(n_classes):
        members = torch.nonzero(labels == r).flatten()
        others = torch.nonzero(labels != r).flatten()
        if members.numel() < 2 or others.numel() < k:
            continue
        pairs = torch.tensor([(a, p) for a in members.tolist() for p in members.tolist() if a != p])
        subsets = others[torch.tensor(list(itertools.combinations(range(others.numel()), k)))]  # (C, k)
        anchors, positives = pairs[:, 0], pairs[:, 1]
        positive_similarity = gram[anchors, positives].view(-1, 1, 1)
        negative_similarity = gram[anchors.view(-1, 1, 1), subsets.unsqueeze(0)]  # (P, C, k)
        losses = _tuple_loss(scale * (positive_similarity - negative_similarity), margin, reduction)
        mean[r] = losses.mean()
        second_moment[r] = (losses**2).mean()
    class_sizes = torch.bincount(labels, minlength=n_classes).to(torch.float64)
    return ClassMoments(mean, second_moment, class_sizes)


def brute_force_population_risks(support: torch.Tensor, support_labels: torch.Tensor, class_probs, k: int, *,
                                 point_probs=None, margin: float = 1.0, scale: float = 1.0,
                                 reduction: str = "hardest") -> ClassMoments:
    """``L_r`` by summing over every (anchor, positive, negative_1..k) support tuple.

    The sum has ``m_r**2 (S - m_r)**k`` terms for class ``r``, so keep the
    world tiny.

    Returns
    -------
    ClassMoments
        Means and second moments of shape (R,) and the class probabilities.
    """
    check_negatives(k)
    _check_reduction(reduction)
    rho = torch.as_tensor(class_probs, dtype=torch.float64)
    n_classes = _check_points(support, support_labels, rho.shape[0])
    within = _within_class_probabilities(point_probs, support_labels, n_classes, support.device)
    gram = support.to(torch.float64) @ support.to(torch.float64).T
    masses = rho[support_labels] * within
    mean = torch.empty(n_classes, dtype=torch.float64)
    second_moment = torch.empty(n_classes, dtype=torch.float64)
    for r in range(n_classes):
        members = torch.nonzero(support_labels == r).flatten()
        others = torch.nonzero(support_labels != r).flatten()
        draws = others[torch.tensor(list(itertools.product(range(others.numel()), repeat=k)))]  # (T, k)
        draw_probability = (masses[draws] / (1 - rho[r])).prod(dim=1)  # (T,)
        anchors = members.repeat_interleave(members.numel())
        positives = members.repeat(members.numel())
        pair_probability = within[anchors] * within[positives]
        scores = scale * (gram[anchors, positives].view(-1, 1, 1) - gram[anchors.view(-1, 1, 1), draws.unsqueeze(0)])
        losses = _tuple_loss(scores, margin, reduction)  # (P, T)
        weights = pair_probability.view(-1, 1) * draw_probability.view(1, -1)
        mean[r] = (weights * losses).sum()
        second_moment[r] = (weights * losses**2).sum()
    return ClassMoments(mean, second_moment, rho)


def brute_force_evaluation_count(class_sizes, k: int) -> int:
    """Number of loss evaluations, ``sum_r N_r (N_r - 1) C(N - N_r, k)``, of the brute-force U-statistics."""
    check_negatives(k)
    sizes = [int(n) for n in torch.as_tensor(class_sizes).flatten().tolist()]
    total = sum(sizes)
    return sum(n * (n - 1) * math.comb(total - n, k) for n in sizes if n >= 2)
