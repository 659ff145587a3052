"""The UMAP chapter fails, naming its claims, when a formula it checks is broken."""

from __future__ import annotations

import pytest

from mutation import run_with_patched_library

pytestmark = pytest.mark.chapters


def _assert_fails_with(result, entry, claim_id):
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == [claim_id]
    assert claim_id in result.stdout + result.stderr


def test_dropping_one_over_n_in_repulsive_weight_fails(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "umap_true_loss", "umap_loss/graph.py",
        "* (degrees_head + degrees_tail) / n_points", "* (degrees_head + degrees_tail)",
    )
    _assert_fails_with(result, entry, "umap.repulsive-weight-sum")


def test_stock_update_with_push_tail_rate_fails(tmp_path):
    # The stock update would then repel each pair at rate c_i + c_j, the push-tail rate.
    result, entry = run_with_patched_library(
        tmp_path, "umap_true_loss", "umap_loss/losses.py",
        '        if variant == "push_tail":\n            pair_rate = pair_rate + rate[None, :]',
        "        pair_rate = pair_rate + rate[None, :]",
    )
    _assert_fails_with(result, entry, "umap.stock-curl-matches-sympy")


def test_stock_sampler_pushing_the_tail_fails(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "umap_true_loss", "umap_loss/optimiser.py",
        '    if variant == "push_tail":\n        update.index_add_(0, negatives, -push)',
        "    update.index_add_(0, negatives, -push)",
    )
    _assert_fails_with(result, entry, "umap.mc-torch-stock-matches")
