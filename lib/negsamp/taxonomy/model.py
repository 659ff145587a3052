"""A one-layer causal transformer, trained as many independent copies at once, and the LM/VLM minimal pair.

Every parameter tensor carries a leading model axis of length ``M``, so one
batched forward pass trains ``M`` models (several seeds, or both arms of the
minimal pair) without a Python loop over them.  Adam's update is elementwise,
and the training loss is the sum of the per-model losses, so the copies never
interact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..progress import progress
from .world import IMAGE, PAD, SEQUENCE_LENGTH, ToyWorld, grounded_batch, text_batch

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TinyLMConfig:
    """Size and optimiser settings of the tiny causal language model.

    Attributes
    ----------
    dim : int
        Width of the residual stream.
    heads : int
        Attention heads; must divide ``dim``.
    mlp_ratio : int
        Hidden width of the MLP as a multiple of ``dim``.
    batch_size : int
        Sequences per model per step.
    learning_rate : float
        Peak Adam learning rate of every training stage.
    warmup_steps : int
        Linear warm-up length of every stage; a cosine decay to
        ``final_lr_fraction`` times the peak runs over the whole stage.
    final_lr_fraction : float
    """

    dim: int = 32
    heads: int = 2
    mlp_ratio: int = 4
    batch_size: int = 64
    learning_rate: float = 1e-2
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must be a positive divisor of dim ({self.dim})")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"batch_size must be an even integer >= 2 so both arms split it, got {self.batch_size}")
        if not self.learning_rate > 0 or not 0 < self.final_lr_fraction <= 1:
            raise ValueError(
                f"learning_rate must be > 0 and final_lr_fraction in (0, 1], got "
                f"{self.learning_rate!r} and {self.final_lr_fraction!r}"
            )


# === The model === #


def init_params(config: TinyLMConfig, vocabulary_size: int, visual_dim: int, n_models: int,
                generator: torch.Generator, device: torch.device | str = "cpu") -> Params:
    """Draw ``n_models`` independent parameter sets; every tensor has leading axis ``n_models``.

    The token embedding is tied to the output layer.  ``projection`` maps an
    image of ``visual_dim`` features to one input embedding; text-only models
    carry it unused.
    """
    d, hidden = config.dim, config.mlp_ratio * config.dim

    def normal(*shape, std):
        return (torch.randn(n_models, *shape, generator=generator) * std).to(device)

    params = {
        "embedding": normal(vocabulary_size, d, std=0.3),
        "position": normal(SEQUENCE_LENGTH, d, std=0.3),
        "qkv": normal(d, 3 * d, std=d**-0.5),
        "out": normal(d, d, std=0.5 * d**-0.5),
        "mlp_in": normal(d, hidden, std=d**-0.5),
        "mlp_bias": torch.zeros(n_models, 1, hidden, device=device),
        "mlp_out": normal(hidden, d, std=0.5 * hidden**-0.5),
        "projection": normal(visual_dim, d, std=visual_dim**-0.5),
        "projection_bias": torch.zeros(n_models, 1, d, device=device),
    }
    for tensor in params.values():
        tensor.requires_grad_(True)
    return params


def forward(params: Params, tokens: torch.Tensor, heads: int,
            images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the one-layer pre-norm transformer on a batch for every model.

    Parameters
    ----------
    params : dict of Tensor
        From :func:`init_params`, ``M`` models.
    tokens : LongTensor, shape ``(M, B, T)``
    heads : int
    images : Tensor, shape ``(M, B, visual_dim)``, optional
        Replaces the embedding of every ``<img>`` token of row ``b`` by
        ``images[:, b] @ projection + projection_bias``.

    Returns
    -------
    logits : Tensor, shape ``(M, B, T, vocabulary_size)``
    hidden : Tensor, shape ``(M, B, T, dim)``
        The final normalised residual stream, which the tied embedding reads out.
    """
    n_models, batch, length = tokens.shape
    d = params["embedding"].shape[-1]
    if params["embedding"].shape[0] != n_models:
        raise ValueError(f"tokens hold {n_models} models but params hold {params['embedding'].shape[0]}")
    flat = tokens.reshape(n_models, batch * length, 1).expand(-1, -1, d)
    x = torch.gather(params["embedding"], 1, flat)
    if images is not None:
        projected = torch.bmm(images, params["projection"]) + params["projection_bias"]
        is_image = (tokens == IMAGE).reshape(n_models, batch * length, 1)
        x = torch.where(is_image, projected.repeat_interleave(length, dim=1), x)
    x = (x.reshape(n_models, batch, length, d) + params["position"][:, None, :length]).reshape(n_models, -1, d)

    # === Causal self-attention === #
    normed = F.layer_norm(x, (d,))
    qkv = torch.bmm(normed, params["qkv"])
    q, k, v = (
        part.reshape(n_models, batch, length, heads, d // heads).transpose(2, 3) for part in qkv.split(d, dim=2)
    )
    attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + torch.bmm(attended.transpose(2, 3).reshape(n_models, -1, d), params["out"])

    # === MLP === #
    normed = F.layer_norm(x, (d,))
    x = x + torch.bmm(F.gelu(torch.bmm(normed, params["mlp_in"]) + params["mlp_bias"]), params["mlp_out"])

    hidden = F.layer_norm(x, (d,))
    logits = torch.bmm(hidden, params["embedding"].transpose(1, 2))
    return logits.reshape(n_models, batch, length, -1), hidden.reshape(n_models, batch, length, d)


def next_token_loss(params: Params, tokens: torch.Tensor, heads: int,
                    images: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy of every model, shape ``(M,)``.

    Padding and ``<img>`` targets are skipped: an image is an input, not a token to predict.
    """
    logits, _ = forward(params, tokens, heads, images)
    targets = tokens[..., 1:]
    mask = (targets != PAD) & (targets != IMAGE)
    losses = F.cross_entropy(
        logits[..., :-1, :].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).reshape(targets.shape)
    return (losses * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))


def learning_rate_factor(step: int, steps: int, warmup: int, final_fraction: float) -> float:
    """Learning-rate multiplier: a linear warm-up ramp times a cosine decay.

    The ramp rises from ``1 / warmup`` to 1 over the first ``warmup`` steps.
    The cosine runs over all ``steps``, from 1 at step 0 to
    ``final_fraction`` at ``steps``, so it has already started during the warm-up.
    """
    ramp = min(1.0, (step + 1) / max(1, warmup))
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(1, steps)))
    return ramp * (final_fraction + (1 - final_fraction) * cosine)


def train(params: Params, next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]], steps: int,
          config: TinyLMConfig, trainable: tuple[str, ...] | None = None, desc: str = "training") -> torch.Tensor:
    """Minimise :func:`next_token_loss` with Adam for ``steps`` steps, all models at once.

    ``next_batch(step)`` returns ``(tokens, images)`` of shapes ``(M, B, T)``
    and ``(M, B, visual_dim)`` or ``None``.  Only the parameters named in
    ``trainable`` are updated (all of them by default).  A fresh optimiser
    and schedule start with every call.

    Returns
    -------
    Tensor, shape ``(steps, M)``
        The loss of every model at every step.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    names = tuple(params) if trainable is None else trainable
    unknown = set(names) - set(params)
    if unknown:
        raise ValueError(f"unknown parameter names {sorted(unknown)}; known: {sorted(params)}")
    optimiser = torch.optim.Adam([params[name] for name in names], lr=config.learning_rate, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: learning_rate_factor(step, steps, config.warmup_steps, config.final_lr_fraction)
    )
    history = []
    for step in progress(range(steps), desc=desc):
        tokens, images = next_batch(step)
        losses = next_token_loss(params, tokens, config.heads, images)
        optimiser.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimiser.step()
        schedule.step()
        history.append(losses.detach())
    return torch.stack(history)


def detached_copies(params: Params, copies: int) -> Params:
    """Stack ``copies`` copies of every model along the model axis, as fresh trainable leaves.

    Model ``i`` of copy ``c`` lands at index ``c * M + i``.
    """
    return {name: tensor.detach().repeat(copies, *([1] * (tensor.ndim - 1))).requires_grad_(True)
            for name, tensor in params.items()}


def select_models(params: Params, index: slice | torch.Tensor) -> Params:
    """Return the models at ``index`` of the model axis, detached from the graph."""
    return {name: tensor.detach()[index] for name, tensor in params.items()}


# === The minimal pair === #


def pretrain_language_models(world: ToyWorld, config: TinyLMConfig, n_seeds: int, steps: int,
                             generator: torch.Generator, device: torch.device | str = "cpu") -> Params:
    """Train ``n_seeds`` independent text-only models on :func:`~negsamp.taxonomy.world.text_batch`.

    Each model draws its own initialisation and its own batches.
    """
    params = init_params(config, world.vocabulary_size, world.visual_dim, n_seeds, generator, device)

    def next_batch(step):
        tokens = torch.stack([text_batch(world, config.batch_size, generator) for _ in range(n_seeds)])
        return tokens.to(device), None

    train(params, next_batch, steps, config, desc="pre-training the language models")
    return params


def continue_minimal_pair(lm_params: Params, world: ToyWorld | Sequence[ToyWorld], config: TinyLMConfig, steps: int,
                          alignment_steps: int, generator: torch.Generator,
                          device: torch.device | str = "cpu") -> Params:
    """Continue each pre-trained model twice, as a text-only LM and as a VLM.

    Returns ``2 S`` models: indices ``0..S-1`` are the LM arm and ``S..2S-1``
    the VLM arm, model ``i`` of both arms starting from pre-trained model ``i``.
    ``world`` is one world for every pair, or a sequence of ``S`` worlds (for
    example with their own visual prototypes), pair ``i`` using world ``i``.

    1. Alignment (VLM arm only): ``alignment_steps`` steps that update only the
       image projection, on leaf-level image questions, with the language
       model frozen; the LM arm's weights are untouched in this stage.
    2. Continuation, ``steps`` steps for both arms.  Every batch has
       ``batch_size / 2`` text sequences that are *identical* in the two arms
       of one seed; the other half is fresh text for the LM arm and grounded
       data (captions and image questions with hypernyms) for the VLM arm.
       Both arms use the same optimiser settings.
    """
    n_seeds = lm_params["embedding"].shape[0]
    worlds = [world] * n_seeds if isinstance(world, ToyWorld) else list(world)
    if len(worlds) != n_seeds or len({(w.taxonomy, w.visual_dim) for w in worlds}) != 1:
        raise ValueError(
            f"world must be one ToyWorld or one per pre-trained model ({n_seeds}) with the same taxonomy and "
            f"visual_dim, got {len(worlds)} worlds"
        )
    params = detached_copies(lm_params, 2)
    half = config.batch_size // 2
    visual_dim = worlds[0].visual_dim

    def grounded(n, **options):
        pairs = [grounded_batch(own_world, n, generator, **options) for own_world in worlds]
        return torch.stack([tokens for tokens, _ in pairs]), torch.stack([images for _, images in pairs])

    if alignment_steps > 0:
        vlm = {name: tensor.detach()[n_seeds:].clone().requires_grad_(True) for name, tensor in params.items()}

        def alignment_batch(step):
            tokens, images = grounded(config.batch_size, max_hop=0, caption_fraction=0.0)
            return tokens.to(device), images.to(device)

        train(vlm, alignment_batch, alignment_steps, config, trainable=("projection", "projection_bias"),
              desc="aligning the image projection")
        with torch.no_grad():
            for name in ("projection", "projection_bias"):
                params[name][n_seeds:] = vlm[name]

    def continuation_batch(step):
        shared = torch.stack([text_batch(own_world, half, generator) for own_world in worlds])
        more_text = torch.stack([text_batch(own_world, half, generator) for own_world in worlds])
        grounded_tokens, grounded_images = grounded(half)
        tokens = torch.cat([torch.cat([shared, more_text], dim=1), torch.cat([shared, grounded_tokens], dim=1)])
        images = torch.zeros(2 * n_seeds, config.batch_size, visual_dim)
        images[n_seeds:, half:] = grounded_images
        return tokens.to(device), images.to(device)

    train(params, continuation_batch, steps, config, desc="continuing the LM and VLM arms")
    return params
