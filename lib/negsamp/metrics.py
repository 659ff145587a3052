"""Ranking, retrieval and embedding-quality metrics shared by several chapters.

Functions take torch tensors (CPU or GPU) unless stated otherwise and
return Python floats or tensors on the input's device.
"""

from __future__ import annotations

import math

import torch


def roc_auc(scores_positive: torch.Tensor, scores_negative: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative, ties counting 1/2.

    Computed from ranks (the Mann-Whitney U statistic), in O((n + m) log(n + m)).
    """
    positive = scores_positive.reshape(-1).double()
    negative = scores_negative.reshape(-1).double()
    if positive.numel() == 0 or negative.numel() == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    scores = torch.cat([positive, negative])
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype, device=scores.device)
    # Average the ranks within each group of tied scores.
    unique, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    average = ends - (counts.double() - 1) / 2
    ranks[order] = average[inverse]
    n, m = positive.numel(), negative.numel()
    u = ranks[:n].sum() - n * (n + 1) / 2
    return float(u / (n * m))


def _check_scores(scores: torch.Tensor, target: torch.Tensor, k: int) -> None:
    if scores.shape != target.shape or scores.ndim != 2:
        raise ValueError(f"scores and targets must be 2-D of equal shape, got {tuple(scores.shape)} and {tuple(target.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must lie in [1, {scores.shape[1]}], got {k}")


def recall_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row recall@k: the share of a row's relevant items that appear in its top ``k`` scores.

    ``scores`` and the boolean ``relevant`` have shape ``(users, items)``;
    rows without relevant items give NaN, so callers choose how to skip them.
    """
    _check_scores(scores, relevant, k)
    top = torch.topk(scores, k, dim=1).indices
    hits = relevant.gather(1, top).sum(dim=1).double()
    total = relevant.sum(dim=1).double()
    return torch.where(total > 0, hits / total.clamp(min=1), torch.full_like(hits, float("nan")))


def hit_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row hit@k: 1 if any relevant item is in the top ``k``, else 0 (NaN for rows with none)."""
    _check_scores(scores, relevant, k)
    top = torch.topk(scores, k, dim=1).indices
    hit = relevant.gather(1, top).any(dim=1).double()
    return torch.where(relevant.any(dim=1), hit, torch.full_like(hit, float("nan")))


def ndcg_at_k(scores: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row NDCG@k with graded gains and the ``1 / log2(rank + 1)`` discount.

    ``gains`` holds each item's non-negative gain (1/0 for binary relevance).
    The ideal ordering sorts by gain; rows whose gains are all zero give NaN.
    """
    _check_scores(scores, gains, k)
    if torch.any(gains < 0):
        raise ValueError("gains must be non-negative")
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=scores.device, dtype=torch.float64))
    top = torch.topk(scores, k, dim=1).indices
    dcg = (gains.gather(1, top).double() * discount).sum(dim=1)
    ideal = (torch.topk(gains.double(), k, dim=1).values * discount).sum(dim=1)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-300), torch.full_like(dcg, float("nan")))


def recall_at_k_retrieval(similarity: torch.Tensor, k: int) -> float:
    """Retrieval R@k: the share of queries whose match (the diagonal entry) ranks in the top ``k``.

    ``similarity[i, j]`` scores query ``i`` against candidate ``j``; ties
    count against the query (the match must beat every tied candidate).
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square, got {tuple(similarity.shape)}")
    correct = similarity.diagonal().unsqueeze(1)
    rank = (similarity >= correct).sum(dim=1)  # 1 = the match is strictly best
    return float((rank <= k).double().mean())


def knn_accuracy(embedding: torch.Tensor, labels: torch.Tensor, k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour classification accuracy in Euclidean distance.

    Each point's label is predicted by a majority vote of its ``k`` nearest
    other points (ties go to the smallest label).
    """
    n = embedding.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, {n - 1}], got {k}")
    points = embedding.double()
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(math.inf)
    neighbours = torch.topk(distances, k, dim=1, largest=False).indices
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(dim=1)
    predicted = votes.argmax(dim=1)
    return float((predicted == labels).double().mean())


