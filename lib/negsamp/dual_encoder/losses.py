"""Symmetric InfoNCE with extra negatives, and the slot-level local contrastive loss.

Both losses take cosine similarities, so their gradients with respect to a
similarity can be compared with the closed forms derived in the chapter:
each negative's similarity receives its softmax weight divided by the
temperature.  :func:`boundary_contrastive_loss` builds the similarities
from slot and token embeddings and adds the two terms.

Every function accepts any leading batch shape ``...`` (for example one
entry per model of an ensemble) and returns one loss per leading index.

References
----------
.. [1] A. van den Oord, Y. Li and O. Vinyals, "Representation learning with
   contrastive predictive coding", arXiv:1807.03748, 2018.
.. [2] H. Ye, H. Ding, S. Chen, Y. Jiang, C. Zhang and X. Zhang, "Aligning by
   misaligning: Boundary-aware curriculum learning for multimodal
   alignment", NeurIPS 2025.  Only the abstract was available to us; the
   local loss here is our reading of its "contrastive local attention"
   idea, not the paper's formula.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def _check_temperature(temperature: float, name: str = "temperature") -> None:
    if not temperature > 0:
        raise ValueError(f"{name} must be positive, got {temperature!r}")


def infonce_from_similarities(similarity: torch.Tensor, temperature: float,
                              extra_similarity: torch.Tensor | None = None,
                              extra_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of a batch of pairs, optionally with one extra caption negative per image.

    Image ``i`` must pick caption ``i`` among the ``B`` captions of the batch
    (and its extra negative, where ``extra_mask`` is true), and caption ``j``
    must pick image ``j`` among the ``B`` images.  The loss is the mean of
    the two cross-entropies, each averaged over the batch.

    Parameters
    ----------
    similarity : Tensor
        Shape ``(..., B, B)``; entry ``[i, j]`` scores image ``i`` against
        caption ``j``, and the matching pairs lie on the diagonal.
    temperature : float
        Logits are ``similarity / temperature``.
    extra_similarity : Tensor, optional
        Shape ``(..., B)``: image ``i`` against its extra negative caption.
    extra_mask : Tensor, optional
        Boolean, broadcastable to ``(..., B)``: where the extra negative is
        used.  Defaults to everywhere when ``extra_similarity`` is given.

    Returns
    -------
    Tensor
        Shape ``(...)``.
    """
    _check_temperature(temperature)
    if similarity.ndim < 2 or similarity.shape[-1] != similarity.shape[-2]:
        raise ValueError(f"similarity must be (..., B, B), got shape {tuple(similarity.shape)}")
    batch = similarity.shape[-1]
    logits = similarity / temperature
    target = torch.arange(batch, device=similarity.device)
    image_to_caption = logits
    if extra_similarity is not None:
        extra_logits = extra_similarity / temperature
        if extra_mask is not None:
            extra_logits = extra_logits.masked_fill(~extra_mask.expand_as(extra_logits), float("-inf"))
        image_to_caption = torch.cat([logits, extra_logits.unsqueeze(-1)], dim=-1)
    image_loss = -torch.log_softmax(image_to_caption, dim=-1)[..., target, target].mean(dim=-1)
    caption_loss = -torch.log_softmax(logits.transpose(-1, -2), dim=-1)[..., target, target].mean(dim=-1)
    return (image_loss + caption_loss) / 2


def local_contrastive_loss(positive_similarity: torch.Tensor, negative_similarity: torch.Tensor,
                           differs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Two-way InfoNCE per slot, on the slots where a caption and its negative differ.

    On such a slot ``k`` of anchor ``i``, the slot's image embedding must
    prefer the positive caption's token to the negative's:
    ``softplus((negative - positive) / temperature)``, which is
    ``-log`` of the positive's softmax weight among the two.  Each anchor
    averages over its differing slots, and the loss averages over anchors
    with at least one differing slot (it is 0 when there are none).

    Parameters
    ----------
    positive_similarity, negative_similarity : Tensor
        Shape ``(..., B, S)``: slot ``k``'s image embedding against the
        positive or the negative caption's token for slot ``k``.
    differs : Tensor
        Boolean, shape ``(..., B, S)``: where the two captions differ.
    temperature : float

    Returns
    -------
    Tensor
        Shape ``(...)``.
    """
    _check_temperature(temperature)
    if positive_similarity.shape != negative_similarity.shape or differs.shape != positive_similarity.shape:
        shapes = [tuple(t.shape) for t in (positive_similarity, negative_similarity, differs)]
        raise ValueError(f"similarities and mask must share one shape, got {shapes}")
    per_slot = F.softplus((negative_similarity - positive_similarity) / temperature)
    weights = differs.to(per_slot.dtype)
    slots = weights.sum(dim=-1)
    per_anchor = (per_slot * weights).sum(dim=-1) / slots.clamp(min=1)
    anchors = (slots > 0).to(per_slot.dtype)
    return (per_anchor * anchors).sum(dim=-1) / anchors.sum(dim=-1).clamp(min=1)


class BoundaryLoss(NamedTuple):
    """Training objective with its two terms, each of shape ``(...)``."""

    total: torch.Tensor
    global_term: torch.Tensor
    local_term: torch.Tensor


def pooled_embedding(slot_embeddings: torch.Tensor) -> torch.Tensor:
    """Return the unit-length mean of slot (or token) embeddings, shape ``(..., S, D)`` to ``(..., D)``."""
    return F.normalize(slot_embeddings.mean(dim=-2), dim=-1)


def boundary_contrastive_loss(slot_images: torch.Tensor, tokens: torch.Tensor, extra_tokens: torch.Tensor,
                              differs: torch.Tensor, extra_mask: torch.Tensor,
                              local_weight: torch.Tensor | float, temperature: float,
                              local_temperature: float) -> BoundaryLoss:
    """Global symmetric InfoNCE with one extra negative, plus ``local_weight`` times the local loss.

    Images and captions are compared through :func:`pooled_embedding`, and
    slots through the cosine between slot ``k``'s image embedding and the
    token embedding of slot ``k``.

    Parameters
    ----------
    slot_images : Tensor
        Shape ``(..., B, S, D)``, per-slot image embeddings.
    tokens, extra_tokens : Tensor
        Shape ``(..., B, S, D)``, token embeddings of each anchor's caption
        and of its extra negative caption.
    differs : Tensor
        Boolean ``(..., B, S)``: slots where the extra negative differs from the caption.
    extra_mask : Tensor
        Boolean, broadcastable to ``(..., B)``: where an extra negative is used at all.
    local_weight : float or Tensor
        Weight of the local term, broadcastable to ``(...)``; 0 turns it off.
    temperature, local_temperature : float
        Temperatures of the global and the local term.
    """
    image = pooled_embedding(slot_images)
    caption = pooled_embedding(tokens)
    extra = pooled_embedding(extra_tokens)
    similarity = image @ caption.transpose(-1, -2)
    extra_similarity = (image * extra).sum(dim=-1)
    global_term = infonce_from_similarities(similarity, temperature, extra_similarity, extra_mask)

    unit_slots = F.normalize(slot_images, dim=-1)
    positive_slot = (unit_slots * F.normalize(tokens, dim=-1)).sum(dim=-1)
    negative_slot = (unit_slots * F.normalize(extra_tokens, dim=-1)).sum(dim=-1)
    local_mask = differs & extra_mask.expand(differs.shape[:-1]).unsqueeze(-1)
    local_term = local_contrastive_loss(positive_slot, negative_slot, local_mask, local_temperature)

    total = global_term + local_weight * local_term
    return BoundaryLoss(total, global_term, local_term)
