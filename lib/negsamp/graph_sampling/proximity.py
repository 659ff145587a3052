"""Node-pair proximity distributions on an undirected graph.

A proximity distribution ``p_d(v | u)`` measures how close node ``v`` is to
the anchor ``u``.  Every function here returns it as a dense ``(n, n)`` tensor
whose row ``u`` sums to 1 over ``v != u`` and whose diagonal is zero, so a
node is never its own positive.

References
----------
.. [1] B. Perozzi, R. Al-Rfou and S. Skiena, "DeepWalk: online learning of
   social representations", KDD 2014 (window co-occurrence of random walks).
.. [2] J. Qiu, Y. Dong, H. Ma, J. Li, K. Wang and J. Tang, "Network embedding
   as matrix factorization: unifying DeepWalk, LINE, PTE, and node2vec",
   WSDM 2018 (the closed form of the window co-occurrence).
.. [3] Y. Yan, B. Jing, L. Liu, R. Wang, J. Li, T. Abdelzaher and H. Tong,
   "Reconciling competing sampling strategies of network embedding",
   NeurIPS 2023 (proximity distributions as the target of an embedding).
"""

from __future__ import annotations

import torch


def adjacency_matrix(graph, weight: str | None = None, dtype: torch.dtype = torch.float64,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Return the dense symmetric adjacency matrix of an undirected networkx graph.

    Rows and columns follow ``list(graph.nodes)``.  Self-loops are dropped.

    Parameters
    ----------
    graph : networkx.Graph
        Undirected graph without isolated nodes.
    weight : str or None
        Edge attribute to use as weight; ``None`` gives a 0/1 matrix.

    Returns
    -------
    Tensor of shape ``(n, n)``.

    Raises
    ------
    ValueError
        If the graph is directed, has fewer than 3 nodes, or has an isolated
        node (its proximity row would be undefined).
    """
    import networkx as nx

    if graph.is_directed():
        raise ValueError("graph must be undirected; convert it with graph.to_undirected()")
    if graph.number_of_nodes() < 3:
        raise ValueError(f"graph must have at least 3 nodes, got {graph.number_of_nodes()}")
    array = nx.to_numpy_array(graph, weight=weight, dtype=float)
    matrix = torch.as_tensor(array, dtype=dtype, device=device)
    matrix.fill_diagonal_(0)
    isolated = torch.nonzero(matrix.sum(dim=1) == 0).flatten().tolist()
    if isolated:
        raise ValueError(f"nodes at positions {isolated[:10]} are isolated; "
                         "keep the largest connected component first")
    return matrix


def _check_adjacency(adjacency: torch.Tensor) -> None:
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {tuple(adjacency.shape)}")
    if torch.any(adjacency < 0):
        raise ValueError("adjacency must be non-negative")
    if not torch.allclose(adjacency, adjacency.T):
        raise ValueError("adjacency must be symmetric (an undirected graph)")
    if torch.any(adjacency.sum(dim=1) == 0):
        raise ValueError("adjacency has an isolated node; keep the largest connected component first")


def _without_self(matrix: torch.Tensor) -> torch.Tensor:
    """Zero the diagonal and renormalise each row to sum to 1."""
    matrix = matrix.clone()
    matrix.fill_diagonal_(0)
    return matrix / matrix.sum(dim=1, keepdim=True)


def transition_matrix(adjacency: torch.Tensor) -> torch.Tensor:
    """Return the random-walk transition matrix ``P = D^-1 A`` (rows sum to 1)."""
    _check_adjacency(adjacency)
    return adjacency / adjacency.sum(dim=1, keepdim=True)


def adjacency_proximity(adjacency: torch.Tensor) -> torch.Tensor:
    """Return the one-step proximity ``p_d(v | u) = A_uv / d_u`` (LINE's first-order target)."""
    return transition_matrix(adjacency)


def window_proximity(adjacency: torch.Tensor, window: int) -> torch.Tensor:
    """Return the random-walk co-occurrence proximity within ``window`` steps.

    ``p_d(v | u)`` is proportional to ``(1/w) sum_{r=1..w} (P^r)_uv`` with
    the return probability to ``u`` removed: the chance that a walk started
    at ``u`` visits ``v`` at a uniformly chosen step ``r <= w`` [1]_ [2]_.
    Its support is the set of nodes within ``w`` hops of ``u``.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    transition = transition_matrix(adjacency)
    power = transition
    total = transition.clone()
    for _ in range(window - 1):
        power = power @ transition
        total = total + power
    return _without_self(total / window)


def personalized_pagerank_proximity(adjacency: torch.Tensor, restart: float) -> torch.Tensor:
    """Return the personalised PageRank proximity ``restart (I - (1 - restart) P)^-1``.

    The row of ``u`` is the stationary distribution of a walk that returns
    to ``u`` with probability ``restart`` at each step, with ``u`` itself
    removed and the rest renormalised.  On a connected graph every other
    node has positive proximity.
    """
    if not 0 < restart < 1:
        raise ValueError(f"restart probability must lie in (0, 1), got {restart!r}")
    transition = transition_matrix(adjacency)
    identity = torch.eye(transition.shape[0], dtype=transition.dtype, device=transition.device)
    return _without_self(restart * torch.linalg.inv(identity - (1 - restart) * transition))


def relevant_mask(proximity: torch.Tensor) -> torch.Tensor:
    """Return the relevant set ``R(u) = {v : p_d(v | u) > 0}`` as a boolean ``(n, n)`` mask."""
    mask = proximity > 0
    mask.fill_diagonal_(False)
    return mask


def top_k_mask(proximity: torch.Tensor, top_k: int) -> torch.Tensor:
    """Return ``TopK(u)``, the ``top_k`` nodes of largest proximity to each anchor, as a boolean mask.

    Ties are broken towards the lower node index, so the mask is
    deterministic.  A row with fewer than ``top_k`` relevant nodes keeps
    only those.
    """
    n = proximity.shape[1]
    if not isinstance(top_k, int) or not 1 <= top_k < n:
        raise ValueError(f"top_k must be an integer in [1, {n - 1}], got {top_k!r}")
    values = proximity.clone()
    values.fill_diagonal_(-1.0)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :top_k]
    mask = torch.zeros_like(proximity, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask & relevant_mask(proximity)
