"""Scoring, probes and representational similarity for the LM/VLM minimal pair.

All functions are batched over a leading model axis ``M`` where they take
model outputs, and return tensors on the input's device.
"""

from __future__ import annotations

import math

import torch

from .model import Params, forward
from .world import ANSWER_POSITION, NO, QUERY_POSITION, YES

# === Answers and strict scoring === #


@torch.no_grad()
def answer_margins(params: Params, tokens: torch.Tensor, heads: int,
                   images: torch.Tensor | None = None) -> torch.Tensor:
    """Logit of ``yes`` minus logit of ``no`` at the answer position, for every model and sequence.

    Parameters
    ----------
    tokens : LongTensor, shape ``(..., 5)``
        The same sequences for every model; the answer token is ignored.
    images : Tensor, shape ``(..., visual_dim)``, optional
        One image per sequence, for sequences with an ``<img>`` token.

    Returns
    -------
    Tensor, shape ``(M, ...)``
        Positive means the model answers yes.
    """
    n_models = params["embedding"].shape[0]
    batch_shape = tokens.shape[:-1]
    flat = tokens.reshape(1, -1, tokens.shape[-1]).expand(n_models, -1, -1)
    flat_images = None if images is None else images.reshape(1, -1, images.shape[-1]).expand(n_models, -1, -1)
    logits, _ = forward(params, flat, heads, flat_images)
    answer = logits[:, :, ANSWER_POSITION]
    return (answer[..., YES] - answer[..., NO]).reshape(n_models, *batch_shape)


