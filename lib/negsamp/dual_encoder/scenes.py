"""Paired scenes with attribute captions, boundary galleries and attribute-edit negatives.

A scene has ``n_slots`` slots.  Each slot shows one small image of a class
(a digit, say) and the caption lists the class of every slot, so a caption
is a row of ``n_slots`` integers in ``[0, n_values)``.  Two captions that
differ in one slot are *boundary* pairs: a retrieval model must read that
one slot of the image to tell them apart.

Tensors of scenes carry any leading batch shape: attributes have shape
``(..., n_slots)`` and the image indices that :func:`draw_scene_images`
returns have the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageBank:
    """Images grouped by class, so that a scene can draw any image of a requested class.

    Attributes
    ----------
    images : Tensor
        Shape ``(n_images, n_pixels)``, sorted by class.
    labels : Tensor
        Shape ``(n_images,)``, non-decreasing class labels in ``[0, n_classes)``.
    class_offsets, class_counts : Tensor
        Shape ``(n_classes,)``: the images of class ``c`` are rows
        ``class_offsets[c]`` to ``class_offsets[c] + class_counts[c] - 1``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_offsets: torch.Tensor
    class_counts: torch.Tensor

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return int(self.class_counts.numel())

    @property
    def n_pixels(self) -> int:
        """Length of one flattened image."""
        return int(self.images.shape[1])


def image_bank(images, labels, n_classes: int | None = None) -> ImageBank:
    """Group images by class into an :class:`ImageBank`.

    Parameters
    ----------
    images : array or Tensor
        Shape ``(n_images, n_pixels)``.
    labels : array or Tensor
        Shape ``(n_images,)``, integer classes in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes; defaults to ``max(labels) + 1``.  Every class must
        have at least one image.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels).long()
    if images.ndim != 2 or labels.shape != (images.shape[0],):
        raise ValueError(f"images must be (n, pixels) and labels (n,), got {tuple(images.shape)} "
                         f"and {tuple(labels.shape)}")
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError("labels must be non-empty and non-negative")
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    counts = torch.bincount(labels, minlength=n_classes)
    if counts.numel() > n_classes or torch.any(counts == 0):
        raise ValueError(f"every class in [0, {n_classes}) needs at least one image; "
                         f"counts {counts.tolist()}")
    order = torch.argsort(labels, stable=True)
    offsets = torch.cumsum(counts, 0) - counts
    return ImageBank(images[order], labels[order], offsets.to(images.device), counts.to(images.device))


def synthetic_prototypes(n_classes: int, n_pixels: int, generator: torch.Generator,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw one random prototype image per class, pixels ``sigmoid(2 z)`` with ``z ~ N(0, 1)``.

    The pixels lie in (0, 1) like the digits'.  Returns shape ``(n_classes, n_pixels)``.
    """
    if n_classes < 2 or n_pixels < 1:
        raise ValueError(f"need n_classes >= 2 and n_pixels >= 1, got {n_classes} and {n_pixels}")
    return torch.sigmoid(2 * torch.randn(n_classes, n_pixels, generator=generator, dtype=dtype))


def synthetic_image_bank(prototypes: torch.Tensor, n_per_class: int, noise: float,
                         generator: torch.Generator) -> ImageBank:
    """Draw a bank of noisy copies of class prototypes, the synthetic control for the digits.

    Image ``i`` of class ``c`` is ``prototypes[c]`` plus independent
    ``N(0, noise**2)`` pixel noise, so the best one-slot classifier is the
    nearest prototype, and its error is known (tiny when ``noise`` is small
    against the distances between prototypes).
    """
    if n_per_class < 1 or noise < 0:
        raise ValueError(f"need n_per_class >= 1 and noise >= 0, got {n_per_class} and {noise}")
    n_classes, n_pixels = prototypes.shape
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    images = prototypes[labels] + noise * torch.randn(labels.numel(), n_pixels, generator=generator,
                                                       dtype=prototypes.dtype)
    return image_bank(images, labels, n_classes)


