"""An ensemble of small dual encoders whose parameters are stacked along a leading model axis.

Stacking lets one batched matrix product train dozens of independent
models (seeds, methods, training-set sizes) at once.  Adam is elementwise,
so optimising the sum of the per-model losses over the stacked tensors
updates every model exactly as if it were trained alone.

Image tower: each slot's pixels, with a one-hot slot position appended, go
through a shared two-layer ReLU network to a ``dim``-dimensional slot
embedding.  Text tower: slot ``k`` of a caption with value ``c`` looks up
its own token embedding, row ``k * n_values + c`` of a table.  Both towers
pool by :func:`~negsamp.dual_encoder.losses.pooled_embedding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DualEncoderEnsemble:
    """Parameters of ``n_models`` dual encoders; every tensor's first axis indexes the model."""

    hidden_weight: torch.Tensor  # (models, pixels + slots, hidden)
    hidden_bias: torch.Tensor    # (models, 1, hidden)
    output_weight: torch.Tensor  # (models, hidden, dim)
    output_bias: torch.Tensor    # (models, 1, dim)
    token_table: torch.Tensor    # (models, slots * values, dim)
    n_slots: int
    n_values: int

    @property
    def n_models(self) -> int:
        """Number of stacked models."""
        return int(self.token_table.shape[0])

    def parameters(self) -> list[torch.Tensor]:
        """Return the trainable tensors."""
        return [self.hidden_weight, self.hidden_bias, self.output_weight, self.output_bias, self.token_table]

    def select(self, models: slice | torch.Tensor) -> "DualEncoderEnsemble":
        """Return the ensemble of the models in ``models`` (a slice, which shares storage, or indices)."""
        return DualEncoderEnsemble(self.hidden_weight[models], self.hidden_bias[models],
                                   self.output_weight[models], self.output_bias[models],
                                   self.token_table[models], self.n_slots, self.n_values)


def init_dual_encoders(n_models: int, n_pixels: int, n_slots: int, n_values: int, hidden: int, dim: int,
                       generator: torch.Generator, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> DualEncoderEnsemble:
    """Initialise ``n_models`` independent dual encoders (scaled Gaussian weights, zero biases).

    Weights have standard deviation ``1 / sqrt(fan_in)``, and token
    embeddings are standard Gaussian.  Draws come from ``generator`` on the
    CPU, so a seed gives the same models on every device.
    """
    if min(n_models, n_pixels, n_slots, n_values, hidden, dim) < 1:
        raise ValueError("all sizes must be positive integers")

    def gaussian(*shape: int, scale: float) -> torch.Tensor:
        values = torch.randn(*shape, generator=generator, dtype=dtype) * scale
        return values.to(device).requires_grad_(True)

    fan_in = n_pixels + n_slots
    return DualEncoderEnsemble(
        hidden_weight=gaussian(n_models, fan_in, hidden, scale=1 / math.sqrt(fan_in)),
        hidden_bias=torch.zeros(n_models, 1, hidden, dtype=dtype, device=device, requires_grad=True),
        output_weight=gaussian(n_models, hidden, dim, scale=1 / math.sqrt(hidden)),
        output_bias=torch.zeros(n_models, 1, dim, dtype=dtype, device=device, requires_grad=True),
        token_table=gaussian(n_models, n_slots * n_values, dim, scale=1.0),
        n_slots=n_slots,
        n_values=n_values,
    )


def slot_image_embeddings(model: DualEncoderEnsemble, pixels: torch.Tensor) -> torch.Tensor:
    """Embed every slot of every image; pixels ``(models, ..., S, P)`` give ``(models, ..., S, dim)``."""
    n_models, n_slots = pixels.shape[0], pixels.shape[-2]
    if n_models != model.n_models or n_slots != model.n_slots:
        raise ValueError(f"pixels must be (models={model.n_models}, ..., slots={model.n_slots}, pixels), "
                         f"got {tuple(pixels.shape)}")
    position = torch.eye(n_slots, dtype=pixels.dtype, device=pixels.device)
    position = position.expand(*pixels.shape[:-1], n_slots)
    inputs = torch.cat([pixels, position], dim=-1).reshape(n_models, -1, pixels.shape[-1] + n_slots)
    hidden = torch.relu(torch.baddbmm(model.hidden_bias, inputs, model.hidden_weight))
    output = torch.baddbmm(model.output_bias, hidden, model.output_weight)
    return output.reshape(*pixels.shape[:-1], -1)


def caption_token_embeddings(model: DualEncoderEnsemble, captions: torch.Tensor) -> torch.Tensor:
    """Look up slot tokens: captions ``(models, ..., S)`` give embeddings ``(models, ..., S, dim)``.

    Slot ``k`` holding value ``c`` (in ``[0, n_values)``) reads row ``k * n_values + c`` of the
    model's token table.
    """
    if captions.shape[0] != model.n_models or captions.shape[-1] != model.n_slots:
        raise ValueError(f"captions must be (models={model.n_models}, ..., slots={model.n_slots}), "
                         f"got {tuple(captions.shape)}")
    slot = torch.arange(model.n_slots, device=captions.device)
    n_rows = model.n_slots * model.n_values
    model_offset = torch.arange(model.n_models, device=captions.device) * n_rows
    rows = slot * model.n_values + captions + model_offset.view(-1, *([1] * (captions.ndim - 1)))
    return F.embedding(rows, model.token_table.reshape(-1, model.token_table.shape[-1]))
