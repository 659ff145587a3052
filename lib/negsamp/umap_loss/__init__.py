"""UMAP's true loss: similarities, published and effective losses, and the sampled optimiser.

umap-learn optimises by sampling edges in proportion to their membership
and drawing uniform negatives, so what it minimises in expectation is not the
published fuzzy cross-entropy.  This package computes the quantities that
Damrich and Hamprecht (2021) derive for that effective loss, a torch version
of the sampler (stock and push-tail), and wrappers around umap-learn itself.

References
----------
.. [1] S. Damrich and F. A. Hamprecht, "On UMAP's true loss function", NeurIPS 2021.
.. [2] L. McInnes, J. Healy and J. Melville, "UMAP: Uniform manifold
   approximation and projection for dimension reduction", arXiv:1802.03426, 2018.
"""

from .graph import (
    VARIANTS,
    FuzzyGraph,
    effective_target,
    negative_sampling_rate,
    repulsive_weight,
)
from .losses import (
    best_global_scale,
    effective_loss,
    effective_loss_terms,
    expected_update,
    loss_scale_derivative,
    published_loss,
    published_loss_terms,
)
from .optimiser import (
    EdgeSchedule,
    EpochCounts,
    count_samples,
    mean_epoch_update,
    optimize_layout,
    sampled_epoch_update,
)
from .similarity import (
    REPULSION_EPSILON,
    UPDATE_CLIP,
    attraction_coefficient,
    curve_parameters,
    log_similarity_complement,
    low_dimensional_similarity,
    repulsion_coefficient,
)
from .synthetic import sample_ring

__all__ = [
    "REPULSION_EPSILON",
    "UPDATE_CLIP",
    "VARIANTS",
    "EdgeSchedule",
    "EpochCounts",
    "FuzzyGraph",
    "attraction_coefficient",
    "best_global_scale",
    "count_samples",
    "curve_parameters",
    "effective_loss",
    "effective_loss_terms",
    "effective_target",
    "expected_update",
    "log_similarity_complement",
    "loss_scale_derivative",
    "low_dimensional_similarity",
    "mean_epoch_update",
    "negative_sampling_rate",
    "optimize_layout",
    "published_loss",
    "published_loss_terms",
    "repulsion_coefficient",
    "repulsive_weight",
    "sample_ring",
    "sampled_epoch_update",
]
