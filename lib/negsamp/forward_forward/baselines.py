"""Baselines with the same layer sizes: Forward-Forward with negatives and a backprop MLP.

Forward-Forward (FF) follows Hinton (2022) in the form that the
loeweX/Forward-Forward re-implementation trains reliably.  The one-hot label
is appended to the input.  A positive pairs an image with its label, and a
negative pairs it with a random wrong label.  Every layer's input is divided
by its root mean square, and layer ``l`` with ``d_l`` ReLU units is trained
to make the logit ``sum_j z_j**2 - d_l`` positive on positives and negative
on negatives.  Prediction runs the network once per candidate label and
picks the label with the largest goodness summed over layers.

Like :mod:`negsamp.forward_forward.stochastic`, all tensors carry a leading
replicate axis ``R`` of independent networks.

References
----------
.. [1] G. Hinton, "The Forward-Forward algorithm: Some preliminary
   investigations", arXiv:2212.13345, 2022.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform_layers(sizes: list[int], replicates: int, generator, dtype, device) -> tuple:
    """Weights (R, d_in, d_out) and biases (R, 1, d_out) initialised like ``torch.nn.Linear``."""
    weights, biases = [], []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(d_in)
        shape_w, shape_b = (replicates, d_in, d_out), (replicates, 1, d_out)
        weights.append(((2 * torch.rand(shape_w, generator=generator, dtype=dtype, device=device) - 1)
                        * bound).requires_grad_(True))
        biases.append(((2 * torch.rand(shape_b, generator=generator, dtype=dtype, device=device) - 1)
                       * bound).requires_grad_(True))
    return weights, biases


def _shuffled_batches(replicates: int, n_inputs: int, batch_size: int, generator, device):
    order = torch.argsort(torch.rand(replicates, n_inputs, generator=generator, device=device), dim=1)
    for start in range(0, n_inputs, batch_size):
        yield order[:, start:start + batch_size]


def _gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    if values.ndim == 2:
        return torch.gather(values, 1, index)
    return torch.gather(values, 1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


# === Forward-Forward with label-embedded negatives === #


def embed_label(inputs: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Append the one-hot ``labels`` (...,) to ``inputs`` (..., d), giving (..., d + n_classes)."""
    return torch.cat([inputs, F.one_hot(labels, n_classes).to(inputs.dtype)], dim=-1)


