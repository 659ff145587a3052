"""umap-learn as the reference implementation: its graph, its embedding, and its own epoch function.

These wrappers call umap-learn 0.5.12 (``umap.umap_`` and ``umap.layouts``).
Exact nearest neighbours come from scikit-learn and are passed in, so
umap-learn never builds (or compiles) its approximate nearest-neighbour index.
:func:`umap_learn_mean_epoch_update` calls the private, numba-compiled epoch
function ``_nb_optimize_layout_euclidean_single_epoch``, whose signature is
that of 0.5.12; other versions raise ``ImportError``.

References
----------
.. [1] L. McInnes, J. Healy and J. Melville, "UMAP: Uniform manifold
   approximation and projection for dimension reduction", arXiv:1802.03426, 2018.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

SUPPORTED_UMAP_VERSION = "0.5.12"
_INT32_MIN, _INT32_MAX = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1


def _umap():
    from importlib.metadata import version

    installed = version("umap-learn")
    if installed != SUPPORTED_UMAP_VERSION:
        raise ImportError(f"umap-learn {installed} is installed, but these wrappers call private functions of "
                          f"umap-learn {SUPPORTED_UMAP_VERSION}; install umap-learn=={SUPPORTED_UMAP_VERSION}")
    import umap.layouts
    import umap.umap_

    return umap.umap_, umap.layouts


@contextmanager
def _torch_thread_budget():
    """Run numba code on torch's CPU thread count, and give torch its count back afterwards.

    numba 0.68's OpenMP threading layer shares the OpenMP runtime with torch,
    and umap-learn's parallel graph functions reset the runtime's thread
    count to numba's.  Without this guard torch then runs on every core.  On
    a busy 2-core machine that made the torch sampler ten times slower.
    The BLAS that NumPy and SciPy call (spectral start) gets the same count.
    """
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def umap_learn_graph(data: np.ndarray, n_neighbors: int = 15, seed: int = 0):
    """Return umap-learn's fuzzy membership graph of ``data`` built from exact nearest neighbours.

    Calls ``umap.umap_.fuzzy_simplicial_set`` with Euclidean distances, the
    fuzzy union (``set_op_mix_ratio = 1``) and ``local_connectivity = 1``,
    the defaults of ``umap.UMAP``.

    Parameters
    ----------
    data : ndarray
        Points, shape ``(n, features)``; rows must be distinct, because each
        point is expected to be its own first neighbour.
    n_neighbors : int
        ``k``, counting the point itself, as umap-learn does.
    seed : int
        Seed of the ``RandomState`` umap-learn receives.

    Returns
    -------
    scipy.sparse.csr_matrix
        Symmetric memberships ``mu``, shape ``(n, n)``.
    """
    from sklearn.neighbors import NearestNeighbors

    umap_, _ = _umap()
    data = np.asarray(data, dtype=np.float32)
    if not 2 <= n_neighbors < data.shape[0]:
        raise ValueError(f"n_neighbors must lie in [2, {data.shape[0] - 1}], got {n_neighbors!r}")
    distances, indices = NearestNeighbors(n_neighbors=n_neighbors).fit(data).kneighbors(data)
    if not np.array_equal(indices[:, 0], np.arange(data.shape[0])):
        raise ValueError("some points are not their own nearest neighbour (duplicate rows?); remove duplicates")
    with _torch_thread_budget():
        graph, _, _ = umap_.fuzzy_simplicial_set(data, n_neighbors, np.random.RandomState(seed), "euclidean",
                                                 knn_indices=indices, knn_dists=distances.astype(np.float32))
    return graph.tocsr()


def umap_learn_spectral_init(data: np.ndarray, graph, seed: int = 0) -> np.ndarray:
    """Return umap-learn's spectral initialisation, scaled into the box ``[0, 10]**2`` as it optimises it.

    Passing the result as ``init`` to :func:`umap_learn_embedding` reproduces
    umap-learn's own ``init="spectral"`` start, so the same start can be
    given to another optimiser.
    """
    umap_, _ = _umap()
    from umap.spectral import spectral_layout

    random_state = np.random.RandomState(seed)
    with _torch_thread_budget():
        layout = spectral_layout(data, graph, 2, random_state, metric="euclidean", metric_kwds={})
    layout = umap_.noisy_scale_coords(layout, random_state, max_coord=10, noise=0.0001)
    low, high = layout.min(0), layout.max(0)
    return (10.0 * (layout - low) / (high - low)).astype(np.float32, order="C")


def umap_learn_embedding(data: np.ndarray, graph, init, a: float, b: float, seed: int = 0,
                         n_epochs: int | None = None, negative_sample_rate: int = 5,
                         repulsion_strength: float = 1.0, learning_rate: float = 1.0) -> np.ndarray:
    """Return umap-learn's 2-D embedding of ``graph`` (``umap.umap_.simplicial_set_embedding``).

    This is what ``umap.UMAP(random_state=seed).fit`` runs after building the
    graph: pruning, the edge schedule, sequential in-place SGD with head-only
    repulsion, and ``n_epochs = 500`` below 10,000 points when ``None``.

    Parameters
    ----------
    data : ndarray
        The points (only used by a spectral start).
    graph : scipy.sparse matrix
        Memberships; a copy is used, because umap-learn prunes in place.
    init : {'spectral', 'random'} or ndarray of shape (n, 2)
        Start; an array is rescaled into ``[0, 10]**2`` by umap-learn.
    a, b : float
        Curve parameters of ``nu``.
    seed : int
        Seed of the ``RandomState``; it also makes umap-learn run sequentially.
    n_epochs, negative_sample_rate, repulsion_strength, learning_rate
        umap-learn's ``n_epochs``, ``negative_sample_rate``, ``repulsion_strength`` and ``learning_rate``.
    """
    umap_, _ = _umap()
    with _torch_thread_budget():
        embedding, _ = umap_.simplicial_set_embedding(
            data, graph.copy(), 2, learning_rate, a, b, repulsion_strength, negative_sample_rate, n_epochs,
            init, np.random.RandomState(seed), "euclidean", {}, False, {}, False,
        )
    return np.asarray(embedding)


def umap_learn_mean_epoch_update(embedding: np.ndarray, graph, a: float, b: float, n_epochs: int,
                                 schedule_epochs: int = 500, negative_sample_rate: int = 5,
                                 repulsion_strength: float = 1.0, learning_rate: float = 1e-3,
                                 batches: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run umap-learn's own epoch function from a frozen embedding and average its displacement.

    Each epoch starts from ``embedding`` again; the edge schedule and the
    per-point random states carry over between epochs, as in a real run.
    The displacement of every epoch, divided by ``learning_rate``, estimates
    the expected update of :func:`~negsamp.umap_loss.losses.expected_update`.

    Parameters
    ----------
    embedding : ndarray
        Frozen positions, shape ``(n, 2)``.
    graph : scipy.sparse matrix
        Memberships; pruned at ``mu_max / schedule_epochs`` as umap-learn prunes them.
    a, b : float
        Curve parameters.
    n_epochs : int
        Epochs to average over; a multiple of ``batches``.
    schedule_epochs : int
        Length of the run umap-learn would plan (sets the pruning threshold).
    negative_sample_rate, repulsion_strength : float
        ``m`` and ``gamma``.
    learning_rate : float
        Small, so that points hardly move within an epoch.
    batches : int
        Number of consecutive blocks of epochs whose means give the standard error.
    seed : int
        Seed of the random state umap-learn draws negatives from.

    Returns
    -------
    tuple of ndarray
        Mean displacement per epoch over ``learning_rate``, shape ``(n, 2)``,
        and its standard error from the spread of the batch means.
    """
    umap_, layouts = _umap()
    if n_epochs % batches or batches < 2:
        raise ValueError(f"n_epochs must be a multiple of batches >= 2, got {n_epochs!r} and {batches!r}")
    coo = graph.tocoo(copy=True)
    coo.sum_duplicates()
    coo.data[coo.data < coo.data.max() / float(schedule_epochs)] = 0.0
    coo.eliminate_zeros()
    epochs_per_sample = umap_.make_epochs_per_sample(coo.data, schedule_epochs)
    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    next_negative_sample = epochs_per_negative_sample.copy()
    next_sample = epochs_per_sample.copy()
    start = np.ascontiguousarray(embedding, dtype=np.float32)
    n_points, dim = start.shape
    rng_state = np.random.RandomState(seed).randint(_INT32_MIN, _INT32_MAX, 3).astype(np.int64)
    rng_state_per_sample = (np.full((n_points, 3), rng_state, dtype=np.int64)
                            + start[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1))
    unused = np.zeros(1, dtype=np.float32)  # densMAP arguments, switched off
    batch_means = np.zeros((batches, n_points, dim))
    per_batch = n_epochs // batches
    with _torch_thread_budget():
        for epoch in range(n_epochs):
            positions = start.copy()
            layouts._nb_optimize_layout_euclidean_single_epoch(
                positions, positions, coo.row, coo.col, n_points, epochs_per_sample, a, b, rng_state_per_sample,
                repulsion_strength, dim, True, learning_rate, epochs_per_negative_sample, next_negative_sample,
                next_sample, epoch, False, unused, unused, 0.0, 0.0, 0.0, 0.0, unused, unused, 0.0,
            )
            batch_means[epoch // per_batch] += (positions.astype(np.float64) - start) / learning_rate / per_batch
    mean = batch_means.mean(0)
    stderr = batch_means.std(0, ddof=1) / np.sqrt(batches)
    return mean, stderr


def umap_learn_optimize_from(embedding: np.ndarray, graph, a: float, b: float, n_epochs: int = 500,
                             seed: int = 0, negative_sample_rate: int = 5, repulsion_strength: float = 1.0,
                             learning_rate: float = 1.0) -> np.ndarray:
    """Run umap-learn's optimiser (``umap.layouts.optimize_layout_euclidean``) from exactly ``embedding``.

    Unlike :func:`umap_learn_embedding`, the start is not rescaled into
    ``[0, 10]**2``, so a run can start at a chosen layout such as the
    minimiser of the published loss.  The graph is pruned and scheduled as
    in ``simplicial_set_embedding``, and both ends of a sampled edge move.
    """
    umap_, layouts = _umap()
    coo = graph.tocoo(copy=True)
    coo.sum_duplicates()
    coo.data[coo.data < coo.data.max() / float(n_epochs)] = 0.0
    coo.eliminate_zeros()
    positions = np.array(embedding, dtype=np.float32, order="C")
    rng_state = np.random.RandomState(seed).randint(_INT32_MIN, _INT32_MAX, 3).astype(np.int64)
    with _torch_thread_budget():
        return layouts.optimize_layout_euclidean(
            positions, positions, coo.row, coo.col, n_epochs, coo.shape[0],
            umap_.make_epochs_per_sample(coo.data, n_epochs), a, b, rng_state, repulsion_strength,
            learning_rate, negative_sample_rate, move_other=True,
        )
