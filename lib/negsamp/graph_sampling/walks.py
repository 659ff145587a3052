"""DeepWalk corpora: uniform random walks, their window co-occurrences, and gensim's Word2Vec on them.

References
----------
.. [1] B. Perozzi, R. Al-Rfou and S. Skiena, "DeepWalk: online learning of
   social representations", KDD 2014.
.. [2] R. Řehůřek and P. Sojka, "Software framework for topic modelling
   with large corpora", LREC 2010 workshop (gensim).
"""

from __future__ import annotations

import time

import torch

from .training import NodeEmbedding


def random_walks(adjacency: torch.Tensor, walks_per_node: int, walk_length: int, seed: int = 0) -> torch.Tensor:
    """Return uniform random walks, ``walks_per_node`` starting at every node.

    Each step moves to a uniformly chosen neighbour (edge weights are
    ignored).  All walks advance together, so the only Python loop runs over
    the ``walk_length - 1`` steps.

    Returns
    -------
    LongTensor of shape ``(n * walks_per_node, walk_length)``, on the CPU.
    """
    if walks_per_node < 1 or walk_length < 2:
        raise ValueError(f"need walks_per_node >= 1 and walk_length >= 2, got {walks_per_node} and {walk_length}")
    neighbours = (adjacency.detach().cpu() > 0)
    n = neighbours.shape[0]
    degree = neighbours.sum(dim=1)
    if torch.any(degree == 0):
        raise ValueError("adjacency has an isolated node; keep the largest connected component first")
    columns = torch.nonzero(neighbours)[:, 1]  # neighbour lists, row-major
    offsets = torch.cumsum(degree, 0) - degree
    generator = torch.Generator().manual_seed(seed)
    walks = torch.empty(n * walks_per_node, walk_length, dtype=torch.long)
    walks[:, 0] = torch.arange(n).repeat(walks_per_node)
    for step in range(1, walk_length):
        current = walks[:, step - 1]
        choice = (torch.rand(current.shape[0], generator=generator, dtype=torch.float64) * degree[current]).long()
        walks[:, step] = columns[offsets[current] + torch.minimum(choice, degree[current] - 1)]
    return walks


def window_pair_counts(walks: torch.Tensor, window: int, n: int) -> torch.Tensor:
    """Count ordered (centre, context) pairs at distance 1 to ``window`` along the walks.

    Both directions are counted, as skip-gram does with a fixed window, so
    the result is symmetric.  Pairs of a node with itself (a walk that
    returns) are dropped, as the proximity functions drop the diagonal.

    Returns
    -------
    Tensor of shape ``(n, n)``, float64.
    """
    if window < 1 or window >= walks.shape[1]:
        raise ValueError(f"window must lie in [1, {walks.shape[1] - 1}], got {window}")
    counts = torch.zeros(n * n, dtype=torch.float64)
    for distance in range(1, window + 1):
        centre = walks[:, :-distance].reshape(-1)
        context = walks[:, distance:].reshape(-1)
        counts += torch.bincount(centre * n + context, minlength=n * n).double()
        counts += torch.bincount(context * n + centre, minlength=n * n).double()
    counts = counts.view(n, n)
    counts.fill_diagonal_(0)
    return counts


def walk_negative_weights(pair_counts: torch.Tensor, walks: torch.Tensor, k: float,
                          power: float = 0.75) -> torch.Tensor:
    """Return expected negative counts as word2vec draws them for a walk corpus.

    Each positive pair of anchor ``u`` comes with ``k`` negatives drawn in
    proportion to ``frequency**power``, where ``frequency`` counts a node's
    occurrences in the walks (word2vec's smoothed unigram noise), so anchor
    ``u`` receives ``k * sum_v c+(u, v) * q(w)`` negatives on node ``w``.
    """
    n = pair_counts.shape[0]
    noise = torch.bincount(walks.reshape(-1), minlength=n).double().pow(power)
    noise = noise / noise.sum()
    weights = k * pair_counts.sum(dim=1, keepdim=True) * noise.unsqueeze(0)
    weights.fill_diagonal_(0)
    return weights.to(pair_counts.dtype)


def gensim_deepwalk(walks: torch.Tensor, dim: int, window: int, k: int, epochs: int,
                    seed: int = 0, lr: float = 0.025) -> NodeEmbedding:
    """Train gensim's Word2Vec (skip-gram, negative sampling) on the walks and return its embeddings.

    The settings make gensim optimise the same objective as
    :func:`~negsamp.graph_sampling.train_sgns` on :func:`window_pair_counts`
    and :func:`walk_negative_weights`: a fixed window (``shrink_windows=False``),
    no down-sampling of frequent nodes (``sample=0``), noise exponent 0.75,
    and one worker thread with a fixed seed, so the run is reproducible.
    ``source`` contains gensim's input vectors and ``context`` its output
    (``syn1neg``) vectors, in node order.
    """
    from gensim.models import Word2Vec

    n = int(walks.max()) + 1
    sentences = [[str(node) for node in walk] for walk in walks.tolist()]
    start = time.perf_counter()
    model = Word2Vec(sentences, vector_size=dim, window=window, sg=1, hs=0, negative=k, ns_exponent=0.75,
                     min_count=1, sample=0, workers=1, seed=seed, epochs=epochs, alpha=lr,
                     shrink_windows=False)
    seconds = time.perf_counter() - start
    order = [model.wv.key_to_index[str(node)] for node in range(n)]
    source = torch.as_tensor(model.wv.vectors[order], dtype=torch.float64)
    context = torch.as_tensor(model.syn1neg[order], dtype=torch.float64)
    return NodeEmbedding(source, context, float("nan"), seconds)