def rms_normalise(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each row of ``h`` (..., d) by its root mean square, keeping entries of order 1.

    The length carries the previous layer's goodness, so removing it makes
    the next layer use only the direction of the activity vector.
    """
    return h / torch.sqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


def ff_goodness(h: torch.Tensor) -> torch.Tensor:
    """Return the FF goodness ``sum_j h_j**2`` over the last axis."""
    return h.pow(2).sum(dim=-1)


def _ff_layers(inputs: torch.Tensor, weights: list, biases: list) -> list:
    """Return each layer's ReLU activity for label-embedded ``inputs``, with every layer input detached."""
    activities = []
    h = inputs
    for weight, bias in zip(weights, biases):
        h = torch.relu(rms_normalise(h.detach()) @ weight + bias)
        activities.append(h)
    return activities


def wrong_labels(labels: torch.Tensor, n_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a uniformly random label different from each of ``labels``."""
    offset = torch.randint(1, n_classes, labels.shape, generator=generator, device=labels.device)
    return (labels + offset) % n_classes


def train_forward_forward(inputs: torch.Tensor, labels: torch.Tensor, hidden_sizes: list[int], n_classes: int, *,
                          epochs: int = 60, batch_size: int = 100, learning_rate: float = 1e-3,
                          generator: torch.Generator | None = None) -> tuple:
    """Train ``R`` Forward-Forward networks on inputs (R, N, d) and labels (R, N).

    Each step draws one negative (a random wrong label) per positive, and
    every layer minimises the logistic loss of ``goodness - width`` with Adam.

    Returns
    -------
    weights, biases : list of Tensor
        Shapes (R, d_l, d_{l+1}) and (R, 1, d_{l+1}), detached.
    """
    replicates, n_inputs, dim = inputs.shape
    sizes = [dim + n_classes, *hidden_sizes]
    weights, biases = _uniform_layers(sizes, replicates, generator, inputs.dtype, inputs.device)
    optimiser = torch.optim.Adam(weights + biases, lr=learning_rate)
    for _ in range(epochs):
        for index in _shuffled_batches(replicates, n_inputs, batch_size, generator, inputs.device):
            x, y = _gather_rows(inputs, index), _gather_rows(labels, index)
            positive = embed_label(x, y, n_classes)
            negative = embed_label(x, wrong_labels(y, n_classes, generator), n_classes)
            targets = torch.cat([torch.ones_like(y), torch.zeros_like(y)], dim=1).to(inputs.dtype)
            activities = _ff_layers(torch.cat([positive, negative], dim=1), weights, biases)
            loss = sum(F.binary_cross_entropy_with_logits(ff_goodness(h) - h.shape[-1], targets, reduction="sum")
                       for h in activities) / index.shape[1]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return [w.detach() for w in weights], [b.detach() for b in biases]


@torch.no_grad()
def forward_forward_scores(inputs: torch.Tensor, weights: list, biases: list, n_classes: int,
                           first_layer: int = 0) -> torch.Tensor:
    """Return the goodness, summed over layers ``first_layer`` and later, of every candidate label.

    Shape (R, N, n_classes).  The prediction is the arg max over the last axis.
    """
    scores = []
    for label in range(n_classes):
        candidate = torch.full(inputs.shape[:-1], label, dtype=torch.long, device=inputs.device)
        activities = _ff_layers(embed_label(inputs, candidate, n_classes), weights, biases)
        scores.append(sum(ff_goodness(h) for h in activities[first_layer:]))
    return torch.stack(scores, dim=-1)


# === Backprop MLP of the same shape === #


def train_backprop_mlp(inputs: torch.Tensor, labels: torch.Tensor, hidden_sizes: list[int], n_classes: int, *,
                       epochs: int = 40, batch_size: int = 128, learning_rate: float = 1e-3,
                       weight_decay: float = 0.01, input_dropout: float = 0.2,
                       generator: torch.Generator | None = None) -> tuple:
    """Train ``R`` ReLU MLPs end to end by cross-entropy with AdamW, with dropout on the input only.

    Returns detached weights (R, d_l, d_{l+1}) and biases (R, 1, d_{l+1});
    the last layer has ``n_classes`` outputs.
    """
    replicates, n_inputs, dim = inputs.shape
    sizes = [dim, *hidden_sizes, n_classes]
    weights, biases = _uniform_layers(sizes, replicates, generator, inputs.dtype, inputs.device)
    optimiser = torch.optim.AdamW(weights + biases, lr=learning_rate, weight_decay=weight_decay)
    for _ in range(epochs):
        for index in _shuffled_batches(replicates, n_inputs, batch_size, generator, inputs.device):
            x, y = _gather_rows(inputs, index), _gather_rows(labels, index)
            if input_dropout > 0:
                keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= input_dropout
                x = x * keep / (1 - input_dropout)
            logits = backprop_logits(x, weights, biases)
            loss = F.cross_entropy(logits.reshape(-1, n_classes), y.reshape(-1), reduction="sum") / index.shape[1]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return [w.detach() for w in weights], [b.detach() for b in biases]


def backprop_logits(inputs: torch.Tensor, weights: list, biases: list) -> torch.Tensor:
    """Return the MLP's logits (R, N, C) for inputs (R, N, d): ReLU between layers, none after the last."""
    h = inputs
    for layer, (weight, bias) in enumerate(zip(weights, biases)):
        h = h @ weight + bias
        if layer < len(weights) - 1:
            h = torch.relu(h)
    return h
