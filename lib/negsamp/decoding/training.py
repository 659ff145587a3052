"""Training the toy model: supervised captioning, DPO, and DCD's decoupled projections.

Every function trains on whole tensors (minibatches of scenes, or the full
batch for DPO), so the only Python loops run over optimiser steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .model import ToyMLLM, answer_log_probs, caption_log_probs, token_log_probs
from .rules import dpo_loss
from .world import COUNT, PAD, WEATHER, Scenes, count_answers, weather_answers


def _check_schedule(epochs: int, batch_size: int, lr: float) -> None:
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"learning rate lr must be positive, got {lr!r}")


def _minibatches(n: int, batch_size: int, generator: torch.Generator, device):
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    return order.split(batch_size)


def train_sft(model: ToyMLLM, scenes: Scenes, captions: torch.Tensor, *, epochs: int, batch_size: int,
              lr: float, generator: torch.Generator) -> list[float]:
    """Fit the whole model by maximum likelihood on captions and on both general tasks.

    Each minibatch loss is the mean negative log-likelihood over all caption
    tokens plus the count and weather answers of its scenes.

    Returns
    -------
    list of float
        The loss of every step.
    """
    _check_schedule(epochs, batch_size, lr)
    world = model.world
    counts = count_answers(world, scenes.objects)
    weathers = weather_answers(world, scenes.weather)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for rows in _minibatches(len(scenes), batch_size, generator, scenes.images.device):
            images = scenes.images[rows]
            caption_terms = token_log_probs(model, images, captions[rows])
            n_tokens = (captions[rows] != PAD).sum() + 2 * rows.numel()
            total = (caption_terms.sum()
                     + answer_log_probs(model, images, COUNT, counts[rows]).sum()
                     + answer_log_probs(model, images, WEATHER, weathers[rows]).sum())
            loss = -total / n_tokens
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    return losses


def train_projection(model: ToyMLLM, images: torch.Tensor, captions: torch.Tensor, *, epochs: int,
                     batch_size: int, lr: float, generator: torch.Generator) -> nn.Module:
    """Fit a copy of the image projection by maximum likelihood on captions; the language model stays fixed.

    This is one side of decoupled contrastive decoding: trained on the chosen
    captions it gives the positive projection ``W+``, on the rejected ones the
    negative projection ``W-``.  Both start from the model's projection, and
    no term couples the two sides.

    Returns
    -------
    Module
        The trained projection; ``model`` itself is not changed.
    """
    _check_schedule(epochs, batch_size, lr)
    projection = copy.deepcopy(model.projection)
    frozen = [parameter.requires_grad for parameter in model.language_model.parameters()]
    for parameter in model.language_model.parameters():
        parameter.requires_grad_(False)
    optimiser = torch.optim.Adam(projection.parameters(), lr=lr)
    try:
        for _ in range(epochs):
            for rows in _minibatches(images.shape[0], batch_size, generator, images.device):
                terms = token_log_probs(model, images[rows], captions[rows], projection=projection)
                loss = -terms.sum() / (captions[rows] != PAD).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        for parameter, flag in zip(model.language_model.parameters(), frozen):
            parameter.requires_grad_(flag)
    return projection


def train_dpo(model: ToyMLLM, images: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor, *,
              beta: float, lr: float, checkpoints: list[int]) -> tuple[dict[int, ToyMLLM], dict[str, list]]:
    """Fine-tune a copy of the whole model with full-batch DPO; the reference is the model itself.

    Parameters
    ----------
    images : Tensor, shape (n, image_dim)
    chosen, rejected : Tensor, shape (n, L), long
        Preferred and dispreferred captions of each image.
    beta, lr : float
        DPO inverse temperature and Adam learning rate.
    checkpoints : list of int
        Steps after which to keep a copy of the policy; the last is the
        number of steps.

    Returns
    -------
    policies : dict of int to ToyMLLM
        A copy of the policy after each checkpoint step.
    trajectory : dict of str to list
        ``step``, mean ``log_p_chosen`` and ``log_p_rejected`` before each step
        and after the last, and the ``loss`` of each step.
    """
    if not checkpoints or sorted(checkpoints) != list(checkpoints) or checkpoints[0] < 1:
        raise ValueError(f"checkpoints must be increasing positive step counts, got {checkpoints!r}")
    with torch.no_grad():
        reference_chosen = caption_log_probs(model, images, chosen)
        reference_rejected = caption_log_probs(model, images, rejected)
    policy = copy.deepcopy(model)
    optimiser = torch.optim.Adam(policy.parameters(), lr=lr)
    trajectory: dict[str, list] = {"step": [], "log_p_chosen": [], "log_p_rejected": [], "loss": []}
    policies = {}
    for step in range(checkpoints[-1] + 1):
        policy_chosen = caption_log_probs(policy, images, chosen)
        policy_rejected = caption_log_probs(policy, images, rejected)
        trajectory["step"].append(step)
        trajectory["log_p_chosen"].append(float(policy_chosen.detach().mean()))
        trajectory["log_p_rejected"].append(float(policy_rejected.detach().mean()))
        if step in checkpoints:
            policies[step] = copy.deepcopy(policy)
        if step == checkpoints[-1]:
            break
        loss = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        trajectory["loss"].append(float(loss.detach()))
    return policies, trajectory
