"""A tiny conditional language model with an image projection, and its decoders.

The model mirrors the three parts of a LLaVA-style multimodal model at toy
scale.  The "vision encoder" is the identity on the image vector.  A linear
image projection ``W`` maps the image to visual features.  A small "language
model" maps the visual features, the task, the bag of tokens emitted so far
and the position to next-token logits.  Because the projection is a separate
module, decoupled contrastive decoding can swap in a positive or a negative
projection while the language model stays fixed.

Decoders share one interface: ``prepare`` computes per-image state once
(VCD's noised copy of the image), and ``scores`` returns the next-token scores
for a batch of prefixes.  Scores of ``-inf`` mark tokens that cannot be emitted.
"""

from __future__ import annotations

import torch
from torch import nn

from .rules import contrastive_scores, noise_image
from .world import CAPTION, N_TASKS, PAD, ToyWorld


class ToyMLLM(nn.Module):
    """Image projection plus a two-hidden-layer GELU network over (visual, task, bag, position).

    Parameters
    ----------
    world : ToyWorld
        Fixes the image size, the vocabulary and the longest caption.
    visual_dim : int
        Output size of the image projection.
    hidden : int
        Width of both hidden layers of the language model.
    """

    def __init__(self, world: ToyWorld, visual_dim: int = 16, hidden: int = 64) -> None:
        super().__init__()
        if visual_dim < 1 or hidden < 1:
            raise ValueError(f"visual_dim and hidden must be positive, got {visual_dim!r} and {hidden!r}")
        self.world = world
        self.projection = nn.Linear(world.image_dim, visual_dim)
        inputs = visual_dim + N_TASKS + world.bag_dim + world.max_len
        self.language_model = nn.Sequential(
            nn.Linear(inputs, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, world.vocab_size),
        )

    def forward(self, images: torch.Tensor, task: torch.Tensor, bag: torch.Tensor, position: torch.Tensor,
                projection: nn.Module | None = None) -> torch.Tensor:
        """Return next-token logits, shape (B, vocab_size).

        Parameters
        ----------
        images : Tensor, shape (B, image_dim)
        task : Tensor, shape (B,), long
            ``CAPTION``, ``COUNT`` or ``WEATHER``.
        bag : Tensor, shape (B, bag_dim)
            How often each object and ``BG`` has been emitted so far.
        position : Tensor, shape (B,), long
            Index of the token being predicted, ``0 .. max_len - 1``.
        projection : Module, optional
            Image projection to use instead of the model's own (DCD's positive
            or negative projection).
        """
        projection = self.projection if projection is None else projection
        features = torch.cat([
            projection(images),
            nn.functional.one_hot(task, N_TASKS).to(images.dtype),
            bag.to(images.dtype),
            nn.functional.one_hot(position, self.world.max_len).to(images.dtype),
        ], dim=1)
        return self.language_model(features)


# === Teacher forcing === #


def prefix_bags(world: ToyWorld, tokens: torch.Tensor) -> torch.Tensor:
    """Bag of objects and ``BG`` emitted before each position, shape (n, L, bag_dim)."""
    in_bag = (tokens >= 0) & (tokens < world.bag_dim)
    one_hot = nn.functional.one_hot(tokens.clamp(0, world.bag_dim - 1), world.bag_dim)
    one_hot = one_hot * in_bag.unsqueeze(2)
    return torch.cumsum(one_hot, dim=1) - one_hot


def token_log_probs(model: ToyMLLM, images: torch.Tensor, tokens: torch.Tensor,
                    projection: nn.Module | None = None) -> torch.Tensor:
    """Log-probability of each caption token given its prefix and the image, 0 at ``PAD``.

    Parameters
    ----------
    images : Tensor, shape (n, image_dim)
    tokens : Tensor, shape (n, L), long
        Captions as returned by :func:`~negsamp.decoding.world.compact_slots`.

    Returns
    -------
    Tensor, shape (n, L)
    """
    if tokens.shape[0] != images.shape[0]:
        raise ValueError(f"tokens and images must have the same number of rows, got {tokens.shape[0]} "
                         f"and {images.shape[0]}")
    valid = tokens != PAD
    rows, columns = valid.nonzero(as_tuple=True)
    bags = prefix_bags(model.world, tokens)[rows, columns]
    task = torch.full_like(rows, CAPTION)
    logits = model(images[rows], task, bags, columns, projection=projection)
    picked = torch.log_softmax(logits, dim=1).gather(1, tokens[rows, columns].unsqueeze(1)).squeeze(1)
    result = torch.zeros(tokens.shape, dtype=picked.dtype, device=picked.device)
    return result.index_put((rows, columns), picked)


def caption_log_probs(model: ToyMLLM, images: torch.Tensor, tokens: torch.Tensor,
                      projection: nn.Module | None = None) -> torch.Tensor:
    """Log-probability of each whole caption, shape (n,): the sum of :func:`token_log_probs`."""
    return token_log_probs(model, images, tokens, projection).sum(dim=1)


def answer_log_probs(model: ToyMLLM, images: torch.Tensor, task: int, answers: torch.Tensor,
                     projection: nn.Module | None = None) -> torch.Tensor:
    """Log-probability of a one-token answer to ``task`` (``COUNT`` or ``WEATHER``), shape (n,)."""
    logits = model(images, *_answer_state(model.world, images, task), projection=projection)
    return torch.log_softmax(logits, dim=1).gather(1, answers.unsqueeze(1)).squeeze(1)


