"""A toy multimodal world whose hallucinations come from a real co-occurrence prior.

Objects come in co-occurring pairs (think knife and fork).  A scene draws each
pair with probability ``pair_rate`` and then shows one member or both.  The
"image" is a noisy multi-hot vector over the objects followed by a one-hot
weather slot.  Web captions list the objects in a fixed order, but when only
one member of a pair is visible they often also name its absent partner.  A
model trained on them therefore learns to hallucinate the partners of the
objects it sees.  Visible content triggers these hallucinations, so a noised
copy of the image still carries the trigger, while a learned negative can
model the pattern itself.

Token layout (``ToyWorld`` computes the ids): the objects ``0 .. 2P-1``, with
the pair ``(2i, 2i+1)``; the filler token ``BG``; ``EOS``; the count answers
``1 .. max_count``; the weather answers.  Padding after ``EOS`` is ``PAD = -1``.

References
----------
.. [1] W. Chen et al., "Decoupling contrastive decoding: Robust hallucination
   mitigation in multimodal large language models", NeurIPS 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PAD = -1
CAPTION, COUNT, WEATHER = 0, 1, 2
N_TASKS = 3
TASK_NAMES = ("caption", "count", "weather")


def _check_probability(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class ToyWorld:
    """Parameters of the toy world and the token ids they imply.

    Parameters
    ----------
    n_pairs : int
        Number of co-occurring object pairs ``P``; there are ``2P`` objects.
    pair_rate : float
        Probability that a scene draws a given pair.
    both_rate : float
        Given a drawn pair, probability that both members are in the scene;
        otherwise one member, each with probability ``(1 - both_rate) / 2``.
    partner_rate : float
        Web captions: probability of naming the absent partner of a lone member.
    filler_rate : float
        Web captions: probability of putting ``BG`` in that partner's place instead.
    image_noise : float
        Standard deviation of the Gaussian noise added to every image coordinate.
    n_weathers : int
        Number of weather classes (the clean-margin general task).
    max_count : int
        Largest count answer; scenes with more objects answer ``max_count``.
    """

    n_pairs: int = 6
    pair_rate: float = 0.35
    both_rate: float = 0.2
    partner_rate: float = 0.6
    filler_rate: float = 0.2
    image_noise: float = 0.3
    n_weathers: int = 4
    max_count: int = 6

    def __post_init__(self) -> None:
        for name in ("n_pairs", "n_weathers", "max_count"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("pair_rate", "both_rate", "partner_rate", "filler_rate"):
            _check_probability(name, getattr(self, name))
        if self.partner_rate + self.filler_rate > 1:
            raise ValueError(
                f"partner_rate + filler_rate must be at most 1, got {self.partner_rate} + {self.filler_rate}"
            )
        if not (self.image_noise >= 0 and math.isfinite(self.image_noise)):
            raise ValueError(f"image_noise must be a finite non-negative number, got {self.image_noise!r}")

    @property
    def n_objects(self) -> int:
        """Number of objects, ``2 * n_pairs``."""
        return 2 * self.n_pairs

    @property
    def bg(self) -> int:
        """Id of the filler token that faithful captions put where a partner would be."""
        return self.n_objects

    @property
    def eos(self) -> int:
        """Id of the end-of-caption token."""
        return self.n_objects + 1

    def count_token(self, count: torch.Tensor) -> torch.Tensor:
        """Return the token ids of count answers ``1 .. max_count``."""
        return self.n_objects + 1 + count

    def weather_token(self, weather: torch.Tensor) -> torch.Tensor:
        """Return the token ids of weather answers ``0 .. n_weathers - 1``."""
        return self.n_objects + 2 + self.max_count + weather

    @property
    def vocab_size(self) -> int:
        """Objects, ``BG``, ``EOS``, counts and weathers."""
        return self.n_objects + 2 + self.max_count + self.n_weathers

    @property
    def image_dim(self) -> int:
        """Length of an image vector: one coordinate per object plus the weather one-hot."""
        return self.n_objects + self.n_weathers

    @property
    def bag_dim(self) -> int:
        """Length of the bag of tokens already emitted: the objects and ``BG``."""
        return self.n_objects + 1

    @property
    def max_len(self) -> int:
        """Maximum caption length: one slot per object plus ``EOS``."""
        return self.n_objects + 1

    def partner(self, objects: torch.Tensor) -> torch.Tensor:
        """Return the partner of each object id (``2i`` and ``2i + 1`` are partners)."""
        return objects ^ 1


@dataclass(frozen=True)
class Scenes:
    """A batch of scenes and their rendered images.

    Attributes
    ----------
    objects : Tensor, shape (n, 2P), bool
        Which objects are in each scene.
    weather : Tensor, shape (n,), long
        Weather class of each scene.
    images : Tensor, shape (n, 2P + n_weathers), float
        Noisy image vectors.
    """

    objects: torch.Tensor
    weather: torch.Tensor
    images: torch.Tensor

    def __len__(self) -> int:
        return self.objects.shape[0]

    def subset(self, rows: torch.Tensor) -> "Scenes":
        """Return the scenes at ``rows`` (indices or a boolean mask)."""
        return Scenes(self.objects[rows], self.weather[rows], self.images[rows])


# === Scenes and images === #


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def sample_scenes(world: ToyWorld, n: int, generator: torch.Generator, device="cpu") -> Scenes:
    """Draw ``n`` scenes with at least one object each, and render their images.

    A scene with no object gets one pair, chosen uniformly, drawn afresh with
    the usual member probabilities, so every caption names something.
    Random numbers come from ``generator`` (on its own device) and the result
    lives on ``device``.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"number of scenes n must be a positive integer, got {n!r}")
    drawn = _uniform((n, world.n_pairs), generator, device) < world.pair_rate
    empty = ~drawn.any(dim=1)
    forced = torch.randint(world.n_pairs, (n,), generator=generator, device=generator.device).to(device)
    drawn = drawn | (empty.unsqueeze(1) & (torch.arange(world.n_pairs, device=device) == forced.unsqueeze(1)))

    member = _uniform((n, world.n_pairs), generator, device)
    lone_share = (1 - world.both_rate) / 2
    both = member < world.both_rate
    first_only = (member >= world.both_rate) & (member < world.both_rate + lone_share)
    second_only = member >= world.both_rate + lone_share
    objects = torch.stack([drawn & (both | first_only), drawn & (both | second_only)], dim=2)
    objects = objects.reshape(n, world.n_objects)

    weather = torch.randint(world.n_weathers, (n,), generator=generator, device=generator.device).to(device)
    images = render_images(world, objects, weather, generator)
    return Scenes(objects, weather, images)


