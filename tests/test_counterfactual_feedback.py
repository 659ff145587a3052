"""The exposure, matrix-factorisation and Counter-IF library against SymPy, enumeration and brute force.

The last three tests break a formula in the library and check that the chapter
fails on the claim that guards it.  They run the chapter, so they are marked ``chapters``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.optimize import minimize

from mutation import run_with_patched_library
from negsamp.metrics import ndcg_at_k
from negsamp.recsys import counterif, exposure, mf

float64 = torch.float64
# One thread: the matrix-factorisation tests take many tiny steps, which more threads only slow down.
torch.set_num_threads(1)


def _random_pairs(n=500, seed=0):
    generator = torch.Generator().manual_seed(seed)
    relevance = 0.01 + 0.98 * torch.rand(n, generator=generator, dtype=float64)
    propensity = 0.01 + 0.98 * torch.rand(n, generator=generator, dtype=float64)
    scores = 3 * torch.randn(n, generator=generator, dtype=float64)
    return relevance, propensity, scores


def _exact_mean(per_click, relevance, propensity):
    """Expectation over Y ~ Bernoulli(gamma theta) of a per-pair function of the click."""
    p = relevance * propensity
    ones, zeros = torch.ones_like(p), torch.zeros_like(p)
    return p * per_click(ones) + (1 - p) * per_click(zeros)


# === Simulator === #


def test_rank_propensity_endpoints_and_order():
    ranks = torch.arange(1, 301)
    theta = exposure.rank_propensity(ranks, 300, 0.005)
    assert float(theta[0]) == pytest.approx(1.0)
    assert float(theta[-1]) == pytest.approx(0.005)
    assert bool((theta[1:] < theta[:-1]).all())
    assert float(theta[149]) == pytest.approx(0.005 ** (149 / 299))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_rank_propensity_rejects_bad_minimum(bad):
    with pytest.raises(ValueError, match="min_propensity"):
        exposure.rank_propensity(torch.arange(1, 5), 4, bad)


def test_world_shapes_ranges_and_determinism():
    first = exposure.simulate_exposure_world(50, 40, generator=torch.Generator().manual_seed(3), min_propensity=0.1)
    second = exposure.simulate_exposure_world(50, 40, generator=torch.Generator().manual_seed(3), min_propensity=0.1)
    assert first.relevance.shape == (50, 40)
    assert first.propensity.shape == (50, 40)
    assert torch.equal(first.relevance, second.relevance)
    assert float(first.relevance.min()) > 0
    assert float(first.relevance.max()) < 1
    assert float(first.propensity.max()) == pytest.approx(1.0)
    assert float(first.propensity.min()) == pytest.approx(0.1)
    assert torch.equal(first.propensity[0], first.propensity[-1])  # exposure depends on the item only
    assert sorted(first.popularity_rank.tolist()) == list(range(1, 41))


def test_item_relevance_spread_widens_item_means():
    flat = exposure.simulate_exposure_world(400, 200, generator=torch.Generator().manual_seed(1))
    spread = exposure.simulate_exposure_world(400, 200, generator=torch.Generator().manual_seed(1),
                                              item_relevance_spread=2.0)
    assert float(spread.relevance.mean(0).std()) > 2 * float(flat.relevance.mean(0).std())


def test_feedback_is_exposure_times_relevance_with_right_rate():
    relevance = torch.full((400, 250), 0.4, dtype=float64)
    propensity = torch.full((400, 250), 0.3, dtype=float64)
    exposed, relevant, clicks = exposure.sample_feedback(relevance, propensity, torch.Generator().manual_seed(0))
    assert torch.equal(clicks, exposed * relevant)
    n = clicks.numel()
    assert abs(float(clicks.mean()) - 0.12) < 4 * math.sqrt(0.12 * 0.88 / n)
    assert abs(float(exposed.mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert abs(float(relevant.mean()) - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)


def test_feedback_rejects_mismatched_or_invalid_input():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="one shape"):
        exposure.sample_feedback(torch.zeros(2, 3), torch.zeros(3, 2), generator)
    with pytest.raises(ValueError, match="propensity must lie"):
        exposure.sample_feedback(torch.zeros(2, 3), torch.full((2, 3), 1.5), generator)


def test_mar_test_items_are_distinct_per_user():
    items = exposure.sample_mar_test_items(30, 20, 16, torch.Generator().manual_seed(0))
    assert items.shape == (30, 16)
    assert all(len(set(row.tolist())) == 16 for row in items)
    with pytest.raises(ValueError, match="n_per_user"):
        exposure.sample_mar_test_items(3, 5, 6, torch.Generator())


def test_mar_test_ndcg_ranks_only_test_items():
    scores = torch.tensor([[5.0, 1.0, 3.0, 4.0]])
    relevance = torch.tensor([[0.1, 0.9, 0.5, 0.3]], dtype=float64)
    test_items = torch.tensor([[1, 2, 3]])
    expected = ndcg_at_k(torch.tensor([[1.0, 3.0, 4.0]]), torch.tensor([[0.9, 0.5, 0.3]], dtype=float64), 2)
    assert float(exposure.mar_test_ndcg(scores, relevance, test_items, 2)[0]) == pytest.approx(float(expected[0]))


# === Pointwise losses against SymPy and enumeration === #


def test_pointwise_losses_match_definitions():
    scores = torch.tensor([-2.0, 0.0, 3.0], dtype=float64)
    relevant, irrelevant = exposure.pointwise_losses(scores, "log")
    assert torch.allclose(relevant, torch.log1p(torch.exp(-scores)))
    assert torch.allclose(irrelevant, torch.log1p(torch.exp(scores)))
    relevant, irrelevant = exposure.pointwise_losses(scores, "squared")
    assert torch.allclose(relevant, (1 - torch.sigmoid(scores)) ** 2)
    assert torch.allclose(irrelevant, torch.sigmoid(scores) ** 2)
    with pytest.raises(ValueError, match="unknown loss kind"):
        exposure.pointwise_losses(scores, "hinge")


@pytest.mark.parametrize("kind", exposure.LOSS_KINDS)
def test_weighted_loss_equals_two_branch_definition(kind):
    _, _, scores = _random_pairs()
    weights = torch.linspace(-3, 5, scores.numel(), dtype=float64)
    relevant, irrelevant = exposure.pointwise_losses(scores, kind)
    direct = weights * relevant + (1 - weights) * irrelevant
    assert torch.allclose(exposure.weighted_pointwise_loss(scores, weights, kind, "none"), direct, atol=1e-12)


@pytest.mark.parametrize("kind", exposure.LOSS_KINDS)
def test_ips_loss_expectation_is_ideal(kind):
    relevance, propensity, scores = _random_pairs()
    expected = _exact_mean(lambda y: exposure.ips_pointwise_loss(scores, y, propensity, kind, reduction="none"),
                           relevance, propensity)
    ideal = exposure.ideal_pointwise_loss(scores, relevance, kind, reduction="none")
    assert torch.allclose(expected, ideal, rtol=1e-10, atol=1e-10)


def test_naive_and_clipped_biases_match_sympy():
    gamma, theta, clip, d1, d0 = sp.symbols("gamma theta M delta_1 delta_0")
    naive_bias = sp.lambdify((gamma, theta, d1, d0), gamma * (1 - theta) * (d0 - d1))
    clipped_bias = sp.lambdify((gamma, theta, clip, d1, d0), gamma * (theta / clip - 1) * (d1 - d0))
    relevance, propensity, scores = _random_pairs()
    relevant, irrelevant = exposure.pointwise_losses(scores, "log")
    ideal = exposure.ideal_pointwise_loss(scores, relevance, "log", reduction="none")
    naive = _exact_mean(lambda y: exposure.naive_pointwise_loss(scores, y, "log", reduction="none"),
                        relevance, propensity)
    assert torch.allclose(naive - ideal, naive_bias(relevance, propensity, relevant, irrelevant), atol=1e-10)
    clipped = _exact_mean(lambda y: exposure.ips_pointwise_loss(scores, y, propensity, "log", clip=0.4,
                                                                reduction="none"), relevance, propensity)
    predicted = torch.where(propensity < 0.4, clipped_bias(relevance, propensity, 0.4, relevant, irrelevant),
                            torch.zeros_like(scores))
    assert torch.allclose(clipped - ideal, predicted, atol=1e-10)


def test_clipped_propensity_raises_only_small_values():
    propensity = torch.tensor([0.05, 0.2, 0.9])
    assert torch.equal(exposure.clipped_propensity(propensity, 0.1), torch.tensor([0.1, 0.2, 0.9]))
    assert torch.equal(exposure.clipped_propensity(propensity, None), propensity)
    with pytest.raises(ValueError, match="clip"):
        exposure.clipped_propensity(propensity, 0.0)


def test_ips_weights_reject_zero_propensity():
    with pytest.raises(ValueError, match="after clipping"):
        exposure.ips_weights(torch.ones(2), torch.tensor([0.0, 0.5]))
    assert torch.allclose(exposure.ips_weights(torch.ones(2), torch.tensor([0.0, 0.5]), clip=0.25),
                          torch.tensor([4.0, 2.0]))


def test_ips_weight_variance_matches_enumeration():
    relevance, propensity, _ = _random_pairs()
    for clip in (None, 0.3):
        weights_one = exposure.ips_weights(torch.ones_like(relevance), propensity, clip)
        p = exposure.click_probability(relevance, propensity)
        enumerated = p * (1 - p) * weights_one**2
        assert torch.allclose(exposure.ips_weight_variance(relevance, propensity, clip), enumerated, rtol=1e-12)
    unclipped = relevance * (1 - relevance * propensity) / propensity
    assert torch.allclose(exposure.ips_weight_variance(relevance, propensity), unclipped, rtol=1e-12)


def test_posterior_matches_bayes_enumeration_and_decreases():
    relevance, propensity, _ = _random_pairs()
    joint_relevant_unclicked = relevance * (1 - propensity)  # S = 1, O = 0
    unclicked = 1 - relevance * propensity
    assert torch.allclose(exposure.unclicked_relevance_posterior(relevance, propensity),
                          joint_relevant_unclicked / unclicked, rtol=1e-12)
    grid = torch.linspace(0.01, 0.99, 50, dtype=float64)
    values = exposure.unclicked_relevance_posterior(torch.full_like(grid, 0.3), grid)
    assert bool((values[1:] < values[:-1]).all())


# === Pairwise losses === #


def _bernoulli(probability, outcome):
    return probability if outcome else 1 - probability


def test_pair_weights_match_sixteen_outcome_enumeration():
    gamma_i, gamma_j, theta_i, theta_j = 0.35, 0.6, 0.2, 0.45
    ubpr, bpr = 0.0, 0.0
    for o_i, s_i, o_j, s_j in itertools.product((0, 1), repeat=4):
        probability = _bernoulli(theta_i, o_i) * _bernoulli(gamma_i, s_i)
        probability *= _bernoulli(theta_j, o_j) * _bernoulli(gamma_j, s_j)
        y_i = torch.tensor(float(o_i * s_i), dtype=float64)
        y_j = torch.tensor(float(o_j * s_j), dtype=float64)
        weight = exposure.ubpr_pair_weights(y_i, y_j, torch.tensor(theta_i, dtype=float64),
                                            torch.tensor(theta_j, dtype=float64))
        ubpr += probability * float(weight)
        bpr += probability * float(exposure.bpr_pair_weights(y_i, y_j))
    assert ubpr == pytest.approx(gamma_i * (1 - gamma_j), abs=1e-12)
    assert bpr == pytest.approx(gamma_i * theta_i * (1 - gamma_j * theta_j), abs=1e-12)


def test_pairwise_loss_floor_clips_negative_terms():
    first, second = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    weights = torch.tensor([1.0, -3.0])
    terms = -weights * torch.nn.functional.logsigmoid(first - second)
    assert torch.allclose(exposure.pairwise_logistic_loss(first, second, weights, reduction="none"), terms)
    floored = exposure.pairwise_logistic_loss(first, second, weights, floor=0.0, reduction="none")
    assert torch.allclose(floored, terms.clamp(min=0.0))
    assert float(floored[1]) == 0.0


def test_click_pairs_start_at_clicks():
    clicks = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    users, first, second = exposure.sample_click_pairs(clicks, 5, torch.Generator().manual_seed(0))
    assert users.numel() == first.numel() == second.numel() == 15
    assert bool((clicks[users, first] == 1).all())
    assert int(second.min()) >= 0
    assert int(second.max()) <= 2


# === Propensity estimate and strata === #


def test_popularity_propensity_hand_example():
    clicks = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(exposure.popularity_propensity(clicks), torch.tensor([1.0, 0.5, 0.0], dtype=float64))
    assert torch.allclose(exposure.popularity_propensity(clicks, normaliser="users", power=1.0),
                          torch.tensor([1.0, 0.25, 0.0], dtype=float64))
    with pytest.raises(ValueError, match="no click"):
        exposure.popularity_propensity(torch.zeros(2, 2))


def test_stratify_unclicked_hand_example():
    clicks = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    score = torch.tensor([[9.0, 0.1, 0.5, 0.3, 0.9, 0.7]])
    labels = exposure.stratify_unclicked(score, clicks, 0.2, 0.2)
    names = [exposure.STRATA[int(label)] for label in labels[0]]
    assert names == ["DP", "HU", "UN", "UN", "HE", "UN"]


def test_stratify_unclicked_fractions_and_order():
    generator = torch.Generator().manual_seed(0)
    score = torch.rand(50, 40, generator=generator)
    clicks = (torch.rand(50, 40, generator=generator) < 0.1).float()
    labels = exposure.stratify_unclicked(score, clicks, 0.25, 0.15)
    n_unclicked = int((clicks == 0).sum())
    assert torch.equal(labels == 0, clicks == 1)
    assert int((labels == 1).sum()) == round(0.25 * n_unclicked)
    assert int((labels == 3).sum()) == round(0.15 * n_unclicked)
    assert float(score[labels == 1].min()) >= float(score[labels == 2].max())
    assert float(score[labels == 2].min()) >= float(score[labels == 3].max())
    with pytest.raises(ValueError, match="sum below 1"):
        exposure.stratify_unclicked(score, clicks, 0.6, 0.5)


def test_stratum_summary_matches_numpy():
    values = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    labels = torch.tensor([0, 1, 1, 2, 2, 3, 3])
    means, stderrs, counts = exposure.stratum_summary(values, labels)
    assert counts.tolist() == [1, 2, 2, 2]
    assert means.tolist()[1:] == [0.5, 0.5, 0.5]
    assert float(stderrs[1]) == pytest.approx(np.std([0.0, 1.0], ddof=1) / math.sqrt(2))


# === Matrix factorisation === #


def test_mf_scores_agree_and_training_lowers_loss():
    model = mf.MatrixFactorization(6, 5, 3, generator=torch.Generator().manual_seed(0))
    users, items = torch.tensor([0, 5, 2]), torch.tensor([4, 0, 2])
    assert torch.allclose(model.pair_scores(users, items), model.score_matrix()[users, items])
    assert torch.allclose(model.pair_representation(users, items).sum(1) + model.offset,
                          model.pair_scores(users, items))
    target = (torch.rand(6, 5, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    history = mf.train_matrix_factorization(
        model, lambda m: exposure.naive_pointwise_loss(m.score_matrix(), target), steps=200, lr=0.05, l2=0.0)
    assert float(history[-1]) < 0.5 * float(history[0])


def test_training_rejects_non_finite_loss():
    model = mf.MatrixFactorization(2, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError, match="step 0"):
        mf.train_matrix_factorization(model, lambda m: m.score_matrix().sum() * float("nan"), steps=3)


def test_tuning_picks_best_validation_score():
    target = torch.eye(4)
    tuned = mf.tune_matrix_factorization(
        lambda: (lambda m: exposure.naive_pointwise_loss(m.score_matrix(), target)),
        lambda m: -float(exposure.naive_pointwise_loss(m.score_matrix(), target)),
        (10.0, 1e-4), n_users=4, n_items=4, dim=4, steps=150, lr=0.05, init_seed=0)
    assert tuned.l2 == 1e-4
    assert tuned.validation_scores[1e-4] > tuned.validation_scores[10.0]


# === Counter-IF pieces === #


def test_capped_simplex_projection_matches_scipy():
    values = torch.tensor([0.9, 0.5, -0.2, 0.1, 0.4], dtype=float64)
    projected = counterif.project_capped_simplex(values, 0.35)
    reference = minimize(lambda w: np.sum((w - values.numpy()) ** 2), np.full(5, 0.2), method="SLSQP",
                         bounds=[(0, 0.35)] * 5, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                         options={"ftol": 1e-14, "maxiter": 500})
    assert float(projected.sum()) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(projected.numpy(), reference.x, atol=1e-6)
    with pytest.raises(ValueError, match="below 1"):
        counterif.project_capped_simplex(values, 0.1)


def test_svdd_dual_matches_scipy():
    points = torch.randn(12, 2, generator=torch.Generator().manual_seed(0), dtype=float64)
    kernel = counterif.gaussian_kernel(points, points, 0.5)
    weights = counterif.svdd_dual_weights(kernel, upper=0.2, steps=800)
    matrix = kernel.numpy()
    reference = minimize(lambda w: w @ matrix @ w, np.full(12, 1 / 12), jac=lambda w: 2 * matrix @ w,
                         method="SLSQP", bounds=[(0, 0.2)] * 12,
                         constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                         options={"ftol": 1e-15, "maxiter": 1000})
    assert float(weights @ kernel @ weights) == pytest.approx(reference.fun, rel=1e-6)


def test_svdd_distance_matches_concatenated_features():
    generator = torch.Generator().manual_seed(2)
    user_features = torch.randn(5, 2, generator=generator, dtype=float64)
    item_features = torch.randn(4, 3, generator=generator, dtype=float64)
    clicks = (torch.rand(5, 4, generator=generator) < 0.5).float()
    clicks[0, 0] = clicks[1, 1] = 1.0
    sphere = counterif.fit_pair_svdd(user_features, item_features, clicks, inside_fraction=0.5,
                                     max_support=100, generator=generator)
    distance = counterif.svdd_squared_distance(sphere, user_features, item_features)
    features = torch.cat([user_features.repeat_interleave(4, 0), item_features.repeat(5, 1)], dim=1)
    support = torch.cat([user_features[sphere.support_users], item_features[sphere.support_items]], dim=1)
    kernel_all = counterif.gaussian_kernel(features, support, sphere.rate)
    kernel_support = counterif.gaussian_kernel(support, support, sphere.rate)
    expected = 1 - 2 * kernel_all @ sphere.weights + sphere.weights @ kernel_support @ sphere.weights
    assert torch.allclose(distance.reshape(-1), expected, atol=1e-12)
    assert float(sphere.weights.sum()) == pytest.approx(1.0, abs=1e-9)


def test_counterif_pointwise_loss_hand_example():
    scores = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    labels = torch.tensor([[0, 1, 2, 1]])
    expected = -math.log(1 / (1 + math.exp(-2.0))) + 0.5 * (math.log(1 + math.exp(-1.0)) + math.log(2.0))
    assert float(counterif.counterif_pointwise_loss(scores, labels)) == pytest.approx(expected, abs=1e-6)


def test_sliced_wasserstein_equal_and_shifted():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=float64)
    same = counterif.sliced_wasserstein_distance(x, x, 8, torch.Generator().manual_seed(5))
    moved = counterif.sliced_wasserstein_distance(x, x + shift, 8, torch.Generator().manual_seed(5))
    directions = torch.randn(3, 8, generator=torch.Generator().manual_seed(5))
    directions = (directions / directions.norm(dim=0)).double()
    assert float(same) == 0.0
    assert float(moved) == pytest.approx(float((shift @ directions).abs().mean()), rel=1e-6)


def test_counterif_objective_is_finite_and_differentiable():
    generator = torch.Generator().manual_seed(0)
    clicks = (torch.rand(20, 15, generator=generator) < 0.2).float()
    labels = exposure.stratify_unclicked(torch.rand(20, 15, generator=generator), clicks, 0.2, 0.2)
    objective = counterif.make_counterif_objective(labels, generator=generator, n_pairs=64, n_balance=32)
    model = mf.MatrixFactorization(20, 15, 4, generator=generator)
    loss = objective(model)
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert float(model.user_factors.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="empty"):
        counterif.make_counterif_objective(torch.zeros(3, 3, dtype=torch.long), generator=generator)


# === Mutation tests: a broken formula must fail a named claim early in the chapter === #


@pytest.mark.chapters
def test_dropping_inverse_propensity_fails_unbiasedness_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "counterfactual_feedback", "recsys/exposure.py",
        "    return clicks / clipped\n", "    return clicks\n",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["cf.ips-unbiased-exact"]


@pytest.mark.chapters
def test_clipping_from_above_fails_clipped_bias_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "counterfactual_feedback", "recsys/exposure.py",
        "return propensity.clamp(min=clip)", "return propensity.clamp(max=clip)",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["cf.clipped-bias-exact"]


@pytest.mark.chapters
def test_unweighted_ubpr_item_fails_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "counterfactual_feedback", "recsys/exposure.py",
        "    return first * (1 - second)\n", "    return first * (1 - clicks_second)\n",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["cf.pair-weights-exact"]
