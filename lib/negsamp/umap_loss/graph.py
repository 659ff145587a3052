"""UMAP's input graph, the repulsive weights its sampling implies, and the effective target.

The graph stores the symmetrised memberships ``mu_ij`` as both directed
copies ``(i, j)`` and ``(j, i)`` of every edge, as umap-learn's COO matrix
does.  The degree of point ``i`` is ``d_i = sum_j mu_ij``.

umap-learn draws ``m`` uniform negatives per sampled edge, so, per epoch,
head ``i`` draws ``m d_i / mu_max`` negatives and hits a given other point
with probability ``1 / n``.  That makes the expected repulsion on ``y_i`` from
``y_j`` proportional to ``c_i = gamma m d_i / (n mu_max)``
(:func:`negative_sampling_rate`).  Stock umap-learn moves only the head of a
negative pair; the push-tail variant of Damrich and Hamprecht (2021) moves
both.  The symmetric repulsive weight of the effective loss
(:func:`repulsive_weight`) is ``gamma m (d_i + d_j) / (2n)`` for push-tail and
half of that for the symmetric part of the stock update.

References
----------
.. [1] S. Damrich and F. A. Hamprecht, "On UMAP's true loss function",
   NeurIPS 2021.
.. [2] umap-learn 0.5.12, ``umap/umap_.py`` (``fuzzy_simplicial_set``,
   ``simplicial_set_embedding``) and ``umap/layouts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VARIANTS = ("stock", "push_tail")


def check_variant(variant: str) -> str:
    """Return ``variant`` if it names an optimiser variant, else raise ``ValueError``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose 'stock' (umap-learn) or 'push_tail'")
    return variant


def _check_rates(n_points: int, negative_sample_rate: float, repulsion_strength: float) -> None:
    if int(n_points) < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points!r}")
    if not negative_sample_rate > 0:
        raise ValueError(f"negative_sample_rate must be positive, got {negative_sample_rate!r}")
    if not repulsion_strength > 0:
        raise ValueError(f"repulsion_strength must be positive, got {repulsion_strength!r}")


@dataclass(frozen=True)
class FuzzyGraph:
    """Symmetric membership graph of ``n_points`` points, stored as both directed copies of every edge.

    Attributes
    ----------
    heads, tails : Tensor
        Long tensors of shape ``(E,)``; edge ``e`` goes from ``heads[e]`` to ``tails[e]``.
    weights : Tensor
        Memberships ``mu`` in ``(0, 1]``, shape ``(E,)``.
    n_points : int
        Number of points ``n``.
    """

    heads: torch.Tensor
    tails: torch.Tensor
    weights: torch.Tensor
    n_points: int

    def __post_init__(self):
        if not (self.heads.shape == self.tails.shape == self.weights.shape and self.heads.ndim == 1):
            raise ValueError(
                f"heads, tails and weights must be 1-D of equal length, got shapes {tuple(self.heads.shape)}, "
                f"{tuple(self.tails.shape)} and {tuple(self.weights.shape)}"
            )
        if self.heads.numel() and bool((self.heads == self.tails).any()):
            raise ValueError("the graph has self-loops; UMAP graphs have mu_ii = 0, so drop them")
        if self.heads.numel() and bool((self.weights <= 0).any() or (self.weights > 1).any()):
            raise ValueError("edge weights must lie in (0, 1]; drop zero weights before building the graph")

    @classmethod
    def from_scipy(cls, matrix, *, dtype: torch.dtype = torch.float64, device=None,
                   symmetry_tolerance: float = 1e-6) -> "FuzzyGraph":
        """Build the graph from a symmetric SciPy sparse matrix such as umap-learn's ``graph_``.

        Zero entries are dropped.  Raises ``ValueError`` if the matrix is not
        square or not symmetric within ``symmetry_tolerance``.
        """
        coo = matrix.tocoo(copy=True)
        coo.sum_duplicates()
        coo.eliminate_zeros()
        if coo.shape[0] != coo.shape[1]:
            raise ValueError(f"the membership matrix must be square, got shape {coo.shape}")
        asymmetry = abs(coo - coo.T).max() if coo.nnz else 0.0
        if asymmetry > symmetry_tolerance:
            raise ValueError(f"the membership matrix is not symmetric (largest |mu_ij - mu_ji| = {asymmetry:.3g}); "
                             "symmetrise it with the fuzzy union first")
        as_long = lambda values: torch.as_tensor(values.astype("int64"), device=device)  # noqa: E731
        return cls(as_long(coo.row), as_long(coo.col),
                   torch.as_tensor(coo.data, dtype=dtype, device=device), int(coo.shape[0]))

    @property
    def max_weight(self) -> float:
        """Largest membership ``mu_max``; umap-learn's sampling periods are ``mu_max / mu``."""
        return float(self.weights.max())

    def degrees(self) -> torch.Tensor:
        """Return ``d_i = sum_j mu_ij``, shape ``(n_points,)``."""
        degree = torch.zeros(self.n_points, dtype=self.weights.dtype, device=self.weights.device)
        return degree.index_add_(0, self.heads, self.weights)

    def pruned(self, n_epochs: int) -> "FuzzyGraph":
        """Drop edges with ``mu < mu_max / n_epochs``, as umap-learn does before optimising.

        Such edges would be sampled less than once in ``n_epochs`` epochs, so
        the effective loss lives on the pruned graph.
        """
        if int(n_epochs) < 1:
            raise ValueError(f"n_epochs must be a positive integer, got {n_epochs!r}")
        keep = self.weights >= self.max_weight / float(n_epochs)
        return FuzzyGraph(self.heads[keep], self.tails[keep], self.weights[keep], self.n_points)

    def binarised(self) -> "FuzzyGraph":
        """Return the same edges with every membership set to 1."""
        return FuzzyGraph(self.heads, self.tails, torch.ones_like(self.weights), self.n_points)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "FuzzyGraph":
        """Return a copy on ``device`` with weights of ``dtype``."""
        return FuzzyGraph(self.heads.to(device), self.tails.to(device),
                          self.weights.to(device=device, dtype=dtype or self.weights.dtype), self.n_points)

    def dense(self) -> torch.Tensor:
        """Return the ``(n_points, n_points)`` membership matrix ``mu``."""
        matrix = torch.zeros(self.n_points, self.n_points, dtype=self.weights.dtype, device=self.weights.device)
        matrix[self.heads, self.tails] = self.weights
        return matrix

    def to_scipy(self):
        """Return the memberships as a SciPy CSR matrix (float32, as umap-learn stores them)."""
        import scipy.sparse

        return scipy.sparse.coo_matrix(
            (self.weights.detach().cpu().float().numpy(),
             (self.heads.cpu().numpy(), self.tails.cpu().numpy())),
            shape=(self.n_points, self.n_points),
        ).tocsr()


