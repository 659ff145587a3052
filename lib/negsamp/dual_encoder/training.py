"""Train an ensemble of dual encoders with different negatives in one vectorised loop, and evaluate it.

Every model draws its batches from its own data set (one of several
stacked training sets), at its own training-set size.  Every model also
uses its own :class:`Method`.  It gets in-batch negatives only, or one
extra caption negative per image, mined from real training captions by
the similarity-tempered sampler or made by a synthetic attribute edit,
with or without the local loss.  Models that share a data set and a size
see the same batches, so comparisons between them are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..progress import progress
from .losses import boundary_contrastive_loss, pooled_embedding
from .samplers import curriculum_temperature, sample_tempered_negatives
from .scenes import SceneSets, attribute_edit_negatives, boundary_gallery
from .towers import DualEncoderEnsemble, caption_token_embeddings, init_dual_encoders, slot_image_embeddings

NEGATIVE_KINDS = ("in-batch", "mined", "edit")


@dataclass(frozen=True)
class Method:
    """Negative-sampling method of one model.

    Attributes
    ----------
    name : str
        Label used in tables and figures.
    negatives : str
        ``in-batch`` (symmetric InfoNCE only), ``mined`` (one extra real
        training caption per image, drawn by the similarity-tempered
        sampler) or ``edit`` (one synthetic caption per image with one
        attribute changed at random).
    local_weight : float
        Weight of the local loss on the extra negative; 0 turns it off.
    sampler_start, sampler_end : float
        For ``mined``: the sampler temperature at the first step and after
        annealing (see :func:`~negsamp.dual_encoder.samplers.curriculum_temperature`).
        ``start > end`` is a curriculum, ``start == end`` small is
        hard-negative mining, ``start == end`` large is nearly uniform.
    """

    name: str
    negatives: str
    local_weight: float = 0.0
    sampler_start: float = 1.0
    sampler_end: float = 0.02

    def __post_init__(self):
        if self.negatives not in NEGATIVE_KINDS:
            raise ValueError(f"unknown negatives {self.negatives!r}; "
                             f"choose one of {', '.join(NEGATIVE_KINDS)}")
        if self.local_weight < 0:
            raise ValueError(f"local_weight must be >= 0, got {self.local_weight!r}")
        if self.local_weight > 0 and self.negatives == "in-batch":
            raise ValueError("the local loss needs an extra negative; use negatives 'mined' or 'edit'")
        if not (self.sampler_start > 0 and self.sampler_end > 0):
            raise ValueError(f"sampler temperatures must be positive, got {self.sampler_start!r} "
                             f"and {self.sampler_end!r}")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings shared by every model of an ensemble."""

    steps: int = 800
    batch_size: int = 64
    pool_size: int = 128            # real training captions the sampler chooses from, per step
    learning_rate: float = 3e-3     # Adam
    temperature: float = 0.1        # global InfoNCE
    local_temperature: float = 0.1  # local loss
    anneal_fraction: float = 0.7    # share of the steps over which sampler temperatures fall
    hidden: int = 64
    dim: int = 32


