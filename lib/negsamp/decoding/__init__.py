"""Negative inputs at decoding time: a toy world for VCD, DPO and decoupled contrastive decoding.

The package is split by concept:

* :mod:`~negsamp.decoding.world`: scenes with co-occurring object pairs, noisy
  image vectors, web captions with a co-occurrence hallucination prior,
  preference pairs, and the general tasks;
* :mod:`~negsamp.decoding.rules`: the contrastive decoding rule, the adaptive
  plausibility constraint, VCD's diffusion noise and the DPO loss;
* :mod:`~negsamp.decoding.model`: a tiny conditional language model with an
  image projection, teacher-forced log-probabilities and the decoders;
* :mod:`~negsamp.decoding.training`: supervised training, DPO, and DCD's
  decoupled projections;
* :mod:`~negsamp.decoding.metrics`: CHAIR, recall, object F1, the
  co-occurrence hallucination rate and answer accuracy.
"""

from .metrics import answer_accuracy, caption_metrics, evaluate_decoder, mention_counts
from .model import (
    BaseDecoder,
    DCDDecoder,
    ToyMLLM,
    VCDDecoder,
    answer_log_probs,
    caption_log_probs,
    greedy_answers,
    prefix_bags,
    sample_captions,
    token_log_probs,
)
from .rules import (
    contrastive_scores,
    diffusion_signal_coefficient,
    dpo_loss,
    noise_image,
    plausible_tokens,
    single_token_dpo_flow,
)
from .training import train_dpo, train_projection, train_sft
from .world import (
    CAPTION,
    COUNT,
    PAD,
    TASK_NAMES,
    WEATHER,
    Scenes,
    ToyWorld,
    compact_slots,
    count_answers,
    has_lone_member,
    sample_preference_scenes,
    preference_captions,
    render_images,
    sample_scenes,
    weather_answers,
    web_captions,
)

__all__ = [
    "BaseDecoder", "CAPTION", "COUNT", "DCDDecoder", "PAD", "Scenes", "TASK_NAMES", "ToyMLLM",
    "ToyWorld", "VCDDecoder", "WEATHER", "answer_accuracy", "answer_log_probs",
    "caption_log_probs", "caption_metrics", "compact_slots", "contrastive_scores", "count_answers",
    "diffusion_signal_coefficient", "dpo_loss", "evaluate_decoder", "greedy_answers",
    "has_lone_member", "mention_counts", "noise_image", "plausible_tokens", "preference_captions",
    "prefix_bags", "render_images", "sample_captions", "sample_preference_scenes", "sample_scenes",
    "single_token_dpo_flow", "token_log_probs", "train_dpo", "train_projection", "train_sft",
    "weather_answers", "web_captions",
]