def nearest_prototype(images: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Classify images ``(..., P)`` by their nearest prototype in Euclidean distance; returns ``(...)``."""
    distances = torch.cdist(images.reshape(-1, images.shape[-1]), prototypes)
    return distances.argmin(dim=-1).reshape(images.shape[:-1])


def draw_attributes(shape: tuple[int, ...], n_slots: int, n_values: int, shortcut: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Draw caption attributes, optionally tying the last slot to the first.

    Every slot is uniform on ``[0, n_values)``.  With probability
    ``shortcut`` a scene's last slot, the *detail*, is then overwritten by
    ``(first + 1) mod n_values``.  With ``shortcut = 0`` the slots are
    independent.  With ``shortcut`` near 1, two random scenes that differ in
    the detail almost always differ in the first slot too, so in-batch
    negatives rarely isolate the detail.

    Returns
    -------
    Tensor
        Shape ``(*shape, n_slots)``, dtype ``long``.
    """
    if n_slots < 2 or n_values < 2:
        raise ValueError(f"need n_slots >= 2 and n_values >= 2, got {n_slots} and {n_values}")
    if not 0.0 <= shortcut <= 1.0:
        raise ValueError(f"shortcut is a probability, got {shortcut!r}; use a value in [0, 1]")
    attributes = torch.randint(0, n_values, (*shape, n_slots), generator=generator)
    tied = torch.rand(shape, generator=generator) < shortcut
    detail = torch.where(tied, (attributes[..., 0] + 1) % n_values, attributes[..., -1])
    attributes[..., -1] = detail
    return attributes


def shortcut_fraction(attributes: torch.Tensor, n_values: int) -> float:
    """Return the share of captions whose detail equals ``(first + 1) mod n_values``."""
    return float(((attributes[..., 0] + 1) % n_values == attributes[..., -1]).double().mean())


def draw_scene_images(bank: ImageBank, attributes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick, for every slot, a uniformly random bank image of the slot's class.

    Returns row indices into ``bank.images`` with the shape of ``attributes``.
    """
    if int(attributes.max()) >= bank.n_classes or int(attributes.min()) < 0:
        raise ValueError(f"attributes must lie in [0, {bank.n_classes}), the bank's classes")
    uniform = torch.rand(attributes.shape, generator=generator, dtype=torch.float64)
    counts = bank.class_counts.cpu()[attributes]
    within = torch.minimum((uniform * counts).long(), counts - 1)
    return bank.class_offsets.cpu()[attributes] + within


def boundary_gallery(attributes: torch.Tensor, n_values: int) -> torch.Tensor:
    """Return each caption followed by every caption that differs from it in exactly one slot.

    Parameters
    ----------
    attributes : Tensor
        Shape ``(..., n_slots)``.
    n_values : int
        Values per slot.

    Returns
    -------
    Tensor
        Shape ``(..., 1 + n_slots * (n_values - 1), n_slots)``.  Entry 0 is
        the caption itself; entry ``1 + k (n_values - 1) + j`` replaces slot
        ``k`` by ``(value + 1 + j) mod n_values``.
    """
    n_slots = attributes.shape[-1]
    shifts = torch.arange(1, n_values, device=attributes.device)
    changed = (attributes.unsqueeze(-1) + shifts) % n_values  # (..., slot changed, n_values - 1)
    is_changed_slot = torch.eye(n_slots, dtype=torch.bool, device=attributes.device).unsqueeze(-2)
    distractors = torch.where(is_changed_slot, changed.unsqueeze(-1), attributes[..., None, None, :])
    distractors = distractors.reshape(*attributes.shape[:-1], n_slots * (n_values - 1), n_slots)
    return torch.cat([attributes.unsqueeze(-2), distractors], dim=-2)


def attribute_edit_negatives(attributes: torch.Tensor, n_values: int,
                             generator: torch.Generator) -> torch.Tensor:
    """Edit one uniformly chosen slot of every caption to a uniformly chosen different value.

    These synthetic negatives differ from their anchor in exactly one slot,
    whether or not the edited caption could occur in the data.
    """
    n_slots = attributes.shape[-1]
    slot = torch.randint(0, n_slots, attributes.shape[:-1], generator=generator).to(attributes.device)
    shift = torch.randint(1, n_values, attributes.shape[:-1], generator=generator).to(attributes.device)
    chosen = torch.nn.functional.one_hot(slot, n_slots).bool()
    edited = (attributes + shift.unsqueeze(-1)) % n_values
    return torch.where(chosen, edited, attributes)


@dataclass(frozen=True)
class SceneSets:
    """Several stacked training and test sets of scenes that share one pixel table.

    Attributes
    ----------
    pixels : Tensor
        Shape ``(n_images, P)``: every image any scene shows.
    train_attributes, train_images : Tensor
        Shape ``(n_sets, n_train, S)``: captions and the ``pixels`` row of each slot.
    test_attributes, test_images : Tensor
        Shape ``(n_sets, n_test, S)``.
    """

    pixels: torch.Tensor
    train_attributes: torch.Tensor
    train_images: torch.Tensor
    test_attributes: torch.Tensor
    test_images: torch.Tensor

    @property
    def n_sets(self) -> int:
        """Number of stacked data sets."""
        return int(self.train_attributes.shape[0])


def compose_scene_sets(train_bank: ImageBank, test_bank: ImageBank, n_sets: int, n_train: int, n_test: int,
                       n_slots: int, shortcut: float, generator: torch.Generator) -> SceneSets:
    """Compose ``n_sets`` independent training and test sets of scenes.

    Training scenes draw their slot images from ``train_bank`` and their
    captions from :func:`draw_attributes` with the given ``shortcut``.  Test
    scenes draw images from ``test_bank`` (images no model was trained on)
    and captions with independent slots, so a shortcut learned in training
    does not hold at test time.
    """
    if train_bank.n_classes != test_bank.n_classes or train_bank.n_pixels != test_bank.n_pixels:
        raise ValueError("train and test banks must have the same classes and image size")
    n_values = train_bank.n_classes
    train_attributes = draw_attributes((n_sets, n_train), n_slots, n_values, shortcut, generator)
    train_images = draw_scene_images(train_bank, train_attributes, generator)
    test_attributes = draw_attributes((n_sets, n_test), n_slots, n_values, 0.0, generator)
    test_images = draw_scene_images(test_bank, test_attributes, generator) + train_bank.images.shape[0]
    pixels = torch.cat([train_bank.images, test_bank.images])
    return SceneSets(pixels, train_attributes, train_images, test_attributes, test_images)


def stack_scene_sets(*scene_sets: SceneSets) -> SceneSets:
    """Stack scene sets of equal sizes into one, offsetting image indices into the joined pixel table."""
    if not scene_sets:
        raise ValueError("give at least one SceneSets")
    shapes = {(tuple(s.train_attributes.shape[1:]), tuple(s.test_attributes.shape[1:])) for s in scene_sets}
    if len(shapes) != 1:
        raise ValueError(f"scene sets must share training and test sizes, got {sorted(shapes)}")
    widths = {s.pixels.shape[1] for s in scene_sets}
    if len(widths) != 1:
        raise ValueError(f"scene sets must share one image size, got {sorted(widths)} pixels")
    offsets = torch.tensor([0] + [s.pixels.shape[0] for s in scene_sets[:-1]]).cumsum(0)
    return SceneSets(
        pixels=torch.cat([s.pixels for s in scene_sets]),
        train_attributes=torch.cat([s.train_attributes for s in scene_sets]),
        train_images=torch.cat([s.train_images + int(o) for s, o in zip(scene_sets, offsets)]),
        test_attributes=torch.cat([s.test_attributes for s in scene_sets]),
        test_images=torch.cat([s.test_images + int(o) for s, o in zip(scene_sets, offsets)]),
    )
