"""Matrix factorisation and a full-batch trainer for any loss on its scores.

The model scores a user-item pair by the inner product of their factors
plus one global offset, ``s_ui = p_u . q_i + b``.  The Rel-MF and UBPR code
[1]_ has no offset.  We add one, without penalty, so that a low click rate
does not have to be carried by the factors, which the penalty shrinks.
The trainer takes the loss as a function of the model, so pointwise,
pairwise and stratified objectives share one loop.

References
----------
.. [1] Y. Saito, S. Yaginuma, Y. Nishino, H. Sakata and K. Nakata, "Unbiased
   recommender learning from missing-not-at-random implicit feedback",
   WSDM 2020.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..progress import progress


class MatrixFactorization(torch.nn.Module):
    """Matrix factorisation scoring ``s_ui = p_u . q_i + b``.

    The user factors ``P`` have shape ``(users, dim)``, the item factors ``Q``
    shape ``(items, dim)``, and the offset ``b`` is one scalar.

    Parameters
    ----------
    n_users, n_items, dim : int
        Sizes; all must be positive.
    generator : torch.Generator
        Draws the initial factors from ``N(0, init_std**2)`` on the CPU.
    init_std : float
        Standard deviation of the initial factors.
    device : torch.device or str, optional
        Where the parameters live.
    dtype : torch.dtype
        Parameter dtype; float32 is the fast choice for training.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, *, generator: torch.Generator,
                 init_std: float = 0.1, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if min(n_users, n_items, dim) < 1:
            raise ValueError(f"n_users, n_items and dim must be positive, got {n_users}, {n_items}, {dim}")
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        users = init_std * torch.randn(n_users, dim, generator=generator, dtype=dtype)
        items = init_std * torch.randn(n_items, dim, generator=generator, dtype=dtype)
        self.user_factors = torch.nn.Parameter(users.to(device))
        self.item_factors = torch.nn.Parameter(items.to(device))
        self.offset = torch.nn.Parameter(torch.zeros((), dtype=dtype, device=device))

    def score_matrix(self) -> torch.Tensor:
        """Return all scores, shape ``(users, items)``."""
        return self.user_factors @ self.item_factors.T + self.offset

    def pair_representation(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return ``p_u * q_i`` (elementwise) for each pair, shape ``(n, dim)``.

        Its row sum plus the offset is the pair's score.
        """
        return self.user_factors[users] * self.item_factors[items]

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return ``s_ui`` for paired index tensors ``users`` and ``items``, shape ``(n,)``."""
        return self.pair_representation(users, items).sum(dim=1) + self.offset

    def squared_norm_penalty(self) -> torch.Tensor:
        """Return the mean squared norm of the user factors plus that of the item factors."""
        return self.user_factors.pow(2).sum(dim=1).mean() + self.item_factors.pow(2).sum(dim=1).mean()


def train_matrix_factorization(model: MatrixFactorization, objective: Callable[[MatrixFactorization], torch.Tensor],
                               *, steps: int, lr: float = 0.05, l2: float = 1e-3,
                               desc: str | None = None) -> torch.Tensor:
    """Minimise ``objective(model) + l2 * model.squared_norm_penalty()`` with full-batch Adam.

    ``objective`` is called once per step and may draw fresh samples (pairs,
    strata members) each time, which makes the method stochastic.

    Parameters
    ----------
    model : MatrixFactorization
        Trained in place.
    objective : callable
        Maps the model to a scalar loss tensor.
    steps : int
        Number of Adam steps.
    lr : float
        Adam learning rate.
    l2 : float
        Weight of the factor-norm penalty.
    desc : str, optional
        Show a progress bar with this label.

    Returns
    -------
    Tensor
        The objective (without the penalty) at every step, shape ``(steps,)``.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite, naming the step.
    """
    if steps < 1 or lr <= 0 or l2 < 0:
        raise ValueError(f"need steps >= 1, lr > 0 and l2 >= 0, got {steps}, {lr!r}, {l2!r}")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history = torch.empty(steps, dtype=torch.float64)
    iterator = progress(range(steps), desc=desc) if desc else range(steps)
    for step in iterator:
        loss = objective(model)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {float(loss.detach())} at step {step}; "
                                     "lower lr, raise l2 or clip the weights")
        optimiser.zero_grad()
        (loss + l2 * model.squared_norm_penalty()).backward()
        optimiser.step()
        history[step] = float(loss.detach())
    return history


@dataclass(frozen=True)
class TunedModel:
    """The model with the best validation score over a grid of penalty weights.

    Attributes
    ----------
    model : MatrixFactorization
        The selected model, already trained.
    l2 : float
        Its penalty weight.
    validation_scores : dict
        Validation score of every penalty weight tried.
    """

    model: MatrixFactorization
    l2: float
    validation_scores: dict


def tune_matrix_factorization(make_objective: Callable[[], Callable[[MatrixFactorization], torch.Tensor]],
                              validation_score: Callable[[MatrixFactorization], float], l2_grid: Sequence[float],
                              *, n_users: int, n_items: int, dim: int, steps: int, lr: float, init_seed: int,
                              device: torch.device | str | None = None) -> TunedModel:
    """Train one model per penalty weight in ``l2_grid`` and keep the one with the highest validation score.

    Every candidate starts from the same initial factors (``init_seed``) and
    gets a fresh objective from ``make_objective``, so the candidates differ
    only in ``l2``.  Ties go to the first weight in the grid.
    """
    if not l2_grid:
        raise ValueError("l2_grid is empty; give at least one penalty weight")
    best = None
    scores = {}
    for l2 in l2_grid:
        model = MatrixFactorization(n_users, n_items, dim, generator=torch.Generator().manual_seed(init_seed),
                                    device=device)
        train_matrix_factorization(model, make_objective(), steps=steps, lr=lr, l2=l2)
        with torch.no_grad():
            scores[l2] = float(validation_score(model))
        if best is None or scores[l2] > scores[best[1]]:
            best = (model, l2)
    return TunedModel(best[0], best[1], scores)
