"""Linear read-outs over noisy copies: the energy read-out and its controls.

A read-out maps each of ``n`` feature copies of an input to class outputs
``o_c = W^T h_c + b`` and combines them into logits:

* ``'energy'``: ``sum_c o_c**2 / (n - 1)``, the mean squared output that
  Zhu et al. (2025) use for prediction, equal to
  ``n / (n - 1) * (mean_c o_c ** 2 + var_c o_c)`` (:func:`energy_logits`);
  with a single noise-free copy it is ``o**2``, the control that squares
  without noise;
* ``'mean'``: ``mean_c o_c``, an ordinary linear read-out of the copy average.

References
----------
.. [1] Z. Zhu, Y. Qi, H. Ma, W. Lu and J. Feng, "Stochastic Forward-Forward
   learning through representational dimensionality compression", NeurIPS 2025.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

READOUT_MODES = ("energy", "mean")


def energy_logits(outputs: torch.Tensor) -> torch.Tensor:
    """Return ``sum_c o_c**2 / (n - 1)`` over the copy axis of ``outputs`` (..., n, C).

    For ``n = 1`` the divisor would vanish, and the result is ``o**2``.
    Shape (..., C).
    """
    n = outputs.shape[-2]
    return outputs.pow(2).sum(dim=-2) / max(n - 1, 1)


def readout_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: str) -> torch.Tensor:
    """Return read-out logits (R, N, C) from features (R, N, n, d), weight (R, d, C) and bias (R, 1, C)."""
    if mode not in READOUT_MODES:
        raise ValueError(f"unknown read-out mode {mode!r}; use one of {READOUT_MODES}")
    if mode == "mean":  # the mean of linear outputs is the output of the mean, which is cheaper
        return features.mean(dim=-2) @ weight + bias
    replicates, n_inputs, n_copies, dim = features.shape
    outputs = features.reshape(replicates, -1, dim) @ weight + bias
    return energy_logits(outputs.reshape(replicates, n_inputs, n_copies, -1))


def train_readout(features: torch.Tensor, labels: torch.Tensor, n_classes: int, mode: str, *,
                  epochs: int = 40, batch_size: int = 128, learning_rate: float = 1e-3,
                  weight_decay: float = 0.01, dropout: float = 0.5,
                  generator: torch.Generator | None = None) -> tuple:
    """Fit a linear read-out per replicate by cross-entropy on frozen features.

    Parameters
    ----------
    features : Tensor, shape (R, N, n, d)
        ``n`` feature copies of each of ``N`` training inputs.
    labels : Tensor, shape (R, N)
    mode : {'energy', 'mean'}
        How the copies' outputs become logits (see :func:`readout_logits`).
    dropout : float
        Dropout on the features during training, as in the authors' classifier.

    Returns
    -------
    weight : Tensor, shape (R, d, C)
    bias : Tensor, shape (R, 1, C)

    Notes
    -----
    AdamW with a cosine learning-rate schedule over all steps.  The caller
    computes the features once, so every epoch uses the same noisy copies.
    """
    if mode not in READOUT_MODES:
        raise ValueError(f"unknown read-out mode {mode!r}; use one of {READOUT_MODES}")
    replicates, n_inputs, _, dim = features.shape
    device, dtype = features.device, features.dtype
    bound = 1 / math.sqrt(dim)
    weight = ((2 * torch.rand(replicates, dim, n_classes, generator=generator, device=device, dtype=dtype) - 1)
              * bound).requires_grad_(True)
    bias = torch.zeros(replicates, 1, n_classes, device=device, dtype=dtype, requires_grad=True)
    optimiser = torch.optim.AdamW([weight, bias], lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n_inputs / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    step = 0
    for _ in range(epochs):
        order = torch.argsort(torch.rand(replicates, n_inputs, generator=generator, device=device), dim=1)
        for start in range(0, n_inputs, batch_size):
            index = order[:, start:start + batch_size]
            batch = torch.gather(features, 1, index[..., None, None].expand(-1, -1, *features.shape[2:]))
            if dropout > 0:
                keep = torch.rand(batch.shape, generator=generator, device=device, dtype=dtype) >= dropout
                batch = batch * keep / (1 - dropout)
            logits = readout_logits(batch, weight, bias, mode)
            loss = F.cross_entropy(logits.reshape(-1, n_classes), torch.gather(labels, 1, index).reshape(-1),
                                   reduction="sum") / index.shape[1]
            for group in optimiser.param_groups:
                group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
    return weight.detach(), bias.detach()


@torch.no_grad()
def readout_correct(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    mode: str) -> torch.Tensor:
    """Return whether the read-out classifies each input right, bool of shape (R, N)."""
    return readout_logits(features, weight, bias, mode).argmax(dim=-1) == labels


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, *, inverse_l2: float = 1.0,
                     max_iter: int = 500, tolerance: float = 1e-7) -> tuple:
    """Fit multinomial logistic regression per replicate to convergence with L-BFGS.

    Minimises ``sum_i CE_i + ||W||**2 / (2 C)`` with ``C = inverse_l2`` (the bias is not
    penalised), the objective of scikit-learn's ``LogisticRegression`` with its
    default ``C = 1``.  The problem is strictly convex, so unlike
    :func:`train_readout` the result does not depend on a training budget.

    Parameters
    ----------
    features : Tensor, shape (R, N, d)
        One noise-free feature vector per input.
    labels : Tensor, shape (R, N)

    Returns
    -------
    weight : Tensor, shape (R, d, C)
    bias : Tensor, shape (R, 1, C)
        Use with :func:`readout_logits` in ``'mean'`` mode on ``features[:, :, None]``.
    """
    if inverse_l2 <= 0:
        raise ValueError(f"inverse_l2 must be positive, got {inverse_l2!r}")
    replicates, n_inputs, dim = features.shape
    weight = torch.zeros(replicates, dim, n_classes, dtype=features.dtype, device=features.device,
                         requires_grad=True)
    bias = torch.zeros(replicates, 1, n_classes, dtype=features.dtype, device=features.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=max_iter, tolerance_grad=tolerance,
                                  tolerance_change=tolerance * 1e-2, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        # Dividing by N rescales the objective without moving its minimiser.
        loss = linear_probe_objective(features, labels, weight, bias, inverse_l2).sum() / n_inputs
        loss.backward()
        return loss

    optimiser.step(closure)
    return weight.detach(), bias.detach()


def linear_probe_objective(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           inverse_l2: float = 1.0) -> torch.Tensor:
    """Return each replicate's penalised loss ``sum_i CE_i + ||W||**2 / (2 C)``, shape (R,).

    ``features`` (R, N, d), ``labels`` (R, N), ``weight`` (R, d, C) and
    ``bias`` (R, 1, C) as in :func:`fit_linear_probe`, which minimises it.
    """
    logits = features @ weight + bias
    cross_entropy = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").sum(dim=1)
    return cross_entropy + weight.pow(2).sum(dim=(1, 2)) / (2 * inverse_l2)
