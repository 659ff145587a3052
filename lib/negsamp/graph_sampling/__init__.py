"""Competing positive and negative sampling strategies in network embedding.

Seeded synthetic graphs (:mod:`.graphs`), proximity distributions on a
graph (:mod:`.proximity`), positive and
negative samplers with the score they make SGNS learn (:mod:`.sampling`),
a torch SGNS trainer (:mod:`.training`), DeepWalk corpora and gensim's
Word2Vec on them (:mod:`.walks`), and the discrimination, monotonicity and
downstream metrics (:mod:`.evaluation`).
"""

from .evaluation import (
    discrimination_per_anchor,
    link_prediction_auc,
    monotonicity_per_anchor,
    paired_effect,
    rank_correlation_per_anchor,
    recommendation_metrics,
    sample_non_edges,
    sampling_properties,
    split_edges,
)
from .graphs import largest_component, planted_partition_graph, small_world_graph
from .proximity import (
    adjacency_matrix,
    adjacency_proximity,
    personalized_pagerank_proximity,
    relevant_mask,
    top_k_mask,
    transition_matrix,
    window_proximity,
)
from .sampling import (
    STRATEGIES,
    degree_distribution,
    empirical_scores,
    expected_uncovered_share,
    mixture_distribution,
    optimal_scores,
    power_distribution,
    restricted_distribution,
    sample_pair_counts,
    score_error_variance,
    set_uniform_distribution,
    strategy_distributions,
    uncovered_share,
    uniform_distribution,
)
from .training import NodeEmbedding, sgns_pair_loss, train_sgns
from .walks import gensim_deepwalk, random_walks, walk_negative_weights, window_pair_counts

__all__ = [
    "STRATEGIES",
    "adjacency_matrix",
    "adjacency_proximity",
    "degree_distribution",
    "discrimination_per_anchor",
    "empirical_scores",
    "expected_uncovered_share",
    "gensim_deepwalk",
    "largest_component",
    "link_prediction_auc",
    "mixture_distribution",
    "monotonicity_per_anchor",
    "NodeEmbedding",
    "optimal_scores",
    "paired_effect",
    "personalized_pagerank_proximity",
    "planted_partition_graph",
    "power_distribution",
    "random_walks",
    "rank_correlation_per_anchor",
    "recommendation_metrics",
    "relevant_mask",
    "restricted_distribution",
    "sample_non_edges",
    "sample_pair_counts",
    "sampling_properties",
    "score_error_variance",
    "set_uniform_distribution",
    "sgns_pair_loss",
    "small_world_graph",
    "split_edges",
    "strategy_distributions",
    "top_k_mask",
    "train_sgns",
    "transition_matrix",
    "uncovered_share",
    "uniform_distribution",
    "walk_negative_weights",
    "window_pair_counts",
]
