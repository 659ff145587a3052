"""Stochastic Forward-Forward: layer-local training by ED compression of noisy copies.

Each input is repeated ``n`` times and dropout is applied to the copies, in
training and at inference.  Every layer of a ReLU MLP is trained on its own
objective, with its input detached so that no gradient crosses a layer:

    loss_l = w_c * mean_b ED(second moment of the n copies of input b)
             - w_d * ED(second moment, across the batch, of the copy means),

both computed on a fixed random semi-orthogonal projection of the layer's
responses to ``k_l`` dimensions.  The first term compresses the responses to
noisy copies of one input, the second spreads the responses to different
inputs.  No negative samples are drawn.

Every tensor carries a leading *replicate* axis ``R``: the weights of ``R``
independent networks are stacked, so several seeds train in one vectorised
run.  Each replicate has its own data order, noise, initial weights and
projections.  Because AdamW acts element by element and the loss is a sum
over replicates, the replicates do not interact.

References
----------
.. [1] Z. Zhu, Y. Qi, H. Ma, W. Lu and J. Feng, "Stochastic Forward-Forward
   learning through representational dimensionality compression", NeurIPS 2025.
.. [2] G. Hinton, "The Forward-Forward algorithm: Some preliminary
   investigations", arXiv:2212.13345, 2022.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .ed import effective_dimensionality, second_moment

BATCH_NORM_EPS = 1e-5  # torch.nn.BatchNorm1d's default


# === Noisy copies and projections === #


def noisy_copies(inputs: torch.Tensor, n_copies: int, drop_probability: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``n_copies`` dropout-corrupted copies of every input.

    Parameters
    ----------
    inputs : Tensor, shape (..., B, d)
    n_copies : int
        Copies per input, at least 1.
    drop_probability : float
        Each entry of each copy is zeroed with this probability and the
        survivors are scaled by ``1 / (1 - p)`` (inverted dropout), so every
        copy has the input as its mean.  ``0`` returns exact repeats.
    generator : torch.Generator, optional
        On the inputs' device.

    Returns
    -------
    Tensor, shape (..., B, n_copies, d)
    """
    if not isinstance(n_copies, int) or n_copies < 1:
        raise ValueError(f"n_copies must be a positive integer, got {n_copies!r}")
    if not 0 <= drop_probability < 1:
        raise ValueError(f"drop_probability must lie in [0, 1), got {drop_probability!r}")
    copies = inputs.unsqueeze(-2).expand(*inputs.shape[:-1], n_copies, inputs.shape[-1])
    if drop_probability == 0:
        return copies.clone()
    uniform = torch.rand(copies.shape, generator=generator, dtype=inputs.dtype, device=inputs.device)
    keep = uniform >= drop_probability
    return copies * keep / (1 - drop_probability)


