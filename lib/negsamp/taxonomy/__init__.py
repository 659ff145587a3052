"""Does vision-and-language training change taxonomic knowledge, or only its use?

A small-scale minimal pair in the spirit of Qin et al. (2025): a tiny causal
language model is pre-trained on text about a synthetic taxonomy, then
continued for the same number of steps either on more text (the LM) or on
text mixed with grounded data whose captions and questions use hypernyms
(the VLM).  Both are tested on text-only taxonomic questions, probed for the
taxonomy itself, and compared by representational similarity.

Modules
-------
world
    The taxonomy, visual prototypes, corpora and test units.
model
    The batched one-layer transformer and the minimal-pair training.
analysis
    Strict scoring, probes, representational similarity and paired statistics.

References
----------
.. [1] Y. Qin, D. Varghese, A. Dahlgren Lindström, L. Donatelli, K. Misra and
   N. Kim, "Vision-and-language training helps deploy taxonomic knowledge but
   does not fundamentally alter it", NeurIPS 2025, arXiv:2507.13328.
.. [2] K. Park, Y. J. Choe, Y. Jiang and V. Veitch, "The geometry of
   categorical and hierarchical concepts in large language models",
   arXiv:2406.01506, 2024.
"""

from .analysis import (
    answer_margins,
    average_ranks,
    category_vectors,
    conditional_accuracy,
    cosine_separation,
    cosine_similarity_matrix,
    gain_beyond_change,
    hierarchical_consistency,
    mean_and_stderr,
    overall_accuracy,
    paired_difference,
    question_representations,
    representational_similarity,
    ridge_loo_accuracy,
    ridge_loo_predictions,
    spearman_correlation,
    strict_unit_correct,
    upper_triangle,
    whiten,
)
from .model import (
    TinyLMConfig,
    continue_minimal_pair,
    detached_copies,
    forward,
    init_params,
    learning_rate_factor,
    next_token_loss,
    pretrain_language_models,
    select_models,
    train,
)
from .world import (
    ANSWER_POSITION,
    IMAGE,
    QUERY_POSITION,
    SPECIAL_TOKENS,
    Taxonomy,
    ToyWorld,
    concept_token,
    decode,
    fact_sentences,
    grounded_batch,
    hypernym_candidates,
    make_world,
    negative_concepts,
    sample_images,
    scene_questions,
    taxonomic_question_units,
    text_batch,
    visual_prototypes,
    vocabulary_size,
    yes_no_prompts,
    yes_no_units,
)

__all__ = [
    "ANSWER_POSITION", "IMAGE", "QUERY_POSITION", "SPECIAL_TOKENS", "Taxonomy", "TinyLMConfig", "ToyWorld",
    "answer_margins", "average_ranks", "category_vectors", "concept_token", "conditional_accuracy",
    "continue_minimal_pair", "cosine_separation", "cosine_similarity_matrix", "decode", "detached_copies",
    "fact_sentences", "forward", "gain_beyond_change", "grounded_batch", "hierarchical_consistency", "hypernym_candidates",
    "init_params", "learning_rate_factor", "make_world", "mean_and_stderr", "negative_concepts",
    "next_token_loss", "overall_accuracy", "paired_difference", "pretrain_language_models",
    "question_representations", "representational_similarity", "ridge_loo_accuracy", "ridge_loo_predictions", "sample_images",
    "scene_questions", "select_models", "spearman_correlation", "strict_unit_correct", "taxonomic_question_units",
    "text_batch", "train", "upper_triangle", "visual_prototypes", "vocabulary_size", "whiten", "yes_no_prompts",
    "yes_no_units",
]