def negative_sampling_rate(degrees: torch.Tensor, n_points: int, negative_sample_rate: float = 5,
                           repulsion_strength: float = 1.0, max_weight: float = 1.0) -> torch.Tensor:
    """Return ``c_i = gamma m d_i / (n mu_max)``, the stock repulsion rate on ``y_i`` from each other point.

    Per epoch, head ``i`` of umap-learn's sampler draws ``m d_i / mu_max``
    uniform negatives, each equal to a given ``j`` with probability ``1 / n``,
    and each moves ``y_i`` by ``gamma`` times the gradient of ``log(1 - nu_ij)``.

    Parameters
    ----------
    degrees : Tensor
        Degrees ``d``, shape ``(n,)`` (or any shape).
    n_points : int
        Number of points ``n``.
    negative_sample_rate : float
        Negatives per positive sample ``m`` (umap-learn's ``negative_sample_rate``, default 5).
    repulsion_strength : float
        ``gamma`` (umap-learn's ``repulsion_strength``, default 1).
    max_weight : float
        ``mu_max``, the largest membership (1 for umap-learn's graphs).
    """
    _check_rates(n_points, negative_sample_rate, repulsion_strength)
    if not max_weight > 0:
        raise ValueError(f"max_weight must be positive, got {max_weight!r}")
    return repulsion_strength * negative_sample_rate * degrees / (n_points * max_weight)


def repulsive_weight(degrees_head: torch.Tensor, degrees_tail: torch.Tensor, n_points: int,
                     negative_sample_rate: float = 5, repulsion_strength: float = 1.0,
                     variant: str = "push_tail") -> torch.Tensor:
    """Return the symmetric repulsive weight ``w_ij`` of UMAP's effective loss.

    ``push_tail``: ``w_ij = gamma m (d_i + d_j) / (2n)``, the weight of the
    loss whose negative gradient is the push-tail variant's expected update
    (Damrich and Hamprecht, 2021).  ``stock``: half of it,
    ``gamma m (d_i + d_j) / (4n)``, the weight of the conservative part of
    stock umap-learn's expected update.  The rest of that update is
    proportional to ``d_i - d_j`` and is not the gradient of any loss.

    Parameters
    ----------
    degrees_head, degrees_tail : Tensor
        ``d_i`` and ``d_j``, broadcastable to each other.
    n_points : int
        Number of points ``n``.
    negative_sample_rate, repulsion_strength : float
        ``m`` and ``gamma``.
    variant : {'push_tail', 'stock'}
        Which optimiser the weight describes.
    """
    _check_rates(n_points, negative_sample_rate, repulsion_strength)
    share = {"push_tail": 2.0, "stock": 4.0}[check_variant(variant)]
    pair_rate = repulsion_strength * negative_sample_rate * (degrees_head + degrees_tail) / n_points
    return pair_rate / share


def effective_target(weights: torch.Tensor, repulsive_weights: torch.Tensor) -> torch.Tensor:
    """Return ``nu* = mu / (mu + w)``, the similarity that minimises a pair's effective loss.

    The per-pair loss ``-mu log nu - w log(1 - nu)`` is strictly convex in
    ``nu`` and has this minimiser; ``mu = 0`` gives 0.
    """
    if bool((weights < 0).any()) or bool((repulsive_weights <= 0).any()):
        raise ValueError("memberships must be non-negative and repulsive weights positive")
    return weights / (weights + repulsive_weights)
