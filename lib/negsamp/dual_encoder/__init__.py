"""Dual encoders, boundary-aware negative curricula and a slot-level local contrastive loss.

The modules are

- :mod:`~negsamp.dual_encoder.scenes`: multi-slot scenes with attribute
  captions, built from real digits or synthetic prototypes, boundary
  galleries and attribute-edit negatives;
- :mod:`~negsamp.dual_encoder.losses`: symmetric InfoNCE with extra
  negatives and the local loss;
- :mod:`~negsamp.dual_encoder.samplers`: the similarity-tempered sampler and
  its annealing schedule;
- :mod:`~negsamp.dual_encoder.towers`: an ensemble of small dual encoders
  with stacked parameters;
- :mod:`~negsamp.dual_encoder.training`: the vectorised trainer and the
  retrieval evaluation.
"""

from .losses import (
    BoundaryLoss,
    boundary_contrastive_loss,
    infonce_from_similarities,
    local_contrastive_loss,
    pooled_embedding,
)
from .samplers import curriculum_temperature, sample_tempered_negatives, tempered_negative_probabilities
from .scenes import (
    ImageBank,
    SceneSets,
    attribute_edit_negatives,
    boundary_gallery,
    compose_scene_sets,
    draw_attributes,
    draw_scene_images,
    image_bank,
    nearest_prototype,
    shortcut_fraction,
    stack_scene_sets,
    synthetic_image_bank,
    synthetic_prototypes,
)
from .towers import DualEncoderEnsemble, caption_token_embeddings, init_dual_encoders, slot_image_embeddings
from .training import (
    NEGATIVE_KINDS,
    Method,
    TrainingConfig,
    TrainingLog,
    boundary_gallery_scores,
    paired_similarity,
    train_dual_encoders,
)

__all__ = [
    "BoundaryLoss",
    "DualEncoderEnsemble",
    "ImageBank",
    "SceneSets",
    "Method",
    "NEGATIVE_KINDS",
    "TrainingConfig",
    "TrainingLog",
    "attribute_edit_negatives",
    "boundary_contrastive_loss",
    "boundary_gallery",
    "boundary_gallery_scores",
    "caption_token_embeddings",
    "compose_scene_sets",
    "curriculum_temperature",
    "draw_attributes",
    "draw_scene_images",
    "image_bank",
    "infonce_from_similarities",
    "init_dual_encoders",
    "local_contrastive_loss",
    "nearest_prototype",
    "paired_similarity",
    "pooled_embedding",
    "sample_tempered_negatives",
    "shortcut_fraction",
    "slot_image_embeddings",
    "stack_scene_sets",
    "synthetic_image_bank",
    "synthetic_prototypes",
    "tempered_negative_probabilities",
    "train_dual_encoders",
]
