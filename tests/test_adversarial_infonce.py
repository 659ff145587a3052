"""The AdvInfoNCE library against SymPy, closed forms and brute force; the chapter's mutation tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import optimize, stats

from mutation import run_with_patched_library
from negsamp.recsys import adversarial as adv

f64 = torch.float64
torch.set_num_threads(1)  # these tensors are small; a second thread only adds contention


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _kl_to_uniform(p: np.ndarray) -> float:
    return float(np.sum(p * np.log(np.maximum(p, 1e-300) * p.size)))


# === Losses === #


def test_bpr_loss_matches_pairwise_sum():
    positive = torch.tensor([0.5, -1.0], dtype=f64)
    negative = torch.tensor([[0.0, 1.0, 2.0], [-2.0, -1.0, 3.0]], dtype=f64)
    expected = [np.mean([math.log1p(math.exp(n - p)) for n in row]) for p, row in zip(positive.tolist(),
                                                                                     negative.tolist())]
    assert adv.bpr_loss(positive, negative).tolist() == pytest.approx(expected, abs=1e-12)


def test_infonce_loss_matches_cross_entropy():
    positive = torch.tensor([1.0, 0.0], dtype=f64)
    negative = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=f64)
    expected = [-(1.0 - math.log(math.e + 1 + math.e**2)), math.log(3.0)]
    assert adv.infonce_loss(positive, negative).tolist() == pytest.approx(expected, abs=1e-12)


def test_adv_loss_reduces_to_infonce_and_margin():
    generator = _generator()
    positive = torch.randn(50, generator=generator, dtype=f64)
    negative = torch.randn(50, 8, generator=generator, dtype=f64)
    plain = adv.infonce_loss(positive, negative)
    assert torch.allclose(adv.adv_infonce_loss(positive, negative), plain, atol=1e-12)
    zero = torch.zeros_like(negative)
    assert torch.allclose(adv.adv_infonce_loss(positive, negative, zero, 1.0), plain, atol=1e-12)
    shifted = adv.infonce_loss(positive, negative + math.log(64.0))
    assert torch.allclose(adv.adv_infonce_loss(positive, negative, None, 64.0), shifted, atol=1e-12)


def test_adv_loss_gradient_matches_sympy():
    s_i = sp.Symbol("s_i", real=True)
    s = sp.symbols("s_1:4", real=True)
    d = sp.symbols("d_1:4", real=True)
    k = sp.Symbol("K", positive=True)
    loss = sp.log(1 + k * sum(sp.exp(dj + sj - s_i) for dj, sj in zip(d, s)))
    gradient = sp.lambdify((s_i, s, d, k), [sp.diff(loss, sj) for sj in s] + [sp.diff(loss, s_i)])
    scores = torch.tensor([0.3, -0.2, 1.1], dtype=f64, requires_grad=True)
    positive = torch.tensor([0.4], dtype=f64, requires_grad=True)
    hardness = torch.tensor([[0.5, -1.0, 0.2]], dtype=f64)
    value = adv.adv_infonce_loss(positive, scores.unsqueeze(0), hardness, 3.0).sum()
    got_scores, got_positive = torch.autograd.grad(value, (scores, positive))
    expected = gradient(0.4, [0.3, -0.2, 1.1], [0.5, -1.0, 0.2], 3.0)
    assert got_scores.tolist() == pytest.approx(expected[:3], abs=1e-12)
    assert float(got_positive) == pytest.approx(expected[3], abs=1e-12)


def test_adv_loss_accepts_minus_infinite_hardness():
    positive = torch.tensor([0.0], dtype=f64)
    negative = torch.tensor([[1.0, 2.0]], dtype=f64)
    hardness = torch.tensor([[math.log(2.0), -math.inf]], dtype=f64)
    assert float(adv.adv_infonce_loss(positive, negative, hardness)) == pytest.approx(math.log1p(2 * math.e))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_adv_loss_rejects_bad_weight(bad):
    with pytest.raises(ValueError, match="negative_weight"):
        adv.adv_infonce_loss(torch.zeros(1), torch.zeros(1, 2), None, bad)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        adv.infonce_loss(torch.zeros(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="hardness"):
        adv.adv_infonce_loss(torch.zeros(2), torch.zeros(2, 4), torch.zeros(2, 3))


# === Hardness and the KL ball === #


def test_hardness_sums_to_n_and_kl_matches_definition():
    logits = torch.randn(20, 10, generator=_generator(), dtype=f64) * 3
    hardness = adv.hardness_from_logits(logits)
    assert torch.allclose(hardness.exp().sum(dim=1), torch.full((20,), 10.0, dtype=f64), atol=1e-12)
    p = torch.softmax(logits, dim=1)
    direct = (p * torch.log(p * 10)).sum(dim=1)
    assert torch.allclose(adv.kl_from_uniform(hardness), direct, atol=1e-12)
    assert torch.allclose(adv.kl_from_uniform(torch.zeros(2, 5, dtype=f64)), torch.zeros(2, dtype=f64))


def test_gibbs_worst_case_matches_sympy_value():
    f = sp.symbols("f_1:4", real=True)
    tau = sp.Symbol("tau", positive=True)
    value = sp.lambdify((f, tau), tau * sp.log(sum(sp.exp(fj / tau) for fj in f) / 3))
    values = torch.tensor([[0.3, -0.5, 0.9]], dtype=f64)
    p_star, got = adv.gibbs_worst_case(values, 0.25)
    assert float(got) == pytest.approx(value([0.3, -0.5, 0.9], 0.25), abs=1e-12)
    attained = adv.kl_regularised_objective(p_star, values, 0.25)
    assert float(attained) == pytest.approx(float(got), abs=1e-12)


def test_gibbs_maximiser_beats_random_points():
    values = torch.randn(1, 6, generator=_generator(1), dtype=f64)
    _, best = adv.gibbs_worst_case(values, 0.5)
    points = torch.distributions.Dirichlet(torch.ones(6, dtype=f64)).sample((5000,))
    objective = adv.kl_regularised_objective(points, values.expand(5000, -1), 0.5)
    assert float(objective.max()) <= float(best) + 1e-12


def test_kl_ball_worst_case_matches_slsqp():
    g = np.array([0.2, 1.5, 0.7, 3.0, 0.1])
    budget = 0.3
    constraints = [{"type": "eq", "fun": lambda p: p.sum() - 1.0},
                   {"type": "ineq", "fun": lambda p: budget - _kl_to_uniform(p)}]
    fit = optimize.minimize(lambda p: -p @ g, np.full(5, 0.2), method="SLSQP", bounds=[(0, 1)] * 5,
                            constraints=constraints, options={"ftol": 1e-14, "maxiter": 500})
    p = adv.kl_ball_worst_case(torch.tensor(g).unsqueeze(0), budget)[0].numpy()
    assert p @ g == pytest.approx(-fit.fun, rel=1e-6)
    assert _kl_to_uniform(p) == pytest.approx(budget, abs=1e-8)


def test_kl_ball_worst_case_edge_budgets():
    values = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], dtype=f64)
    uniform = torch.full((2, 4), 0.25, dtype=f64)
    assert torch.equal(adv.kl_ball_worst_case(values, 0.0), uniform)
    saturated = adv.kl_ball_worst_case(values, math.log(2.0))  # log(N / m) with m = 2 maxima
    assert saturated[0].tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])
    assert saturated[1].tolist() == pytest.approx([0.25] * 4)


def test_kl_ball_worst_case_brute_force_two_negatives():
    g = torch.tensor([[1.0, 4.0]], dtype=f64)
    budget = 0.1
    grid = torch.linspace(0, 1, 200_001, dtype=f64)
    points = torch.stack([grid, 1 - grid], dim=1)
    feasible = torch.special.xlogy(points, points * 2).sum(dim=1) <= budget
    best = float((points[feasible] @ g[0]).max())
    p = adv.kl_ball_worst_case(g, budget)
    assert float(p[0] @ g[0]) == pytest.approx(best, abs=1e-4)


def test_projection_enforces_budget():
    logits = torch.tensor([[0.0, 0.01, -0.01], [5.0, 0.0, -5.0]], dtype=f64)
    projected = adv.project_to_kl_ball(logits, 0.2)
    assert torch.equal(projected[0], logits[0])
    kl = adv.kl_from_uniform(adv.hardness_from_logits(projected))
    assert float(kl[1]) <= 0.2
    assert float(kl[1]) == pytest.approx(0.2, abs=1e-6)


def test_projection_is_information_projection():
    h = np.array([2.0, -1.0, 0.5, 3.0])
    p = np.exp(h) / np.exp(h).sum()
    budget = 0.1
    constraints = [{"type": "eq", "fun": lambda q: q.sum() - 1.0},
                   {"type": "ineq", "fun": lambda q: budget - _kl_to_uniform(q)}]
    fit = optimize.minimize(lambda q: np.sum(q * np.log(np.maximum(q, 1e-300) / p)), np.full(4, 0.25),
                            method="SLSQP", bounds=[(1e-12, 1)] * 4, constraints=constraints,
                            options={"ftol": 1e-15, "maxiter": 500})
    projected = torch.softmax(adv.project_to_kl_ball(torch.tensor(h).unsqueeze(0), budget), dim=1)[0]
    assert projected.numpy() == pytest.approx(fit.x, abs=1e-5)


def test_projection_gradient_uses_fixed_scale():
    logits = torch.tensor([[3.0, 0.0, -3.0]], dtype=f64, requires_grad=True)
    projected = adv.project_to_kl_ball(logits, 0.05)
    scale = float(projected[0, 0].detach() / 3.0)
    (gradient,) = torch.autograd.grad(projected.sum(), logits)
    assert 0 < scale < 1
    assert gradient[0].tolist() == pytest.approx([scale] * 3)


@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan])
def test_kl_budget_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="KL budget"):
        adv.project_to_kl_ball(torch.zeros(1, 3), bad)


def test_worst_case_hardness_is_maximal():
    generator = _generator(2)
    positive = torch.randn(30, generator=generator, dtype=f64)
    negative = torch.randn(30, 6, generator=generator, dtype=f64) * 2
    loss, hardness = adv.adv_infonce_worst_case(positive, negative, 0.4)
    assert torch.allclose(adv.kl_from_uniform(hardness), torch.full((30,), 0.4, dtype=f64), atol=1e-8)
    assert torch.allclose(loss, adv.adv_infonce_loss(positive, negative, hardness), atol=1e-12)
    random_logits = torch.randn(2000, 6, generator=generator, dtype=f64)
    random_hardness = adv.hardness_from_logits(adv.project_to_kl_ball(random_logits, 0.4))
    random_loss = adv.adv_infonce_loss(positive[:1].expand(2000), negative[:1].expand(2000, -1),
                                       random_hardness)
    assert float(random_loss.max()) <= float(loss[0]) + 1e-10
    by_score = hardness.gather(1, negative.argsort(dim=1))
    assert bool((by_score.diff(dim=1) >= -1e-9).all())


def test_positive_rank_counts_ties_against_positive():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.5, 1.0, 2.0], [-1.0, -2.0, -3.0]])
    assert adv.positive_rank(positive, negative).tolist() == [3.0, 1.0]
    hardness = torch.tensor([[0.6, -0.5, -2.0], [0.0, 0.0, 0.0]])
    assert adv.positive_rank(positive, negative, hardness).tolist() == [2.0, 1.0]


# === Models === #


def test_matrix_factorisation_scores_both_paths_agree():
    model = adv.MatrixFactorisation(5, 40, 3, similarity="cosine", temperature=0.5, generator=_generator())
    users = torch.tensor([0, 3, 4])
    few = torch.tensor([[1, 2], [3, 4], [0, 39]])  # 40 > 16 * 2 items: gather path
    many = torch.randint(0, 40, (3, 5), generator=_generator(1))  # 40 <= 16 * 5: dense path
    u = torch.nn.functional.normalize(model.user_embedding, dim=1)
    v = torch.nn.functional.normalize(model.item_embedding, dim=1)
    for items in (few, many):
        expected = torch.stack([v[row] @ u[user] for user, row in zip(users, items)]) / 0.5
        assert torch.allclose(model.scores(users, items), expected, atol=1e-6)
    assert torch.allclose(model.all_scores(), u @ v.T / 0.5, atol=1e-6)
    assert torch.allclose(model.scores(users, few[:, 0]), (u[users] * v[few[:, 0]]).sum(1) / 0.5, atol=1e-6)


def test_matrix_factorisation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="similarity"):
        adv.MatrixFactorisation(2, 2, 2, similarity="euclid")
    with pytest.raises(ValueError, match="positive"):
        adv.MatrixFactorisation(0, 2, 2)


def test_adversarial_step_ascends():
    parameter = torch.nn.Parameter(torch.tensor(0.0))
    optimiser = torch.optim.SGD([parameter], lr=0.1)
    values = []
    for _ in range(5):
        loss = -(parameter - 1.0) ** 2
        values.append(float(loss.detach()))
        adv.adversarial_step(loss, optimiser)
    assert values == sorted(values)
    assert values[-1] > values[0]


def test_sample_negatives_avoids_positives():
    positives = torch.zeros(4, 10, dtype=torch.bool)
    positives[:, :7] = True
    users = torch.tensor([0, 1, 2, 3, 0])
    negatives = adv.sample_negatives(users, positives, 50, _generator())
    assert negatives.shape == (5, 50)
    assert bool((negatives >= 7).all())
    assert bool((negatives < 10).all())


# === Metrics and statistics === #


def test_ranking_metrics_exclude_items():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7]])
    relevant = torch.tensor([[False, False, True, False]])
    exclude = torch.tensor([[True, True, False, False]])
    result = adv.ranking_metrics(scores, relevant, exclude, k=2)
    assert float(result["recall"][0]) == 1.0
    assert float(result["ndcg"][0]) == pytest.approx(1 / math.log2(3))
    with pytest.raises(ValueError, match="both relevant and excluded"):
        adv.ranking_metrics(scores, relevant, relevant, k=2)


def test_gini_coefficient_brute_force():
    counts = torch.tensor([1.0, 4.0, 0.0, 9.0, 2.0])
    values = counts.numpy()
    brute = np.abs(values[:, None] - values[None, :]).sum() / (2 * values.size**2 * values.mean())
    assert adv.gini_coefficient(counts) == pytest.approx(brute, abs=1e-12)
    assert adv.gini_coefficient(torch.ones(7)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        adv.gini_coefficient(torch.zeros(3))


def test_popularity_scores_counts_training_positives():
    train = torch.tensor([[True, False, True], [True, False, False]])
    assert adv.popularity_scores(train).tolist() == [[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]]


def test_paired_seed_difference_matches_scipy():
    first, second = [0.31, 0.28, 0.35, 0.30], [0.25, 0.27, 0.30, 0.26]
    summary = adv.paired_seed_difference(first, second)
    test = stats.ttest_rel(first, second)
    assert summary["mean"] / summary["stderr"] == pytest.approx(test.statistic, rel=1e-9)
    assert summary["margin"] == pytest.approx(stats.t.ppf(0.975, 3) * summary["stderr"], rel=1e-12)
    with pytest.raises(ValueError, match="two seeds"):
        adv.paired_seed_difference([0.1], [0.2])


def test_paired_user_difference_skips_users_without_tests():
    nan = math.nan
    first = [torch.tensor([0.5, nan, 1.0, 0.0]), torch.tensor([0.7, nan, 1.0, 0.2])]
    second = [torch.tensor([0.5, nan, 0.0, 0.0]), torch.tensor([0.5, nan, 0.0, 0.0])]
    summary = adv.paired_user_difference(first, second)
    per_user = np.array([0.1, 1.0, 0.1])
    assert summary["users"] == 3
    assert summary["mean"] == pytest.approx(per_user.mean())
    assert summary["stderr"] == pytest.approx(per_user.std(ddof=1) / math.sqrt(3))


def test_false_negative_hardness_gap_hand_example():
    logits = torch.tensor([[3.0, 1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    false_negatives = torch.tensor([[True, False, False, False], [True, False, False, False]])
    true_negatives = torch.tensor([[False, True, True, True], [False, False, False, False]])
    gap = adv.false_negative_hardness_gap(logits, false_negatives, true_negatives)
    pool = torch.tensor([3.0, 1.0, 1.0, -1.0])
    standardised = (pool - pool.mean()) / pool.std(unbiased=False)
    assert float(gap[0]) == pytest.approx(float(standardised[0] - standardised[1:].mean()))
    assert math.isnan(float(gap[1]))


# === Data === #


def test_simulator_splits_are_consistent():
    splits = adv.simulate_popularity_shift(2000, 80, generator=_generator(), relevance_offset=-1.0,
                                           exposure_exponent=0.6)
    sets = [splits.train, splits.valid, splits.test_id, splits.test_ood]
    for index, first in enumerate(sets):
        for second in sets[index + 1:]:
            assert not bool((first & second).any())
    assert bool((splits.observed <= splits.liked).all())
    assert bool((splits.test_ood <= splits.liked & ~splits.observed).all())
    train_share = float(splits.train.sum()) / float(splits.observed.sum())
    assert train_share == pytest.approx(0.7, abs=0.01)
    assert adv.gini_coefficient(splits.train.sum(0)) > adv.gini_coefficient(splits.test_ood.sum(0)) + 0.1


def test_implicit_interactions_reindexes_positives():
    positives, n_users, n_items = adv.implicit_interactions([10, 10, 20, 30], [5, 7, 7, 9], [5, 3, 4, 1], 4)
    assert (n_users, n_items) == (2, 2)
    assert positives.tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError, match="min_rating"):
        adv.implicit_interactions([1], [1], [1], 4)


def test_popularity_debiased_split_flattens_items():
    generator = _generator(3)
    weights = (torch.arange(1, 61, dtype=f64) ** -1.0).unsqueeze(0)
    positives = torch.rand(400, 60, generator=generator, dtype=f64) < 0.5 * weights / weights.max()
    positives[:, :] |= torch.rand(400, 60, generator=generator, dtype=f64) < 0.02
    splits = adv.popularity_debiased_split(positives, generator=generator, ood_fraction=0.1)
    union = splits.train | splits.valid | splits.test_id | splits.test_ood
    assert torch.equal(union, positives)
    assert not bool((splits.test_ood & splits.observed).any())
    share = float(splits.test_ood.sum()) / float(positives.sum())
    assert share == pytest.approx(0.1, abs=0.02)
    assert adv.gini_coefficient(splits.test_ood.sum(0)) < adv.gini_coefficient(splits.train.sum(0)) - 0.1


# === Training === #


def test_training_config_validates():
    with pytest.raises(ValueError, match="loss must be one of"):
        adv.TrainingConfig("hinge")
    with pytest.raises(ValueError, match="dim"):
        adv.TrainingConfig("bpr", dim=0)


@pytest.mark.parametrize("loss", ["bpr", "infonce", "advinfonce", "kl-dro"])
def test_training_learns_within_budget(loss):
    # Strong low-dimensional relevance and full exposure: a world that 8 epochs can learn.
    splits = adv.simulate_popularity_shift(200, 40, generator=_generator(4), dim=4, relevance_scale=6.0,
                                           relevance_offset=-2.0, exposure_exponent=0.0)
    config = adv.TrainingConfig(loss, dim=8, n_negatives=8, batch_size=256, max_epochs=8, patience=8,
                                top_k=5, kl_budget=0.2)
    result = adv.train_recommender(splits.train, splits.valid, config, generator=_generator(5))
    assert len(result.validation_recall) == 8
    assert max(result.validation_recall) > 0.4  # random ranking gives k / n_items = 0.125
    assert max(result.max_kl) <= 0.2 + 1e-5
    assert (result.adversary is not None) == (loss == "advinfonce")


# === The chapter against a broken library === #


@pytest.mark.chapters
def test_ascending_adversary_sign_is_checked(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "adversarial_infonce", "recsys/adversarial.py",
        "(-loss).backward()", "loss.backward()",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["adv.adversary-gain-fraction"]


@pytest.mark.chapters
def test_dropped_kl_budget_is_checked(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "adversarial_infonce", "recsys/adversarial.py",
        "return logits * scale.to(logits.dtype)", "return logits",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["adv.projection-within-budget"]


@pytest.mark.chapters
def test_dropped_kl_penalty_is_checked(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "adversarial_infonce", "recsys/adversarial.py",
        "return (p * values).sum(dim=-1) - temperature * _kl_of_distribution(p)",
        "return (p * values).sum(dim=-1)",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["adv.gibbs-value-attained"]
