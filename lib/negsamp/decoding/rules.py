"""Decoding rules and losses: contrastive scores, plausibility, diffusion noise, DPO.

Contrastive decoding scores each token by ``(1 + alpha) l_pos - alpha l_neg``.
After a softmax this is the positive distribution tilted by the likelihood
ratio of the two branches, ``p_pos (p_pos / p_neg) ** alpha``, and it does not
change when either branch's logits are shifted by a constant.  The adaptive
plausibility constraint keeps only tokens whose positive-branch probability is
at least ``beta`` times the largest one; in logits that is
``l_pos >= log(beta) + max l_pos``.

References
----------
.. [1] S. Leng et al., "Mitigating object hallucinations in large
   vision-language models through visual contrastive decoding", CVPR 2024.
.. [2] R. Rafailov et al., "Direct preference optimization: Your language
   model is secretly a reward model", NeurIPS 2023.
.. [3] N. Razin et al., "Unintentional unalignment: Likelihood displacement
   in direct preference optimization", ICLR 2025.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# === Contrastive decoding === #


def _check_alpha_beta(alpha: float, beta: float) -> None:
    if not (isinstance(alpha, (int, float)) and alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"contrast strength alpha must be a finite number >= 0, got {alpha!r}")
    if not (isinstance(beta, (int, float)) and 0 <= beta <= 1):
        raise ValueError(f"plausibility threshold beta must lie in [0, 1], got {beta!r}; 0 keeps every token")


def plausible_tokens(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Return the adaptive plausibility mask ``p(y) >= beta * max_w p(w)``, shape of ``logits``.

    It is computed in logit form, ``l(y) >= log(beta) + max_w l(w)``, which is
    equivalent because ``p(y) / max p = exp(l(y) - max l)``.  ``beta = 0``
    keeps every token.
    """
    _check_alpha_beta(0.0, beta)
    if beta == 0:
        return torch.ones_like(logits, dtype=torch.bool)
    return logits >= math.log(beta) + logits.max(dim=-1, keepdim=True).values


def contrastive_scores(positive_logits: torch.Tensor, negative_logits: torch.Tensor,
                       alpha: float, beta: float) -> torch.Tensor:
    """Return ``(1 + alpha) l_pos - alpha l_neg``, with ``-inf`` outside the plausible set.

    Parameters
    ----------
    positive_logits, negative_logits : Tensor, shape (..., V)
        Next-token logits of the positive branch (the real image, or DCD's
        positive projection) and of the negative branch (the noised image, or
        DCD's negative projection), for the same prefix.
    alpha : float
        Contrast strength, ``alpha >= 0``; 0 returns the positive logits.
    beta : float
        Plausibility threshold in ``[0, 1]`` on the positive branch, see
        :func:`plausible_tokens`.

    Returns
    -------
    Tensor, shape (..., V)
        Scores whose softmax is the contrastive next-token distribution.
    """
    _check_alpha_beta(alpha, beta)
    if positive_logits.shape != negative_logits.shape:
        raise ValueError(f"branch logits must have the same shape, got {tuple(positive_logits.shape)} "
                         f"and {tuple(negative_logits.shape)}")
    scores = (1 + alpha) * positive_logits - alpha * negative_logits
    plausible = plausible_tokens(positive_logits, beta)
    return scores.masked_fill(~plausible, -math.inf)


# === VCD's distortion: forward diffusion noise === #


def diffusion_signal_coefficient(step: int, n_steps: int = 1000) -> float:
    """Return ``sqrt(abar_T)`` with ``abar_T = prod_{s <= T} (1 - b_s)`` for VCD's noise schedule.

    The schedule is ``b = sigmoid(linspace(-6, 6, n_steps)) * (5e-3 - 1e-5) + 1e-5``,
    as in the VCD code; ``step`` is ``T``, counted from 0.  The noise
    coefficient is ``sqrt(1 - abar_T)``.
    """
    if not (isinstance(step, int) and 0 <= step < n_steps):
        raise ValueError(f"noise step must be an integer in [0, {n_steps}), got {step!r}")
    betas = torch.sigmoid(torch.linspace(-6, 6, n_steps, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, dim=0)[step]
    return float(torch.sqrt(alpha_bar))


def noise_image(images: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
    """Return ``sqrt(abar_T) v + sqrt(1 - abar_T) eps`` with ``eps ~ N(0, I)``, shape of ``images``.

    Random numbers come from ``generator`` (on its own device) and the result
    lives on the images' device.
    """
    signal = diffusion_signal_coefficient(step)
    eps = torch.randn(images.shape, generator=generator, device=generator.device, dtype=images.dtype)
    return signal * images + math.sqrt(1 - signal**2) * eps.to(images.device)


# === Direct preference optimisation === #


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Return the mean DPO loss ``-log sigmoid(beta [(pi_w - ref_w) - (pi_l - ref_l)])``.

    Parameters
    ----------
    policy_chosen, policy_rejected : Tensor, shape (n,)
        Log-probabilities of the chosen and rejected responses under the policy.
    reference_chosen, reference_rejected : Tensor, shape (n,)
        The same under the frozen reference model.
    beta : float
        Inverse temperature ``beta_DPO > 0``.

    References
    ----------
    Rafailov et al. (2023), the DPO objective, [2]_.
    """
    if not (isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta)):
        raise ValueError(f"DPO beta must be a positive finite number, got {beta!r}")
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


def single_token_dpo_flow(unembedding: torch.Tensor, chosen: int, rejected: int, beta: float,
                          lr: float, steps: int, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Train a single-token model ``p = softmax(W h)`` with DPO by gradient descent on ``h``.

    The reference model is the starting point.  This is the setting of
    Razin et al.'s single-token analysis [3]_: only the hidden state moves,
    along ``W[chosen] - W[rejected]``.

    Parameters
    ----------
    unembedding : Tensor, shape (V, d)
        Rows are the token unembeddings ``W_y``.
    chosen, rejected : int
        Token ids of the preferred and dispreferred answer.
    beta, lr : float
        DPO inverse temperature and step size of plain gradient descent.
    steps : int
        Number of steps.
    hidden : Tensor, shape (d,), optional
        Starting hidden state; zeros by default.

    Returns
    -------
    Tensor, shape (steps + 1, V)
        The token probabilities before each step and after the last one.
    """
    vocab, dim = unembedding.shape
    for name, token in (("chosen", chosen), ("rejected", rejected)):
        if not (isinstance(token, int) and 0 <= token < vocab):
            raise ValueError(f"{name} token must be an id in [0, {vocab}), got {token!r}")
    if chosen == rejected:
        raise ValueError(f"chosen and rejected tokens must differ, both are {chosen}")
    start = torch.zeros(dim, dtype=unembedding.dtype, device=unembedding.device) if hidden is None else hidden
    h = start.detach().clone().requires_grad_(True)
    reference = torch.log_softmax(unembedding @ start.detach(), dim=0)
    history = []
    for _ in range(steps):
        log_p = torch.log_softmax(unembedding @ h, dim=0)
        history.append(log_p.detach().exp())
        loss = dpo_loss(log_p[chosen], log_p[rejected], reference[chosen], reference[rejected], beta)
        (gradient,) = torch.autograd.grad(loss, h)
        with torch.no_grad():
            h -= lr * gradient
    history.append(torch.softmax(unembedding @ h.detach(), dim=0))
    return torch.stack(history)
