"""Shared metrics against brute force, and the offline data loaders."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from negsamp import data, metrics


def test_roc_auc_matches_pair_count_with_ties():
    positive = torch.tensor([0.9, 0.5, 0.5, 0.2])
    negative = torch.tensor([0.5, 0.1, 0.95])
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positive, negative)]
    assert metrics.roc_auc(positive, negative) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_ranking_metrics_on_hand_example():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    relevant = torch.tensor([[True, False, True, False], [False, False, False, False]])
    recall = metrics.recall_at_k(scores, relevant, 2)
    assert recall[0] == pytest.approx(0.5) and math.isnan(recall[1])
    assert metrics.hit_at_k(scores, relevant, 2)[0] == 1.0
    ndcg = metrics.ndcg_at_k(scores, relevant.double(), 3)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg[0] == pytest.approx(1.0 / ideal)


def test_ndcg_rejects_negative_gain():
    with pytest.raises(ValueError, match="non-negative"):
        metrics.ndcg_at_k(torch.zeros(1, 3), torch.tensor([[1.0, -1.0, 0.0]]), 2)


def test_retrieval_recall_and_knn_accuracy():
    similarity = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.2, 0.5], [0.0, 0.1, 0.8]])
    assert metrics.recall_at_k_retrieval(similarity, 1) == pytest.approx(2 / 3)
    assert metrics.recall_at_k_retrieval(similarity, 2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k_retrieval(similarity, 3) == pytest.approx(1.0)
    points = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert metrics.knn_accuracy(points, labels, k=2) == 1.0


def test_digits_and_mnist_load_offline():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    X, y = data.load_mnist_5k()
    assert X.shape == (5000, 784) and 0.0 <= X.min() and X.max() <= 1.0 and set(np.unique(y)) == set(range(10))


def test_movielens_and_graphs_load_offline():
    ratings = data.load_movielens_100k()
    assert len(ratings) == 100_000
    assert ratings["user"].nunique() == 943 and ratings["item"].nunique() == 1682
    assert data.load_networkx_graph("karate").number_of_nodes() == 34
    with pytest.raises(ValueError, match="karate"):
        data.load_networkx_graph("facebook")


def test_pbmc_loads_offline():
    adata = data.load_pbmc68k_reduced()
    assert adata.n_obs == 700