def trustworthiness(high_dimensional, embedding, n_neighbors: int = 10) -> float:
    """Trustworthiness of an embedding (Venna and Kaski, 2001), computed by scikit-learn.

    Takes NumPy arrays or CPU tensors; 1 means no false neighbours.
    """
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    def to_numpy(values):
        return values.detach().cpu().numpy() if hasattr(values, "detach") else values

    return float(sklearn_trustworthiness(to_numpy(high_dimensional), to_numpy(embedding), n_neighbors=n_neighbors))


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an ROC AUC estimated from ``n_positive`` and ``n_negative`` scores.

    Uses the approximation of Hanley and McNeil (1982), which models the
    score distributions as exponential: with ``Q1 = A / (2 - A)`` and
    ``Q2 = 2 A**2 / (1 + A)``,
    ``SE**2 = (A (1 - A) + (n1 - 1)(Q1 - A**2) + (n2 - 1)(Q2 - A**2)) / (n1 n2)``.
    It measures how finely a test set of that size can resolve the AUC.
    """
    if not 0 <= auc <= 1:
        raise ValueError(f"auc must lie in [0, 1], got {auc!r}")
    if n_positive < 1 or n_negative < 1:
        raise ValueError(f"need at least one positive and one negative, got {n_positive} and {n_negative}")
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2))
    return math.sqrt(max(variance, 0.0) / (n_positive * n_negative))
def gallery_hit_at_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Per-query hit@k when every query has its own gallery whose match is column 0.

    ``scores`` has shape ``(..., gallery)``.  The result has shape ``(...)``
    and is 1.0 where the match ranks in the top ``k`` and 0.0 elsewhere.
    Ties count against the query, as in :func:`recall_at_k_retrieval`, so
    averaging the result over queries gives the gallery's R@k.
    """
    if scores.ndim < 1 or not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k must lie in [1, {scores.shape[-1] if scores.ndim else 0}], got {k}")
    rank = (scores >= scores[..., :1]).sum(dim=-1)  # 1 = the match is strictly best
    return (rank <= k).double()
def knn_correct(embedding: torch.Tensor, labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Per-point outcome of :func:`knn_accuracy`: whether the ``k``-nearest-neighbour vote gets each label right.

    Returns a boolean tensor of shape ``(n,)`` whose mean is
    ``knn_accuracy(embedding, labels, k)``; paired differences of two
    embeddings' outcomes give the standard error of their accuracy gap.
    """
    n = embedding.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, {n - 1}], got {k}")
    labels = labels.long()
    points = embedding.double()
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(math.inf)
    neighbours = torch.topk(distances, k, dim=1, largest=False).indices
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(dim=1)
    return votes.argmax(dim=1) == labels


def trustworthiness_per_point(high_dimensional: torch.Tensor, embedding: torch.Tensor,
                              n_neighbors: int = 10) -> torch.Tensor:
    """Per-point trustworthiness (Venna and Kaski, 2001), shape ``(n,)``; its mean is :func:`trustworthiness`.

    Point ``i`` scores ``1 - 2 / (k (2n - 3k - 1)) * sum_j (r(i, j) - k)`` over
    its ``k`` embedding neighbours ``j`` that are not among its ``k`` input
    neighbours, where ``r(i, j)`` is the rank of ``j`` by input distance from
    ``i`` (1 for the nearest other point).  Ties are broken by index, as in
    scikit-learn.
    """
    n = high_dimensional.shape[0]
    k = n_neighbors
    if embedding.shape[0] != n:
        raise ValueError(f"inputs have {n} rows but the embedding has {embedding.shape[0]}")
    if not 1 <= k < n / 2:
        raise ValueError(f"n_neighbors must lie in [1, n / 2), got {k} for n = {n}")
    high = high_dimensional.double()
    low = embedding.double().to(high.device)
    input_distances = torch.cdist(high, high)
    input_distances.fill_diagonal_(math.inf)
    order = torch.argsort(input_distances, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, n + 1, device=high.device).expand(n, n).contiguous())
    embedding_distances = torch.cdist(low, low)
    embedding_distances.fill_diagonal_(math.inf)
    embedding_neighbours = torch.topk(embedding_distances, k, dim=1, largest=False).indices
    excess = (ranks.gather(1, embedding_neighbours) - k).clamp_min(0).double()
    return 1.0 - 2.0 / (k * (2.0 * n - 3.0 * k - 1.0)) * excess.sum(dim=1)
