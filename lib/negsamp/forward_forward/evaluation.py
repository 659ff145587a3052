"""Data splits per replicate, accuracies, and paired comparisons across seeds."""

from __future__ import annotations

import math

import numpy as np
import torch


def stratified_split_indices(labels: np.ndarray, test_fraction: float, seeds: list[int]) -> tuple:
    """Return one stratified train/test split per seed, as index arrays.

    Parameters
    ----------
    labels : ndarray, shape (N,)
    test_fraction : float
        In (0, 1).  Every split has the same sizes.
    seeds : list of int
        ``random_state`` of scikit-learn's ``train_test_split`` per replicate.

    Returns
    -------
    train, test : ndarray of int, shapes (R, N_train) and (R, N_test)
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    everything = np.arange(len(labels))
    splits = [train_test_split(everything, test_size=test_fraction, stratify=labels, random_state=seed)
              for seed in seeds]
    return np.stack([train for train, _ in splits]), np.stack([test for _, test in splits])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the accuracy per replicate (R,) of logits (R, N, C) against labels (R, N)."""
    return (logits.argmax(dim=-1) == labels).double().mean(dim=-1)


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def paired_difference(first, second) -> tuple:
    """Return the mean and standard error of ``first - second`` over replicates (paired by seed).

    Takes sequences or tensors of shape (R,) with R >= 2.  The standard error
    is ``std(differences, ddof=1) / sqrt(R)``.
    """
    differences = _as_array(first) - _as_array(second)
    if differences.ndim != 1 or differences.size < 2:
        raise ValueError(f"need at least two paired values, got shape {differences.shape}")
    return float(differences.mean()), float(differences.std(ddof=1) / math.sqrt(differences.size))


def paired_accuracy_difference(correct_first: torch.Tensor, correct_second: torch.Tensor) -> tuple:
    """Return the mean and standard error of a paired accuracy difference over replicates.

    Parameters
    ----------
    correct_first, correct_second : Tensor of bool or float in [0, 1], shape (R, N)
        Whether each of two classifiers got each test input right, for ``R``
        replicates that each have their own split and initialisation.  A
        fraction is a classifier's expected correctness on that input, for
        example averaged over several noisy evaluations of it.

    Returns
    -------
    mean : float
        Mean over replicates of ``accuracy_first - accuracy_second``.
    stderr : float
        ``sqrt(v / R)``, where ``v`` is the larger of the replicate variance of
        the difference and the mean test-sampling variance of one replicate's
        difference, the variance over inputs of ``first - second`` divided by
        ``N``; for bool input this is ``(d_10 + d_01 - (d_10 - d_01)**2) / N``
        with ``d_10`` and ``d_01`` the discordant fractions (McNemar's setting).  With few
        replicates the spread alone can come out near zero by chance, and the
        test-set term keeps the standard error from falling below the
        sampling error that every replicate has.
    """
    if correct_first.shape != correct_second.shape or correct_first.ndim != 2:
        raise ValueError(f"need two (R, N) tensors of equal shape, got {tuple(correct_first.shape)} "
                         f"and {tuple(correct_second.shape)}")
    replicates, n_test = correct_first.shape
    if replicates < 2:
        raise ValueError(f"need at least two replicates, got {replicates}")
    first, second = correct_first.double().cpu(), correct_second.double().cpu()
    low, high = min(float(first.min()), float(second.min())), max(float(first.max()), float(second.max()))
    if low < 0 or high > 1:
        raise ValueError(f"correctness must lie in [0, 1], got values from {low} to {high}. "
                         "Pass bool tensors, or each input's fraction of right answers.")
    differences = (first - second).mean(dim=1)
    mean_square = ((first - second) ** 2).mean(dim=1)
    test_variance = float(((mean_square - differences**2) / n_test).mean())
    variance = max(float(differences.var(unbiased=True)), test_variance)
    return float(differences.mean()), math.sqrt(variance / replicates)