def random_semi_orthogonal(rows: int, cols: int, replicates: int, generator: torch.Generator | None = None,
                           dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Return ``replicates`` random matrices of shape (rows, cols) with orthonormal columns.

    The QR factor of a Gaussian matrix, with column signs fixed so the
    distribution is Haar on the Stiefel manifold.  Needs ``cols <= rows``.
    """
    if not 1 <= cols <= rows:
        raise ValueError(f"need 1 <= cols <= rows for orthonormal columns, got rows={rows}, cols={cols}")
    gaussian = torch.randn(replicates, rows, cols, generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2)


# === The batched network === #


@dataclass
class LayerStack:
    """Weights of ``R`` stacked ReLU MLPs without biases, each layer preceded by BatchNorm.

    ``weights[l]`` has shape (R, d_l, d_{l+1}) and ``projections[l]`` shape
    (R, d_{l+1}, k_l).  ``means`` and ``variances`` hold each layer's
    calibrated input statistics, shape (R, 1, d_l), or ``None`` before
    :func:`calibrate_statistics`.  BatchNorm has no affine parameters.
    ``history`` is filled by :func:`train_stochastic_ff` with per-epoch
    training averages of the two ED terms.
    """

    weights: list
    projections: list
    means: list | None = None
    variances: list | None = None
    history: dict = field(default_factory=dict)

    @property
    def replicates(self) -> int:
        """Number of stacked networks ``R``."""
        return self.weights[0].shape[0]


def select_replicates(stack: LayerStack, index: slice | list) -> LayerStack:
    """Return the replicates ``index`` of ``stack`` (weights, projections and any statistics)."""
    def pick(tensors):
        return None if tensors is None else [t[index] for t in tensors]

    return LayerStack(pick(stack.weights), pick(stack.projections), pick(stack.means), pick(stack.variances))


def concatenate_replicates(*stacks: LayerStack) -> LayerStack:
    """Stack the replicates of several uncalibrated stacks into one, in order.

    Training the concatenation trains every part exactly as separately,
    because replicates never interact (see the module docstring).
    """
    if any(stack.means is not None for stack in stacks):
        raise ValueError("cannot concatenate calibrated stacks because their statistics are not merged. "
                         "Concatenate first, then call calibrate_statistics")
    weights = [torch.cat(parts) for parts in zip(*(stack.weights for stack in stacks))]
    projections = [torch.cat(parts) for parts in zip(*(stack.projections for stack in stacks))]
    return LayerStack(weights, projections)


def init_layer_stack(sizes: list[int], code_dims: list[int], replicates: int,
                     generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                     device=None) -> LayerStack:
    """Draw ``replicates`` networks with layer sizes ``sizes`` and projection widths ``code_dims``.

    Weights are uniform on ``[-1/sqrt(d_in), 1/sqrt(d_in)]`` as in
    ``torch.nn.Linear``.  Projections come from :func:`random_semi_orthogonal`.
    """
    if len(sizes) < 2 or len(code_dims) != len(sizes) - 1:
        raise ValueError(f"need len(code_dims) == len(sizes) - 1 >= 1, got sizes={sizes}, code_dims={code_dims}")
    weights, projections = [], []
    for d_in, d_out, k in zip(sizes[:-1], sizes[1:], code_dims):
        bound = 1 / math.sqrt(d_in)
        uniform = torch.rand(replicates, d_in, d_out, generator=generator, dtype=dtype, device=device)
        weights.append((2 * uniform - 1) * bound)
        projections.append(random_semi_orthogonal(d_out, k, replicates, generator, dtype, device))
    return LayerStack(weights, projections)


def layer_responses(inputs: torch.Tensor, stack: LayerStack, weights: list | None = None) -> list:
    """Return every layer's ReLU responses, each of shape (R, rows, d_l).

    The input of each layer is detached, so gradients stay inside the layer.
    Without calibrated statistics BatchNorm uses the statistics of ``inputs``
    itself, as in training mode.  After :func:`calibrate_statistics` it uses
    the calibrated ones, as in evaluation mode.  ``weights`` overrides ``stack.weights``
    (the training loop passes its leaf tensors).
    """
    weights = stack.weights if weights is None else weights
    hidden = []
    h = inputs
    for layer, weight in enumerate(weights):
        h = h.detach()
        if stack.means is None:
            mean = h.mean(dim=-2, keepdim=True)
            # Written out because torch.var over the row axis is several times slower on CPU.
            variance = (h - mean).pow(2).mean(dim=-2, keepdim=True)
        else:
            mean, variance = stack.means[layer], stack.variances[layer]
        h = torch.relu((h - mean) / torch.sqrt(variance + BATCH_NORM_EPS) @ weight)
        hidden.append(h)
    return hidden


def calibrate_statistics(inputs: torch.Tensor, stack: LayerStack, n_copies: int, drop_probability: float,
                         generator: torch.Generator | None = None, chunk: int = 256) -> LayerStack:
    """Return ``stack`` with BatchNorm statistics computed over all of ``inputs``.

    One pass over noisy copies of every input, layer by layer, gives each
    layer's exact mean and unbiased variance, as ``BatchNorm1d(momentum=None)``
    would after a single epoch in one batch.  Calibrating matters: the default
    running statistics of an untrained network stay near (0, 1) and make
    random features look much worse than they are.

    Parameters
    ----------
    inputs : Tensor, shape (R, N, d)
    chunk : int
        Inputs per pass.  It bounds memory and does not change the result.
    """
    calibrated = replace(stack, means=[], variances=[])
    for layer in range(len(stack.weights)):
        total = total_squares = None
        rows = 0
        for start in range(0, inputs.shape[1], chunk):
            copies = noisy_copies(inputs[:, start:start + chunk], n_copies, drop_probability, generator)
            flat = copies.reshape(inputs.shape[0], -1, inputs.shape[2])
            partial = replace(calibrated, weights=stack.weights[:layer])
            h = layer_responses(flat, partial)[-1] if layer else flat
            sums, squares = h.sum(dim=1, keepdim=True), h.pow(2).sum(dim=1, keepdim=True)
            total = sums if total is None else total + sums
            total_squares = squares if total_squares is None else total_squares + squares
            rows += h.shape[1]
        mean = total / rows
        calibrated.means.append(mean)
        calibrated.variances.append((total_squares - rows * mean**2) / (rows - 1))
    return calibrated


# === The ED objective === #


def within_input_ed(codes: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Return the ED of the second moment of each input's copies.

    ``codes`` has shape (..., B, n, k).  The result has shape (..., B) and is
    at most ``min(n, k)``.  It equals 1 exactly when all copies are parallel.
    """
    return effective_dimensionality(second_moment(codes), eps=eps)


def across_input_ed(codes: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Return the ED, across the ``B`` inputs, of the second moment of the copy means.

    ``codes`` has shape (..., B, n, k), and the result has shape (...).
    """
    return effective_dimensionality(second_moment(codes.mean(dim=-2)), eps=eps)


def compression_terms(hidden: list, projections: list, n_copies: int, eps: float) -> tuple:
    """Return the within-input and across-input ED of every layer.

    Parameters
    ----------
    hidden : list of Tensor, each (R, B * n_copies, d_l)
        Responses to ``n_copies`` consecutive copies of each of ``B`` inputs.
    projections : list of Tensor, each (R, d_l, k_l)

    Returns
    -------
    within : Tensor, shape (R, L)
        Mean over the inputs of :func:`within_input_ed`.
    across : Tensor, shape (R, L)
    """
    within, across = [], []
    for h, projection in zip(hidden, projections):
        codes = h @ projection
        codes = codes.reshape(codes.shape[0], -1, n_copies, codes.shape[-1])
        within.append(within_input_ed(codes, eps).mean(dim=-1))
        across.append(across_input_ed(codes, eps))
    return torch.stack(within, dim=-1), torch.stack(across, dim=-1)


# === Training === #


@dataclass(frozen=True)
class StochasticFFConfig:
    """Hyper-parameters of :func:`train_stochastic_ff`, with defaults from the authors' code.

    The authors train convolutional blocks greedily, one block per epoch.
    Here all layers train at once, each on its own detached input, so the
    training is still layer-local.
    """

    n_copies: int = 20              # noisy copies per input
    drop_probability: float = 0.2   # dropout on the input copies
    epochs: int = 10
    batch_size: int = 128           # inputs per step (rows: batch_size * n_copies)
    learning_rate: float = 1e-3     # AdamW
    weight_decay: float = 0.01
    diversity_weight: float = 0.5
    eps: float = 1e-6               # added to the ED denominator, as in the authors' code

    def __post_init__(self):
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for an across-input ED, got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")


def compression_loss(within: torch.Tensor, across: torch.Tensor, consistency_weight: torch.Tensor,
                     diversity_weight: float) -> torch.Tensor:
    """Return ``sum over replicates and layers of w_c * within - w_d * across``.

    ``consistency_weight`` has shape (R,), so one run can train the full
    objective (``0.5``) next to the diversity-only ablation (``0``).
    """
    return (consistency_weight.unsqueeze(-1) * within - diversity_weight * across).sum()


def train_stochastic_ff(inputs: torch.Tensor, stack: LayerStack, config: StochasticFFConfig,
                        consistency_weight: torch.Tensor, generator: torch.Generator | None = None,
                        progress=None) -> LayerStack:
    """Train every replicate's layers on the ED-compression objective and return a new stack.

    Parameters
    ----------
    inputs : Tensor, shape (R, N, d)
        Each replicate's training inputs.
    stack : LayerStack
        Initial networks, left unchanged.  Their statistics are ignored,
        because training uses batch statistics.
    consistency_weight : Tensor, shape (R,)
        Weight of the within-input term per replicate.
    progress : callable, optional
        Wraps the epoch range, for example :func:`negsamp.progress`.

    Returns
    -------
    LayerStack
        Trained weights, no statistics (call :func:`calibrate_statistics`),
        and ``history['within']``, ``history['across']`` of shape
        (epochs, R, L): training-batch averages per epoch.
    """
    replicates, n_inputs, dim = inputs.shape
    if consistency_weight.shape != (replicates,):
        raise ValueError(f"consistency_weight must have shape ({replicates},), got {tuple(consistency_weight.shape)}")
    weights = [w.detach().clone().requires_grad_(True) for w in stack.weights]
    training = LayerStack(weights, stack.projections)
    optimiser = torch.optim.AdamW(weights, lr=config.learning_rate, weight_decay=config.weight_decay)
    history_within, history_across = [], []
    epochs = range(config.epochs)
    for _ in (progress(epochs) if progress else epochs):
        order = torch.argsort(torch.rand(replicates, n_inputs, generator=generator, device=inputs.device), dim=1)
        epoch_within, epoch_across = [], []
        for start in range(0, n_inputs - 1, config.batch_size):
            index = order[:, start:start + config.batch_size]
            if index.shape[1] < 2:
                continue
            batch = torch.gather(inputs, 1, index.unsqueeze(-1).expand(-1, -1, dim))
            copies = noisy_copies(batch, config.n_copies, config.drop_probability, generator)
            hidden = layer_responses(copies.reshape(replicates, -1, dim), training)
            within, across = compression_terms(hidden, stack.projections, config.n_copies, config.eps)
            loss = compression_loss(within, across, consistency_weight, config.diversity_weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_within.append(within.detach())
            epoch_across.append(across.detach())
        history_within.append(torch.stack(epoch_within).mean(0))
        history_across.append(torch.stack(epoch_across).mean(0))
    trained = LayerStack([w.detach() for w in weights], stack.projections)
    if history_within:
        trained.history = {"within": torch.stack(history_within), "across": torch.stack(history_across)}
    return trained


# === Measurements on a trained stack === #


@torch.no_grad()
def measure_layer_ed(inputs: torch.Tensor, stack: LayerStack, n_copies: int, drop_probability: float,
                     generator: torch.Generator | None = None) -> tuple:
    """Return the within-input and across-input ED of every layer on ``inputs`` (R, N, d).

    Uses the calibrated statistics and all ``N`` inputs as one batch for the
    across-input term.  Both results have shape (R, L) and use no eps.
    """
    if stack.means is None:
        raise ValueError("the stack has no calibrated statistics, so call calibrate_statistics first")
    copies = noisy_copies(inputs, n_copies, drop_probability, generator)
    hidden = layer_responses(copies.reshape(inputs.shape[0], -1, inputs.shape[2]), stack)
    return compression_terms(hidden, stack.projections, n_copies, eps=0.0)


@torch.no_grad()
def last_layer_features(inputs: torch.Tensor, stack: LayerStack, n_copies: int, drop_probability: float,
                        generator: torch.Generator | None = None, projected: bool = False,
                        chunk: int = 256) -> torch.Tensor:
    """Return the last layer's responses to noisy copies, shape (R, N, n_copies, width).

    With ``projected=True`` the responses are multiplied by the last
    projection, so the width is ``k_L``: the code on which the last ED loss acts.
    ``n_copies=1`` with ``drop_probability=0`` gives the noise-free features.
    """
    if stack.means is None:
        raise ValueError("the stack has no calibrated statistics, so call calibrate_statistics first")
    replicates, n_inputs, dim = inputs.shape
    pieces = []
    for start in range(0, n_inputs, chunk):
        copies = noisy_copies(inputs[:, start:start + chunk], n_copies, drop_probability, generator)
        h = layer_responses(copies.reshape(replicates, -1, dim), stack)[-1]
        if projected:
            h = h @ stack.projections[-1]
        pieces.append(h.reshape(replicates, -1, n_copies, h.shape[-1]))
    return torch.cat(pieces, dim=1)
