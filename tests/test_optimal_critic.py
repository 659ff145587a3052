"""Chapter 0 fails, naming its claims, when the optimal-critic formula is broken."""

from __future__ import annotations

import pytest

from mutation import run_with_patched_library

pytestmark = pytest.mark.chapters


def test_dropping_log_k_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "optimal_critic", "critic.py",
        "return log_p - log_q - math.log(k)", "return log_p - log_q",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["critic.nce-minimiser-matches-library"]
    assert "critic.nce-minimiser-matches-library" in result.stdout + result.stderr


def test_wrong_infonce_normaliser_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "optimal_critic", "critic.py",
        "return -torch.log_softmax(scores, dim=1)[:, 0]", "return -scores[:, 0] + scores.mean(dim=1)",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] and entry["failed_claims"][0].startswith("critic.infonce-")