@dataclass
class TrainingLog:
    """Per-step records of shape ``(steps, models)``.

    ``negative_overlap`` is the mean number of slots an extra negative
    shares with its anchor's caption, a difficulty measure that does not
    depend on the model.  ``negative_similarity`` and ``batch_similarity``
    are the mean cosine between an image and its extra negative caption or
    its in-batch negative captions.  ``sampler_temperature`` is each mined
    model's temperature.  Entries that do not apply to a model are NaN.
    """

    sampler_temperature: torch.Tensor
    negative_overlap: torch.Tensor
    negative_similarity: torch.Tensor
    batch_similarity: torch.Tensor
    loss: torch.Tensor
    local_loss: torch.Tensor


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table`` (models, n, S) and ``rows`` (models, B) give ``(models, B, S)``."""
    return torch.gather(table, 1, rows.unsqueeze(-1).expand(-1, -1, table.shape[-1]))


def _caption_codes(captions: torch.Tensor, n_values: int) -> torch.Tensor:
    """Encode each caption as one integer (its digits in base ``n_values``), equal for equal captions."""
    powers = n_values ** torch.arange(captions.shape[-1], device=captions.device)
    return (captions * powers).sum(dim=-1)


def _mine_real_negatives(model: DualEncoderEnsemble, image: torch.Tensor, captions: torch.Tensor,
                         pool: torch.Tensor, temperature: torch.Tensor, n_values: int,
                         generator: torch.Generator) -> torch.Tensor:
    """Draw one pool caption per image from the tempered sampler, never a copy of the image's caption.

    ``image`` is ``(models, B, dim)``, ``captions`` ``(models, B, S)``, ``pool``
    ``(models, P, S)`` and ``temperature`` ``(models,)``; returns ``(models, B, S)``.
    """
    pool_captions = pooled_embedding(caption_token_embeddings(model, pool))
    pool_similarity = image @ pool_captions.transpose(-1, -2)  # (models, B, P)
    pool_codes = _caption_codes(pool, n_values).unsqueeze(1)
    allowed = pool_codes != _caption_codes(captions, n_values).unsqueeze(2)
    # A pool made only of copies of the caption cannot give a negative; such a row draws any member.
    allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
    drawn = sample_tempered_negatives(pool_similarity, temperature.view(-1, 1, 1), allowed, generator)
    return _gather_rows(pool, drawn)


def train_dual_encoders(scenes: SceneSets, dataset: list[int], n_train: list[int], methods: list[Method],
                        n_values: int, config: TrainingConfig, generator: torch.Generator,
                        device: torch.device | str = "cpu", desc: str | None = None
                        ) -> tuple[DualEncoderEnsemble, TrainingLog]:
    """Train one dual encoder per entry of ``dataset``, ``n_train`` and ``methods``, all at once.

    Parameters
    ----------
    scenes : SceneSets
        The stacked training sets; their test sets are not used.
    dataset, n_train : list of int
        Per model: which training set it uses, and how many of that set's
        first scenes (``2 <= n_train <=`` the set's size).
    methods : list of Method
        Per model.
    n_values : int
        Values per slot.
    config : TrainingConfig
    generator : torch.Generator
        CPU generator for initialisation, batches and samplers.
    device : torch.device or str
        Where the models train.
    desc : str, optional
        Progress-bar label; no bar when omitted.

    Returns
    -------
    model : DualEncoderEnsemble
    log : TrainingLog
    """
    n_models = len(methods)
    if not (len(dataset) == len(n_train) == n_models >= 1):
        raise ValueError(f"dataset, n_train and methods need one entry per model, got lengths "
                         f"{len(dataset)}, {len(n_train)} and {n_models}")
    attributes, image_indices, bank_pixels = scenes.train_attributes, scenes.train_images, scenes.pixels
    n_datasets, n_max, n_slots = attributes.shape
    if min(n_train) < 2 or max(n_train) > n_max or min(dataset) < 0 or max(dataset) >= n_datasets:
        raise ValueError(f"need 2 <= n_train <= {n_max} and 0 <= dataset < {n_datasets}, got n_train in "
                         f"[{min(n_train)}, {max(n_train)}] and dataset in [{min(dataset)}, {max(dataset)}]")

    # === Per-model settings as tensors === #
    device = torch.device(device)
    dataset_of = torch.tensor(dataset)
    size_of = torch.tensor(n_train, dtype=torch.float64).unsqueeze(1)
    uses_extra = torch.tensor([method.negatives != "in-batch" for method in methods], device=device)
    is_mined = torch.tensor([method.negatives == "mined" for method in methods])
    mined_models = torch.nonzero(is_mined).flatten()
    local_weight = torch.tensor([method.local_weight for method in methods], device=device,
                                dtype=bank_pixels.dtype)
    attributes_of = attributes[dataset_of].to(device)
    images_of = image_indices[dataset_of].to(device)
    bank_pixels = bank_pixels.to(device)

    model = init_dual_encoders(n_models, bank_pixels.shape[1], n_slots, n_values, config.hidden, config.dim,
                               generator, device, bank_pixels.dtype)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    names = ("sampler_temperature", "negative_overlap", "negative_similarity", "batch_similarity", "loss",
             "local_loss")
    records = {name: torch.full((config.steps, n_models), float("nan")) for name in names}
    off_diagonal = ~torch.eye(config.batch_size, dtype=torch.bool, device=device)
    nan = torch.tensor(float("nan"), device=device)

    steps = range(config.steps)
    for step in (progress(steps, desc=desc) if desc else steps):
        # === Batches: models on one data set share the uniforms, so equal sizes share batches === #
        uniform = torch.rand(n_datasets, config.batch_size, generator=generator, dtype=torch.float64)
        rows = (uniform[dataset_of] * size_of).long().to(device)
        captions = _gather_rows(attributes_of, rows)
        pixels = bank_pixels[_gather_rows(images_of, rows)]
        slot_images = slot_image_embeddings(model, pixels)
        tokens = caption_token_embeddings(model, captions)

        # === Extra negatives: the tempered sampler over real captions, or attribute edits === #
        pool_uniform = torch.rand(n_datasets, config.pool_size, generator=generator, dtype=torch.float64)
        pool_rows = (pool_uniform[dataset_of[mined_models]] * size_of[mined_models]).long().to(device)
        temperature = torch.tensor([curriculum_temperature(step, config.steps, method.sampler_start,
                                                           method.sampler_end, config.anneal_fraction)
                                    for method in methods])
        with torch.no_grad():
            image = pooled_embedding(slot_images)
            # In-batch models get edits too, so that every row contains a valid caption. The mask
            # keeps those edits out of the loss.
            extra = attribute_edit_negatives(captions, n_values, generator)
            if mined_models.numel():
                on_device = mined_models.to(device)
                extra[on_device] = _mine_real_negatives(
                    model.select(on_device), image[on_device], captions[on_device],
                    _gather_rows(attributes_of[on_device], pool_rows), temperature[mined_models].to(device),
                    n_values, generator)
        extra_tokens = caption_token_embeddings(model, extra)
        differs = extra != captions

        loss = boundary_contrastive_loss(slot_images, tokens, extra_tokens, differs, uses_extra.unsqueeze(1),
                                         local_weight, config.temperature, config.local_temperature)
        optimiser.zero_grad()
        loss.total.sum().backward()
        optimiser.step()

        # === Records === #
        with torch.no_grad():
            batch_similarity = image @ pooled_embedding(tokens).transpose(-1, -2)
            extra_similarity = (image * pooled_embedding(extra_tokens)).sum(dim=-1).mean(dim=-1)
            overlap = (~differs).sum(dim=-1).to(image.dtype).mean(dim=-1)
            records["sampler_temperature"][step] = torch.where(is_mined, temperature, float("nan"))
            records["negative_overlap"][step] = torch.where(uses_extra, overlap, nan).cpu()
            records["negative_similarity"][step] = torch.where(uses_extra, extra_similarity, nan).cpu()
            records["batch_similarity"][step] = batch_similarity[:, off_diagonal].mean(dim=-1).cpu()
            records["loss"][step] = loss.total.detach().cpu()
            records["local_loss"][step] = loss.local_term.detach().cpu()

    return model, TrainingLog(**records)


@torch.no_grad()
def boundary_gallery_scores(model: DualEncoderEnsemble, scenes: SceneSets, dataset: list[int], n_values: int,
                            models_per_chunk: int = 8) -> torch.Tensor:
    """Score each test image against its boundary gallery, for every model.

    Parameters
    ----------
    scenes : SceneSets
        Its test sets are scored.
    dataset : list of int
        Per model, which test set to use.
    n_values : int
    models_per_chunk : int
        Models scored at once, which bounds memory.

    Returns
    -------
    Tensor
        Shape ``(models, n_test, 1 + S (n_values - 1))``: cosine
        similarities, with the true caption in column 0 (see
        :func:`~negsamp.dual_encoder.scenes.boundary_gallery`).
    """
    device = model.token_table.device
    dataset_of = torch.tensor(dataset)
    gallery = boundary_gallery(scenes.test_attributes, n_values)[dataset_of].to(device)
    pixels = scenes.pixels.to(device)[scenes.test_images[dataset_of].to(device)]
    image = pooled_embedding(slot_image_embeddings(model, pixels))
    chunks = []
    for start in range(0, model.n_models, models_per_chunk):
        part = slice(start, start + models_per_chunk)
        captions = pooled_embedding(caption_token_embeddings(model.select(part), gallery[part]))
        chunks.append((captions @ image[part].unsqueeze(-1)).squeeze(-1))
    return torch.cat(chunks).cpu()


@torch.no_grad()
def paired_similarity(model: DualEncoderEnsemble, scenes: SceneSets, dataset: list[int],
                      models: list[int] | None = None) -> torch.Tensor:
    """Cosine similarity of every test image with every test caption of its data set.

    Parameters
    ----------
    model : DualEncoderEnsemble
    scenes : SceneSets
        Its test sets are scored.
    dataset : list of int
        Per model of the ensemble, which test set to use.
    models : list of int, optional
        Score only these models (the result can be large); all by default.

    Returns
    -------
    Tensor
        Shape ``(len(models), n_test, n_test)``.  The matching caption of
        image ``i`` is caption ``i``, as
        :func:`negsamp.metrics.recall_at_k_retrieval` expects.
    """
    device = model.token_table.device
    chosen = torch.arange(model.n_models) if models is None else torch.as_tensor(models)
    dataset_of = torch.as_tensor(dataset)[chosen]
    part = model.select(chosen.to(device))
    pixels = scenes.pixels.to(device)[scenes.test_images[dataset_of].to(device)]
    image = pooled_embedding(slot_image_embeddings(part, pixels))
    caption = pooled_embedding(caption_token_embeddings(part, scenes.test_attributes[dataset_of].to(device)))
    return (image @ caption.transpose(-1, -2)).cpu()