def _answer_state(world: ToyWorld, images: torch.Tensor, task: int):
    n = images.shape[0]
    return (torch.full((n,), task, dtype=torch.long, device=images.device),
            torch.zeros(n, world.bag_dim, dtype=images.dtype, device=images.device),
            torch.zeros(n, dtype=torch.long, device=images.device))


# === Decoders === #


class BaseDecoder:
    """Plain decoding: the scores are the model's logits."""

    def __init__(self, model: ToyMLLM) -> None:
        self.model = model

    def prepare(self, images: torch.Tensor, generator: torch.Generator):
        """Return the per-image state, here the images themselves."""
        return images

    def scores(self, state, task, bag, position) -> torch.Tensor:
        """Return next-token scores, shape (B, vocab_size)."""
        return self.model(state, task, bag, position)


class VCDDecoder(BaseDecoder):
    """Visual contrastive decoding: contrast the image with a diffusion-noised copy of it.

    The noised image is drawn once per image in :meth:`prepare`, so every
    token of a caption sees the same negative, as in the VCD code.

    Parameters
    ----------
    model : ToyMLLM
    alpha : float
        Contrast strength; 0 gives plain decoding.
    beta : float
        Adaptive plausibility threshold, applied to the clean-image branch.
    noise_step : int
        Forward-diffusion step ``T`` of the noised copy (VCD uses 500 and 999).

    References
    ----------
    S. Leng et al., "Mitigating object hallucinations in large vision-language
    models through visual contrastive decoding", CVPR 2024.
    """

    def __init__(self, model: ToyMLLM, alpha: float, beta: float, noise_step: int) -> None:
        super().__init__(model)
        self.alpha, self.beta, self.noise_step = alpha, beta, noise_step

    def prepare(self, images, generator):
        """Return ``(images, noised_images)``; the noise comes from ``generator``."""
        return images, noise_image(images, self.noise_step, generator)

    def scores(self, state, task, bag, position):
        """Return ``(1 + alpha) l(v) - alpha l(v')`` with implausible tokens at ``-inf``."""
        images, noised = state
        positive = self.model(images, task, bag, position)
        negative = self.model(noised, task, bag, position)
        return contrastive_scores(positive, negative, self.alpha, self.beta)


class DCDDecoder(BaseDecoder):
    """Decoupled contrastive decoding: the same image through a positive and a negative projection.

    Parameters
    ----------
    model : ToyMLLM
        Supplies the (frozen) language model.
    positive, negative : Module
        Image projections trained on the chosen and on the rejected captions.
        Passing ``model.projection`` as ``positive`` gives the "negative only"
        variant.
    alpha, beta : float
        Contrast strength and adaptive plausibility threshold.

    References
    ----------
    W. Chen et al., "Decoupling contrastive decoding: Robust hallucination
    mitigation in multimodal large language models", NeurIPS 2025.  Its
    abstract states that separate positive and negative projections are
    learned from preference data and contrasted at decoding time.  The exact
    rule below and the plausibility constraint on the positive branch follow
    VCD and are our reading, because we could not read the method section.
    """

    def __init__(self, model: ToyMLLM, positive: nn.Module, negative: nn.Module,
                 alpha: float, beta: float) -> None:
        super().__init__(model)
        self.positive, self.negative = positive, negative
        self.alpha, self.beta = alpha, beta

    def scores(self, state, task, bag, position):
        """Return ``(1 + alpha) l(W+ v) - alpha l(W- v)`` with implausible tokens at ``-inf``."""
        positive = self.model(state, task, bag, position, projection=self.positive)
        negative = self.model(state, task, bag, position, projection=self.negative)
        return contrastive_scores(positive, negative, self.alpha, self.beta)


@torch.no_grad()
def sample_captions(decoder: BaseDecoder, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample one caption per image at temperature 1 from the decoder's scores.

    Sampling stops at ``EOS`` or after ``max_len`` tokens.  Random numbers come
    from ``generator``, which must live on the images' device.

    Returns
    -------
    Tensor, shape (n, max_len), long
        Tokens, with ``PAD`` after ``EOS``.
    """
    world = decoder.model.world
    n = images.shape[0]
    state = decoder.prepare(images, generator)
    task = torch.full((n,), CAPTION, dtype=torch.long, device=images.device)
    bag = torch.zeros(n, world.bag_dim, dtype=images.dtype, device=images.device)
    finished = torch.zeros(n, dtype=torch.bool, device=images.device)
    tokens = torch.full((n, world.max_len), PAD, dtype=torch.long, device=images.device)
    for position in range(world.max_len):
        where = torch.full((n,), position, dtype=torch.long, device=images.device)
        probabilities = torch.softmax(decoder.scores(state, task, bag, where), dim=1)
        drawn = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        drawn = torch.where(finished, torch.full_like(drawn, PAD), drawn)
        tokens[:, position] = drawn
        in_bag = (drawn >= 0) & (drawn < world.bag_dim)
        emitted = nn.functional.one_hot(drawn.clamp(0, world.bag_dim - 1), world.bag_dim)
        bag = bag + emitted * in_bag.unsqueeze(1)
        finished = finished | (drawn == world.eos)
        if bool(finished.all()):
            break
    return tokens


@torch.no_grad()
def greedy_answers(decoder: BaseDecoder, images: torch.Tensor, task: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Return the highest-scoring one-token answer to ``task`` for each image, shape (n,)."""
    state = decoder.prepare(images, generator)
    return decoder.scores(state, *_answer_state(decoder.model.world, images, task)).argmax(dim=1)
