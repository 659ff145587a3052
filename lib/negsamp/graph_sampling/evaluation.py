"""Discrimination, monotonicity and downstream metrics of a node-pair score.

The two properties follow our formalisation, in the spirit of Yan et al.
[1]_ (only the paper's abstract was available to us):

* discrimination: for each anchor ``u``, nodes in a set ``S(u)`` (its
  relevant set ``R(u)`` or its top-K list) score above the other nodes.  Its
  measure is the per-anchor ROC AUC of ``s(u, .)`` between ``S(u)`` and the
  rest, averaged over anchors.
* monotonicity: within ``S(u)``, a closer node scores higher.  Its measure
  is Kendall's tau between ``s(u, .)`` and ``p_d(. | u)`` over the pairs of
  ``S(u)`` whose proximities differ, averaged over anchors.

References
----------
.. [1] Y. Yan, B. Jing, L. Liu, R. Wang, J. Li, T. Abdelzaher and H. Tong,
   "Reconciling competing sampling strategies of network embedding",
   NeurIPS 2023.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..metrics import hit_at_k, ndcg_at_k, roc_auc


def _check_square(name: str, matrix: torch.Tensor, n: int | None = None) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or (n is not None and matrix.shape[0] != n):
        raise ValueError(f"{name} must be an (n, n) matrix matching the scores, got shape {tuple(matrix.shape)}")


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """Return the ``(n, n - 1)`` matrix of off-diagonal entries, row by row."""
    n = matrix.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[keep].view(n, n - 1)


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Return the rank of each entry within its row, from 1, with tied entries sharing their mean rank."""
    values = values.contiguous()
    ordered = torch.sort(values, dim=1).values
    below = torch.searchsorted(ordered, values, right=False).double()
    at_or_below = torch.searchsorted(ordered, values, right=True).double()
    return below + (at_or_below - below + 1) / 2