def render_images(world: ToyWorld, objects: torch.Tensor, weather: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """Return noisy images ``[multi-hot objects, one-hot weather] + noise``, shape (n, image_dim)."""
    weather_one_hot = torch.nn.functional.one_hot(weather, world.n_weathers).float()
    clean = torch.cat([objects.float(), weather_one_hot], dim=1)
    noise = torch.randn(clean.shape, generator=generator, device=generator.device).to(clean.device)
    return clean + world.image_noise * noise


# === Captions === #


def _lone_partner_slots(world: ToyWorld, objects: torch.Tensor) -> torch.Tensor:
    """Absent objects whose partner is present, shape (n, 2P), bool."""
    partner_present = objects.reshape(-1, world.n_pairs, 2).flip(2).reshape(objects.shape)
    return ~objects & partner_present


def compact_slots(world: ToyWorld, slots: torch.Tensor) -> torch.Tensor:
    """Turn per-object slots into captions: filled slots in object order, then ``EOS``, then ``PAD``.

    Parameters
    ----------
    slots : Tensor, shape (n, 2P), long
        Token in each object's slot, or ``PAD`` for an empty slot.

    Returns
    -------
    Tensor, shape (n, 2P + 1), long
    """
    n = slots.shape[0]
    empty = slots == PAD
    order = torch.sort(empty.to(torch.int8), dim=1, stable=True).indices
    packed = torch.gather(slots, 1, order)
    lengths = (~empty).sum(dim=1)
    tokens = torch.cat([packed, torch.full((n, 1), PAD, dtype=torch.long, device=slots.device)], dim=1)
    tokens[torch.arange(n, device=slots.device), lengths] = world.eos
    return tokens


def web_captions(world: ToyWorld, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample the captions the base model learns from, shape (n, max_len).

    Every present object is named.  In the slot of an absent partner of a lone
    member the caption names that partner with probability ``partner_rate``
    (a co-occurrence hallucination in the training data), puts ``BG`` with
    probability ``filler_rate``, and otherwise leaves the slot empty.
    """
    n = objects.shape[0]
    ids = torch.arange(world.n_objects, device=objects.device).expand(n, -1)
    lone_partner = _lone_partner_slots(world, objects)
    draw = _uniform(objects.shape, generator, objects.device)
    slots = torch.full_like(ids, PAD)
    slots = torch.where(objects, ids, slots)
    slots = torch.where(lone_partner & (draw < world.partner_rate), ids, slots)
    filler = lone_partner & (draw >= world.partner_rate) & (draw < world.partner_rate + world.filler_rate)
    slots = torch.where(filler, torch.full_like(ids, world.bg), slots)
    return compact_slots(world, slots)


def preference_captions(world: ToyWorld, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(chosen, rejected)`` captions of equal length for each scene.

    The rejected caption names every present object and every absent partner
    of a lone member; the chosen one is identical except that ``BG`` is in
    each of those partner slots, like a corrected caption in a human-edited
    preference set.  Scenes without a lone member give identical captions.
    """
    n = objects.shape[0]
    ids = torch.arange(world.n_objects, device=objects.device).expand(n, -1)
    lone_partner = _lone_partner_slots(world, objects)
    present = torch.where(objects, ids, torch.full_like(ids, PAD))
    rejected = torch.where(lone_partner, ids, present)
    chosen = torch.where(lone_partner, torch.full_like(ids, world.bg), present)
    return compact_slots(world, chosen), compact_slots(world, rejected)


def has_lone_member(world: ToyWorld, objects: torch.Tensor) -> torch.Tensor:
    """Return which scenes show exactly one member of at least one pair, shape (n,), bool."""
    return _lone_partner_slots(world, objects).any(dim=1)


# === General tasks === #


def count_answers(world: ToyWorld, objects: torch.Tensor) -> torch.Tensor:
    """Token of the number of objects in each scene, capped at ``max_count``; a low-margin task."""
    return world.count_token(objects.sum(dim=1).clamp(1, world.max_count))


def weather_answers(world: ToyWorld, weather: torch.Tensor) -> torch.Tensor:
    """Token of each scene's weather; a clean-margin task."""
    return world.weather_token(weather)


def sample_preference_scenes(world: ToyWorld, n: int, generator: torch.Generator, device="cpu") -> Scenes:
    """Draw ``n`` scenes that each show a lone member of some pair, the scenes preference pairs need.

    Scenes are drawn in batches of ``2 n`` with :func:`sample_scenes` and
    filtered with :func:`has_lone_member`, so the result follows the scene
    distribution conditioned on having a lone member.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"number of scenes n must be a positive integer, got {n!r}")
    batches: list[Scenes] = []
    total = 0
    for _ in range(100):
        batch = sample_scenes(world, 2 * n, generator, device)
        batch = batch.subset(has_lone_member(world, batch.objects))
        batches.append(batch)
        total += len(batch)
        if total >= n:
            break
    else:
        raise ValueError(f"scenes with a lone member are too rare under {world}; "
                         "raise pair_rate or lower both_rate")
    return Scenes(*(torch.cat([getattr(part, name) for part in batches])[:n]
                    for name in ("objects", "weather", "images")))
