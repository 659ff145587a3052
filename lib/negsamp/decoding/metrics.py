"""Object-hallucination metrics for captions, and accuracy for one-token answers.

CHAIR counts object mentions that are not in the scene: ``CHAIR_i`` per
mention and ``CHAIR_s`` per caption.  A caption that says nothing scores 0 on
both, so recall (and the object F1 that balances the two) is always reported
beside them.

References
----------
.. [1] A. Rohrbach, L. A. Hendricks, K. Burns, T. Darrell and K. Saenko,
   "Object hallucination in image captioning", EMNLP 2018.
"""

from __future__ import annotations

import torch

from .world import PAD, ToyWorld


def mention_counts(world: ToyWorld, tokens: torch.Tensor) -> torch.Tensor:
    """How often each caption mentions each object, shape (n, 2P)."""
    is_object = (tokens >= 0) & (tokens < world.n_objects)
    one_hot = torch.nn.functional.one_hot(tokens.clamp(0, world.n_objects - 1), world.n_objects)
    return (one_hot * is_object.unsqueeze(2)).sum(dim=1)


def caption_metrics(world: ToyWorld, tokens: torch.Tensor, objects: torch.Tensor) -> dict[str, float]:
    """Return hallucination and coverage metrics of sampled captions.

    Parameters
    ----------
    tokens : Tensor, shape (n, L), long
        Captions, ``PAD`` after ``EOS``.
    objects : Tensor, shape (n, 2P), bool
        The scenes' true objects.

    Returns
    -------
    dict of str to float
        ``chair_i``: hallucinated mentions over all mentions.
        ``chair_s``: captions with at least one hallucinated mention.
        ``recall``: present objects mentioned at least once, over present objects.
        ``f1``: harmonic mean of ``1 - chair_i`` and ``recall``.
        ``partner_hall``: mentions of an absent object whose partner is present
        (the co-occurrence hallucination), over all mentions.
        ``other_hall``: the remaining hallucinated mentions, over all mentions.
        ``partner_given_lone``: mentions of the absent partner of a lone
        member, over the number of lone members (the rate the web captions set
        to ``partner_rate``).
        ``invalid``: captions containing a token that is neither an object,
        ``BG`` nor ``EOS`` (a count or weather answer).
        ``mentions_per_caption``: mean number of object mentions.
    """
    if tokens.shape[0] != objects.shape[0]:
        raise ValueError(f"tokens and objects must have the same number of rows, got {tokens.shape[0]} "
                         f"and {objects.shape[0]}")
    counts = mention_counts(world, tokens).double()
    present = objects.double()
    partner_present = objects.reshape(-1, world.n_pairs, 2).flip(2).reshape(objects.shape).double()
    hallucinated = counts * (1 - present)
    partner = hallucinated * partner_present
    mentions = counts.sum().clamp_min(1)
    lone_slots = ((1 - present) * partner_present).sum().clamp_min(1)
    chair_i = float(hallucinated.sum() / mentions)
    recall = float(((counts > 0).double() * present).sum() / present.sum())
    precision = 1 - chair_i
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    invalid = ((tokens != PAD) & (tokens > world.eos)).any(dim=1)
    return {
        "chair_i": chair_i,
        "chair_s": float((hallucinated.sum(dim=1) > 0).double().mean()),
        "recall": recall,
        "f1": f1,
        "partner_hall": float(partner.sum() / mentions),
        "other_hall": float((hallucinated.sum() - partner.sum()) / mentions),
        "partner_given_lone": float(partner.sum() / lone_slots),
        "invalid": float(invalid.double().mean()),
        "mentions_per_caption": float(counts.sum(dim=1).mean()),
    }


def answer_accuracy(predicted: torch.Tensor, answers: torch.Tensor) -> float:
    """Return the fraction of predicted tokens equal to the answers."""
    if predicted.shape != answers.shape:
        raise ValueError(f"predicted and answers must have the same shape, got {tuple(predicted.shape)} "
                         f"and {tuple(answers.shape)}")
    return float((predicted == answers).double().mean())


def evaluate_decoder(decoder, scenes, samples: int, generator: torch.Generator) -> dict[str, float]:
    """Sample ``samples`` captions per test scene and answer both general tasks greedily.

    Returns
    -------
    dict of str to float
        The keys of :func:`caption_metrics` plus ``count_acc`` and ``weather_acc``.
    """
    from .model import greedy_answers, sample_captions
    from .world import COUNT, WEATHER, count_answers, weather_answers

    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples per scene must be a positive integer, got {samples!r}")
    world = decoder.model.world
    images = scenes.images.repeat(samples, 1)
    objects = scenes.objects.repeat(samples, 1)
    result = caption_metrics(world, sample_captions(decoder, images, generator), objects)
    count = greedy_answers(decoder, scenes.images, COUNT, generator)
    weather = greedy_answers(decoder, scenes.images, WEATHER, generator)
    result["count_acc"] = answer_accuracy(count, count_answers(world, scenes.objects))
    result["weather_acc"] = answer_accuracy(weather, weather_answers(world, scenes.weather))
    return result