def discrimination_per_anchor(scores: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Return, for every anchor, the ROC AUC of its scores between ``members`` and the other nodes.

    The anchor itself is excluded and ties count one half.  The AUC comes
    from the average ranks of each row (the Mann-Whitney statistic), so the
    cost is ``O(n**2 log n)``.  Off-diagonal scores may be infinite but
    not NaN, and the diagonal is ignored.  Rows whose member set or its
    complement is empty give NaN.

    Parameters
    ----------
    scores : Tensor of shape ``(n, n)``
        ``s(u, v)``.
    members : bool Tensor of shape ``(n, n)``
        ``S(u)``, for example :func:`relevant_mask` or :func:`top_k_mask`.

    Returns
    -------
    Tensor of shape ``(n,)``, float64.
    """
    _check_square("scores", scores)
    _check_square("members", members, scores.shape[0])
    values = _off_diagonal(scores).double().contiguous()
    if torch.isnan(values).any():
        raise ValueError("off-diagonal scores contain NaN; replace untrained pairs by a finite value or -inf first")
    inside = _off_diagonal(members)
    average_rank = _average_ranks(values)
    n_inside = inside.sum(dim=1).double()
    n_outside = inside.shape[1] - n_inside
    rank_sum = (average_rank * inside).sum(dim=1)
    wins = rank_sum - n_inside * (n_inside + 1) / 2
    pairs = n_inside * n_outside
    return torch.where(pairs > 0, wins / pairs.clamp(min=1), torch.full_like(wins, math.nan))


def monotonicity_per_anchor(scores: torch.Tensor, proximity: torch.Tensor, members: torch.Tensor,
                            rtol: float = 1e-9) -> torch.Tensor:
    """Return, for every anchor, Kendall's tau between scores and proximity over ``members``.

    Only pairs of members with different proximity count, and proximities
    within a relative ``rtol`` of each other count as equal, so rounding in
    the matrix powers does not split mathematically tied nodes.  A pair is
    concordant when the closer node scores strictly higher, discordant when
    it scores strictly lower, and neither on a score tie.  The value is
    ``(concordant - discordant) / pairs``, in ``[-1, 1]``; rows with no such
    pair give NaN.  The members of each row are gathered first, so the cost
    is ``O(n m**2)`` for at most ``m`` members a row.

    Returns
    -------
    Tensor of shape ``(n,)``, float64.
    """
    _check_square("scores", scores)
    _check_square("proximity", proximity, scores.shape[0])
    _check_square("members", members, scores.shape[0])
    inside = _off_diagonal(members)
    width = max(1, int(inside.sum(dim=1).max()))
    columns = torch.sort(inside.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :width]
    valid = inside.gather(1, columns)
    s = _off_diagonal(scores).double().gather(1, columns)
    p = _off_diagonal(proximity).double().gather(1, columns)
    both = valid.unsqueeze(2) & valid.unsqueeze(1)
    closer = (p.unsqueeze(2) > p.unsqueeze(1) * (1 + rtol)) & both
    sign = torch.sign(s.unsqueeze(2) - s.unsqueeze(1)).nan_to_num(0.0)
    pairs = closer.sum(dim=(1, 2)).double()
    agreement = (sign * closer).sum(dim=(1, 2))
    return torch.where(pairs > 0, agreement / pairs.clamp(min=1), torch.full_like(agreement, math.nan))


def rank_correlation_per_anchor(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Return, for every anchor, Spearman's rank correlation between two score rows.

    The anchor itself is excluded and ties get average ranks.

    Returns
    -------
    Tensor of shape ``(n,)``, float64.
    """
    _check_square("scores", scores)
    _check_square("reference", reference, scores.shape[0])
    first = _average_ranks(_off_diagonal(scores).double())
    second = _average_ranks(_off_diagonal(reference).double())
    first = first - first.mean(dim=1, keepdim=True)
    second = second - second.mean(dim=1, keepdim=True)
    return (first * second).sum(dim=1) / torch.sqrt((first**2).sum(dim=1) * (second**2).sum(dim=1))


def paired_effect(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Return the mean paired difference ``first - second`` over graphs and replicates, with its standard error.

    Parameters
    ----------
    first, second : arrays of shape ``(graphs, replicates)``
        A measure under two settings.  Replicate ``r`` of graph ``g`` uses
        the same seed under both settings, so the difference is paired.

    Returns
    -------
    effect : float
        The mean over graphs of each graph's mean difference.
    stderr : float
        Its standard error, from the spread of the differences over
        replicates within each graph (replicates and graphs independent).
    """
    first = np.asarray(first, dtype=float)
    second = np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 2 or first.shape[1] < 2:
        raise ValueError(f"need two (graphs, replicates >= 2) arrays of equal shape, got {first.shape} and {second.shape}")
    difference = first - second
    graphs, replicates = difference.shape
    per_graph_stderr = difference.std(axis=1, ddof=1) / math.sqrt(replicates)
    return float(difference.mean()), float(math.sqrt(np.sum(per_graph_stderr**2)) / graphs)


def sampling_properties(scores: torch.Tensor, proximity: torch.Tensor, top: torch.Tensor) -> dict[str, float]:
    """Return the four property measures, each averaged over the anchors where it is defined.

    Keys: ``disc_all`` and ``mono_all`` over the relevant set ``R(u)``,
    ``disc_k`` and ``mono_k`` over the top-K list ``top``.
    """
    relevant = (proximity > 0) & ~torch.eye(proximity.shape[0], dtype=torch.bool, device=proximity.device)

    def mean(values: torch.Tensor) -> float:
        return float(torch.nanmean(values))

    return {
        "disc_all": mean(discrimination_per_anchor(scores, relevant)),
        "mono_all": mean(monotonicity_per_anchor(scores, proximity, relevant)),
        "disc_k": mean(discrimination_per_anchor(scores, top)),
        "mono_k": mean(monotonicity_per_anchor(scores, proximity, top)),
    }


# === Held-out edges === #


def split_edges(adjacency: torch.Tensor, held_out_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out a share of the edges while keeping the training graph connected.

    A random spanning forest, the minimum spanning tree under random edge
    weights, always stays in the training graph.  The held-out edges are
    drawn uniformly among the other edges.

    Parameters
    ----------
    adjacency : Tensor of shape ``(n, n)``
        Symmetric 0/1 (or weighted) adjacency.
    held_out_fraction : float
        Share of all edges to hold out, in ``(0, 1)``.  It is capped by the
        number of edges outside the spanning forest.
    seed : int
        Seed of the random spanning forest and of the draw.

    Returns
    -------
    train_adjacency : Tensor of shape ``(n, n)``
    held_out : LongTensor of shape ``(m, 2)``
        Held-out edges ``(u, v)`` with ``u < v``.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must lie in (0, 1), got {held_out_fraction!r}")
    _check_square("adjacency", adjacency)
    rng = np.random.default_rng(seed)
    dense = adjacency.detach().cpu().numpy()
    rows, cols = np.nonzero(np.triu(dense, k=1))
    random_weights = csr_matrix((rng.random(rows.size) + 1e-3, (rows, cols)), shape=dense.shape)
    tree = minimum_spanning_tree(random_weights).tocoo()
    n = dense.shape[0]
    tree_codes = np.minimum(tree.row, tree.col) * n + np.maximum(tree.row, tree.col)
    is_tree_edge = np.isin(rows * n + cols, tree_codes)
    candidates = np.flatnonzero(~is_tree_edge)
    wanted = min(int(round(held_out_fraction * rows.size)), candidates.size)
    chosen = rng.choice(candidates, size=wanted, replace=False)
    held_out = torch.as_tensor(np.stack([rows[chosen], cols[chosen]], axis=1), dtype=torch.long)
    train = adjacency.clone()
    index = held_out.to(adjacency.device)
    train[index[:, 0], index[:, 1]] = 0
    train[index[:, 1], index[:, 0]] = 0
    return train, held_out


def sample_non_edges(adjacency: torch.Tensor, count: int, seed: int = 0) -> torch.LongTensor:
    """Draw ``count`` distinct node pairs ``(u, v)``, ``u < v``, that are not edges of ``adjacency``."""
    _check_square("adjacency", adjacency)
    n = adjacency.shape[0]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    free = torch.nonzero(upper & (adjacency.detach().cpu() == 0))
    if count > free.shape[0]:
        raise ValueError(f"requested {count} non-edges but the graph has only {free.shape[0]}; request fewer")
    generator = torch.Generator().manual_seed(seed)
    return free[torch.randperm(free.shape[0], generator=generator)[:count]]


def link_prediction_auc(scores: torch.Tensor, edges: torch.Tensor, non_edges: torch.Tensor) -> float:
    """Return the ROC AUC of the symmetrised score between held-out edges and non-edges."""
    symmetric = 0.5 * (scores + scores.T)
    edges = edges.to(scores.device)
    non_edges = non_edges.to(scores.device)
    return roc_auc(symmetric[edges[:, 0], edges[:, 1]], symmetric[non_edges[:, 0], non_edges[:, 1]])


def recommendation_metrics(scores: torch.Tensor, train_adjacency: torch.Tensor, held_out: torch.Tensor,
                           k: int = 10) -> dict[str, float]:
    """Return mean Hit@k and NDCG@k for recommending held-out neighbours.

    Every node with at least one held-out edge ranks, by the symmetrised
    score, all nodes that are neither itself nor a training neighbour.  Its
    held-out neighbours are the relevant items, and both directions of each
    held-out edge count.
    """
    symmetric = 0.5 * (scores + scores.T)
    n = scores.shape[0]
    held_out = held_out.to(scores.device)
    relevant = torch.zeros(n, n, dtype=torch.bool, device=scores.device)
    relevant[held_out[:, 0], held_out[:, 1]] = True
    relevant[held_out[:, 1], held_out[:, 0]] = True
    excluded = (train_adjacency > 0) | torch.eye(n, dtype=torch.bool, device=scores.device)
    ranked = torch.where(excluded, torch.full_like(symmetric, -math.inf), symmetric)
    rows = relevant.any(dim=1)
    hits = hit_at_k(ranked[rows], relevant[rows], k)
    ndcg = ndcg_at_k(ranked[rows], relevant[rows].double(), k)
    return {"hit": float(hits.mean()), "ndcg": float(ndcg.mean()), "anchors": int(rows.sum())}