def strict_unit_correct(margins: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Whether each unit is answered correctly under strict scoring.

    A unit is its positive question (slot 0, answer yes) together with all
    its negative-sampled variants (answer no); it counts only if the model
    says yes to the positive *and* no to every valid negative.

    Parameters
    ----------
    margins : Tensor, shape ``(..., 1 + K)``
        Yes-minus-no margins, slot 0 the positive.
    valid : BoolTensor, broadcastable to ``margins``
        Which slots hold a real question.

    Returns
    -------
    BoolTensor, shape ``(...)``
    """
    if margins.shape[-1] < 2:
        raise ValueError(f"a unit needs a positive and at least one negative, got last dimension {margins.shape[-1]}")
    valid = valid.expand_as(margins)
    positive_right = margins[..., 0] > 0
    negatives_right = ((margins[..., 1:] < 0) | ~valid[..., 1:]).all(dim=-1)
    return positive_right & negatives_right


def overall_accuracy(correct: torch.Tensor) -> torch.Tensor:
    """Fraction of correct units over leaves and hops; ``correct`` has shape ``(M, n_leaves, n_hops)``."""
    return correct.double().mean(dim=(1, 2))


def conditional_accuracy(correct: torch.Tensor) -> torch.Tensor:
    """Accuracy at hops above 0, counting only leaves whose hop-0 unit is correct; shape ``(M,)``.

    A model with no correct hop-0 unit gets NaN.
    """
    base = correct[..., 0:1].double()
    upper = correct[..., 1:].double()
    return (base * upper).sum(dim=(1, 2)) / (base.sum(dim=(1, 2)) * upper.shape[-1])


def hierarchical_consistency(correct: torch.Tensor) -> torch.Tensor:
    """Fraction of leaves whose whole chain of units, hop 0 to the top, is correct; shape ``(M,)``."""
    return correct.all(dim=-1).double().mean(dim=1)


# === Representations === #


@torch.no_grad()
def question_representations(params: Params, tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """Final hidden state at the last question token (the queried concept), shape ``(M, N, dim)``.

    ``tokens`` has shape ``(N, 5)`` and is shared by every model.
    """
    n_models = params["embedding"].shape[0]
    _, hidden = forward(params, tokens.unsqueeze(0).expand(n_models, -1, -1), heads)
    return hidden[:, :, QUERY_POSITION]


def cosine_similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between all rows, ``(..., n, d) -> (..., n, n)``."""
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.transpose(-1, -2)


def cosine_separation(representations: torch.Tensor, is_taxonomic: torch.Tensor) -> torch.Tensor:
    """Mean within-group minus mean between-group cosine similarity of centred representations.

    The two groups are the questions whose concepts stand in a taxonomic
    relation and those whose concepts do not.  The within-group term averages
    the two groups' mean pairwise similarities (self-pairs excluded).  Zero
    means the groups are not separated; the value is at most 2.

    Parameters
    ----------
    representations : Tensor, shape ``(M, N, d)``
    is_taxonomic : BoolTensor, shape ``(N,)``

    Returns
    -------
    Tensor, shape ``(M,)``
    """
    group = is_taxonomic.bool()
    if group.all() or not group.any() or min(int(group.sum()), int((~group).sum())) < 2:
        raise ValueError("cosine_separation needs at least two representations in each group")
    centred = representations - representations.mean(dim=1, keepdim=True)
    similarity = cosine_similarity_matrix(centred)
    off_diagonal = ~torch.eye(len(group), dtype=torch.bool, device=similarity.device)
    group = group.to(similarity.device)

    def mean_over(mask):
        return (similarity * mask).sum(dim=(1, 2)) / mask.sum()

    within_taxonomic = mean_over(group[:, None] & group[None, :] & off_diagonal)
    within_other = mean_over(~group[:, None] & ~group[None, :] & off_diagonal)
    between = mean_over(group[:, None] & ~group[None, :])
    return (within_taxonomic + within_other) / 2 - between


# === Linear probe === #


def ridge_loo_predictions(features: torch.Tensor, labels: torch.Tensor, penalty: float = 0.1) -> torch.Tensor:
    """Leave-one-out outputs of a ridge-regression probe, computed exactly without refitting.

    The probe regresses one-hot labels on the features, centred once on all
    rows, plus an intercept column, with ridge penalty
    ``lam = penalty * mean squared feature norm`` (so the result does not
    depend on the features' scale).  With hat matrix
    ``H = X (X'X + lam I)^-1 X'`` the output for row ``i`` of the fit
    without row ``i`` is ``(yhat_i - H_ii y_i) / (1 - H_ii)``; the intercept is
    penalised too, so this equals refitting on the other rows.

    Parameters
    ----------
    features : Tensor, shape ``(M, N, d)``
    labels : LongTensor, shape ``(N,)``
        Class indices ``0..C-1``.
    penalty : float
        Ridge penalty relative to the mean squared feature norm; must be > 0.

    Returns
    -------
    Tensor, shape ``(M, N, C)``, float64
        Held-out outputs, one score per class.
    """
    if penalty <= 0:
        raise ValueError(f"penalty must be > 0, got {penalty!r}")
    if features.ndim != 3 or features.shape[1] != len(labels):
        raise ValueError(f"features must be (M, N, d) with N = len(labels) = {len(labels)}, got {tuple(features.shape)}")
    x = features.double() - features.double().mean(dim=1, keepdim=True)
    scale = x.pow(2).sum(dim=-1).mean(dim=1)  # (M,)
    x = torch.cat([x, torch.ones(*x.shape[:2], 1, dtype=x.dtype, device=x.device)], dim=-1)
    targets = torch.nn.functional.one_hot(labels.to(x.device)).double()
    identity = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    gram = x.transpose(1, 2) @ x + penalty * scale[:, None, None] * identity
    hat = x @ torch.linalg.solve(gram, x.transpose(1, 2))
    leverage = torch.diagonal(hat, dim1=1, dim2=2).unsqueeze(-1)
    return (hat @ targets - leverage * targets) / (1 - leverage)


def ridge_loo_accuracy(features: torch.Tensor, labels: torch.Tensor, penalty: float = 0.1) -> torch.Tensor:
    """Leave-one-out accuracy of the ridge probe of :func:`ridge_loo_predictions`, shape ``(M,)``.

    The probe predicts the class with the largest held-out output.
    """
    held_out = ridge_loo_predictions(features, labels, penalty)
    return (held_out.argmax(dim=-1) == labels.to(held_out.device)).double().mean(dim=1)


# === Representational similarity analysis === #


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along the last axis, tied values sharing the mean of their ranks (as scipy's ``rankdata``)."""
    ordered, _ = torch.sort(values, dim=-1)
    below = torch.searchsorted(ordered.contiguous(), values.contiguous(), right=False)
    up_to = torch.searchsorted(ordered.contiguous(), values.contiguous(), right=True)
    return (below + up_to + 1).double() / 2


def spearman_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation along the last axis: the Pearson correlation of average ranks."""
    if x.shape[-1] != y.shape[-1] or x.shape[-1] < 2:
        raise ValueError(f"x and y need the same last dimension >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    rx = average_ranks(x)
    ry = average_ranks(y)
    rx = rx - rx.mean(dim=-1, keepdim=True)
    ry = ry - ry.mean(dim=-1, keepdim=True)
    return (rx * ry).sum(dim=-1) / torch.sqrt((rx**2).sum(dim=-1) * (ry**2).sum(dim=-1))


def upper_triangle(matrices: torch.Tensor) -> torch.Tensor:
    """Entries strictly above the diagonal, ``(..., n, n) -> (..., n (n - 1) / 2)``, row by row."""
    n = matrices.shape[-1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=matrices.device)
    return matrices[..., rows, cols]


def representational_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """RSA score: Spearman correlation of the upper triangles of two similarity matrices ``(..., n, n)``."""
    if first.shape[-2:] != second.shape[-2:]:
        raise ValueError(f"similarity matrices differ in size: {tuple(first.shape)} and {tuple(second.shape)}")
    return spearman_correlation(upper_triangle(first), upper_triangle(second))


def whiten(vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Centre the rows and map them by ``Cov^(-1/2)``, so their covariance becomes the identity; ``(M, V, d)``."""
    centred = vectors.double() - vectors.double().mean(dim=-2, keepdim=True)
    covariance = centred.transpose(-1, -2) @ centred / centred.shape[-2]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    inverse_root = eigenvectors @ torch.diag_embed(eigenvalues.clamp_min(eps) ** -0.5) @ eigenvectors.transpose(-1, -2)
    return centred @ inverse_root


def category_vectors(unembedding: torch.Tensor, leaf_rows: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """Build a vector per concept from the whitened unembedding rows of the leaves under it.

    The unembedding of the whole vocabulary is whitened, and each concept is
    represented by the mean whitened row of its descendant leaves (a leaf by
    its own row).  This is the category estimate of Park et al. (2024) with
    the within-category covariance replaced by the identity.

    Parameters
    ----------
    unembedding : Tensor, shape ``(M, V, d)``
    leaf_rows : LongTensor, shape ``(n_leaves,)``
        Vocabulary rows of the leaves.
    membership : Tensor, shape ``(n_concepts, n_leaves)``
        From :meth:`Taxonomy.descendant_leaves`.

    Returns
    -------
    Tensor, shape ``(M, n_concepts, d)``
    """
    whitened = whiten(unembedding)[:, leaf_rows.to(unembedding.device)]
    weights = membership.double().to(unembedding.device)
    return (weights / weights.sum(dim=1, keepdim=True)) @ whitened


# === Paired statistics over seeds === #


def paired_difference(treatment: torch.Tensor, control: torch.Tensor) -> tuple[float, float]:
    """Mean of ``treatment - control`` over seeds and its standard error ``sd / sqrt(n)``."""
    difference = (treatment.double() - control.double()).reshape(-1)
    if difference.numel() < 2:
        raise ValueError(f"a standard error needs at least two seeds, got {difference.numel()}")
    return float(difference.mean()), float(difference.std(unbiased=True) / math.sqrt(difference.numel()))


def gain_beyond_change(gain: torch.Tensor, change: torch.Tensor) -> tuple[float, float]:
    """Mean of ``gain - s * change`` over seeds and its standard error, where ``s`` is the sign of the mean change.

    Both arguments are per-seed paired differences (treatment minus control)
    on the same scale, such as the VLM's gain in question-answering accuracy
    and the change in a knowledge score.  The mean is ``mean(gain) -
    |mean(change)|``: positive when the gain exceeds the change in whichever
    direction the change went.  Each seed's ``gain_i - s * change_i`` enters
    the standard error, so the correlation of the two within a seed counts.

    NOTE: ``s`` is estimated from the same seeds, and the standard error
    ignores that choice.  It matters only when the mean change is within
    noise of zero, where either sign gives nearly the same mean.
    """
    gain = gain.double().reshape(-1)
    change = change.double().reshape(-1)
    if gain.shape != change.shape:
        raise ValueError(f"gain and change need one value per seed each, got {gain.numel()} and {change.numel()}")
    sign = 1.0 if float(change.mean()) >= 0 else -1.0
    return paired_difference(gain, sign * change)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean over seeds and its standard error ``sd / sqrt(n)``."""
    values = values.double().reshape(-1)
    if values.numel() < 2:
        raise ValueError(f"a standard error needs at least two seeds, got {values.numel()}")
    return float(values.mean()), float(values.std(unbiased=True) / math.sqrt(values.numel()))
