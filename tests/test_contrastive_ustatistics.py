"""The U-statistic library against SymPy, closed forms and brute-force enumeration.

The last three tests break one formula each in a copy of the library and
check that the chapter fails on the claim that guards it.
"""

from __future__ import annotations

import itertools
import math

import pytest
import sympy as sp
import torch

from mutation import run_with_patched_library
from negsamp import ustat


@pytest.fixture(autouse=True)
def float64_default():
    """Run each test in float64, as the chapter does, and restore the caller's default after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pool(n_points: int, n_classes: int, seed: int = 0, dim: int = 5):
    generator = _generator(seed)
    points = torch.nn.functional.normalize(torch.randn(n_points, dim, generator=generator), dim=1)
    labels = torch.cat([torch.arange(n_classes), torch.randint(0, n_classes, (n_points - n_classes,),
                                                               generator=generator)])
    return points, labels


# === Collision probability, threshold and shapes === #


def test_collision_probability_uniform_closed_form():
    for n_classes, k in [(2, 1), (10, 4), (1000, 8)]:
        probs = ustat.zipf_class_probabilities(n_classes, 0.0)
        expected = 1 - (1 - 1 / n_classes) ** k
        assert float(ustat.collision_probability(probs, k)) == pytest.approx(expected, abs=1e-14)


def test_collision_probability_matches_sympy():
    rho = sp.symbols("r1:4", positive=True)
    k = sp.Symbol("k", positive=True, integer=True)
    tau = 1 - sum(r * (1 - r) ** k for r in rho)
    values = (0.5, 0.3, 0.2)
    for k_value in (1, 3, 7):
        expected = float(tau.subs({**dict(zip(rho, values)), k: k_value}))
        assert float(ustat.collision_probability(torch.tensor(values), k_value)) == pytest.approx(expected, abs=1e-14)


def test_threshold_is_where_branches_meet():
    for k in (1, 2, 4, 30):
        threshold = ustat.class_size_threshold(k)
        assert threshold == pytest.approx(2 / (k + 2))
        assert threshold / 2 == pytest.approx((1 - threshold) / k)


def test_effective_sizes_follow_both_branches():
    probs = torch.tensor([0.05, 0.15, 0.8])
    sizes = ustat.effective_class_sizes(probs, 4, 1000.0)  # threshold 1/3
    assert sizes.tolist() == pytest.approx([25.0, 75.0, 50.0])


def test_small_class_mass_by_hand():
    probs = torch.tensor([0.05, 0.15, 0.8])
    assert float(ustat.small_class_mass(probs, 4)) == pytest.approx(0.2)
    assert float(ustat.small_class_mass(probs, 1)) == pytest.approx(0.2)  # threshold 2/3
    assert float(ustat.small_class_mass(probs, 100)) == pytest.approx(0.0)  # threshold 1/51


def test_shapes_for_uniform_classes():
    n_classes, k = 50, 8
    probs = ustat.zipf_class_probabilities(n_classes, 0.0)
    tau = 1 - (1 - 1 / n_classes) ** k
    assert float(ustat.sample_complexity_hl2025(probs)) == pytest.approx(n_classes)
    assert float(ustat.sample_complexity_refined(probs, k)) == pytest.approx(n_classes)
    assert float(ustat.sample_complexity_classwise(probs, k)) == pytest.approx(2 * n_classes)
    assert float(ustat.sample_complexity_new_reconstructed(probs, k)) == pytest.approx(k / (1 - tau) ** 2)


def test_refined_shape_with_a_large_class():
    probs = torch.tensor([0.6, 0.3, 0.1])  # k = 2: threshold 1/2, so theta = 0.4
    assert float(ustat.sample_complexity_refined(probs, 2)) == pytest.approx(0.4 * 3 + 0.6**2 * 2)


def test_shapes_accept_batches_of_distributions():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    assert ustat.sample_complexity_hl2025(probs).tolist() == pytest.approx([2.0, 10.0])
    assert ustat.collision_probability(probs, 1).shape == (2,)


def test_zipf_probabilities_decrease_and_sum_to_one():
    probs = ustat.zipf_class_probabilities(100, 1.5)
    assert float(probs.sum()) == pytest.approx(1.0)
    assert torch.all(probs[1:] < probs[:-1])
    assert float(probs[0] / probs[1]) == pytest.approx(2**1.5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_k_rejected(bad):
    with pytest.raises(ValueError, match="number of negatives k"):
        ustat.collision_probability(torch.tensor([0.5, 0.5]), bad)


def test_probabilities_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        ustat.sample_complexity_hl2025(torch.tensor([0.5, 0.4]))
    with pytest.raises(ValueError, match="positive"):
        ustat.sample_complexity_hl2025(torch.tensor([1.0, 0.0]))


# === Complete U-statistics === #


@pytest.mark.parametrize("reduction", ["hardest", "mean"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_fast_evaluator_matches_brute_force(reduction, k):
    points, labels = _pool(14, 3, seed=k)
    options = dict(margin=0.6, scale=1.7, reduction=reduction)
    fast = ustat.complete_class_ustatistics(points, labels, k, **options)
    brute = ustat.brute_force_class_ustatistics(points, labels, k, **options)
    assert torch.equal(torch.isnan(fast.mean), torch.isnan(brute.mean))
    assert torch.allclose(fast.mean.nan_to_num(0), brute.mean.nan_to_num(0), rtol=0, atol=1e-12)
    assert torch.allclose(fast.second_moment.nan_to_num(0), brute.second_moment.nan_to_num(0), rtol=0, atol=1e-12)


def test_mean_reduction_does_not_depend_on_k():
    points, labels = _pool(20, 3, seed=5)
    with_one_negative = ustat.complete_class_ustatistics(points, labels, 1, reduction="mean").mean
    with_four_negatives = ustat.complete_class_ustatistics(points, labels, 4, reduction="mean").mean
    assert torch.allclose(with_one_negative, with_four_negatives, rtol=0, atol=1e-14)


def test_counts_equal_expanded_pool():
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(4, 1.0), 3, 6, 0.6, _generator(1))
    counts = ustat.sample_counts(world.point_masses(), 30, 3, _generator(2))
    batched = ustat.complete_class_ustatistics(world.support, world.labels, 3, counts=counts)
    for row in range(3):
        expanded = torch.arange(world.support.shape[0]).repeat_interleave(counts[row].long())
        single = ustat.complete_class_ustatistics(world.support[expanded], world.labels[expanded], 3, n_classes=4)
        assert torch.allclose(batched.mean[row].nan_to_num(0), single.mean.nan_to_num(0), rtol=0, atol=1e-13)
        assert torch.equal(batched.class_sizes[row], single.class_sizes)


def test_loss_axis_equals_separate_calls():
    points, labels = _pool(30, 4, seed=3)
    scales = torch.tensor([0.5, 2.0, 8.0])
    together = ustat.complete_class_ustatistics(points, labels, 2, margin=1.0, scale=scales)
    assert together.mean.shape == (3, 4)
    for index, scale in enumerate(scales.tolist()):
        alone = ustat.complete_class_ustatistics(points, labels, 2, margin=1.0, scale=scale)
        assert torch.allclose(together.mean[index], alone.mean, rtol=0, atol=1e-13)
        assert torch.allclose(together.second_moment[index], alone.second_moment, rtol=0, atol=1e-12)


def test_small_blocks_give_same_result():
    points, labels = _pool(60, 3, seed=4)
    default = ustat.complete_class_ustatistics(points, labels, 3)
    blocked = ustat.complete_class_ustatistics(points, labels, 3, max_block_elements=50)
    assert torch.allclose(default.mean, blocked.mean, rtol=0, atol=1e-13)


def test_unusable_classes_are_nan():
    points, labels = _pool(8, 3, seed=6)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])  # class 1 and 2 have one point each
    moments = ustat.complete_class_ustatistics(points, labels, 2)
    assert not math.isnan(float(moments.mean[0]))
    assert math.isnan(float(moments.mean[1]))
    assert math.isnan(float(moments.mean[2]))
    too_few_negatives = ustat.complete_class_ustatistics(points, labels, 3)
    assert math.isnan(float(too_few_negatives.mean[0]))  # only 2 points outside class 0


def test_classes_argument_restricts_evaluation():
    points, labels = _pool(20, 3, seed=7)
    full = ustat.complete_class_ustatistics(points, labels, 2)
    only = ustat.complete_class_ustatistics(points, labels, 2, classes=[1])
    assert float(only.mean[1]) == pytest.approx(float(full.mean[1]), abs=1e-14)
    assert math.isnan(float(only.mean[0]))
    assert math.isnan(float(only.mean[2]))


def test_hieu_ledent_estimate_and_dropped_mass():
    means = torch.tensor([1.0, math.nan, 3.0])
    sizes = torch.tensor([5.0, 1.0, 4.0])
    estimate, dropped = ustat.hieu_ledent_estimate(means, sizes)
    assert float(estimate) == pytest.approx(0.5 * 1.0 + 0.4 * 3.0)
    assert float(dropped) == pytest.approx(0.1)


def test_brute_force_evaluation_count_by_formula():
    expected = 3 * 2 * math.comb(3, 2) + 2 * 1 * math.comb(4, 2)  # the class of one point has no pair
    assert ustat.brute_force_evaluation_count(torch.tensor([3, 2, 1]), 2) == expected


def test_evaluator_rejects_bad_inputs():
    points, labels = _pool(10, 2)
    with pytest.raises(ValueError, match="unknown reduction"):
        ustat.complete_class_ustatistics(points, labels, 2, reduction="max")
    with pytest.raises(ValueError, match="scale must be positive"):
        ustat.complete_class_ustatistics(points, labels, 2, scale=0.0)
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        ustat.complete_class_ustatistics(points, labels, 2, counts=torch.full((10,), 0.5))
    with pytest.raises(ValueError, match="labels must have shape"):
        ustat.complete_class_ustatistics(points, labels[:5], 2)


# === Population risk === #


@pytest.mark.parametrize("reduction", ["hardest", "mean"])
def test_population_risk_matches_brute_force(reduction):
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(3, 1.0), 2, 4, 0.7, _generator(8))
    point_probs = torch.tensor([0.2, 0.8, 0.5, 0.5, 0.9, 0.1])
    arguments = (world.support, world.labels, world.class_probs, 3)
    exact = ustat.population_class_risks(*arguments, point_probs=point_probs, margin=0.8, reduction=reduction)
    summed = ustat.brute_force_population_risks(*arguments, point_probs=point_probs, margin=0.8,
                                                reduction=reduction)
    assert torch.allclose(exact.mean, summed.mean, rtol=0, atol=1e-13)
    assert torch.allclose(exact.second_moment, summed.second_moment, rtol=0, atol=1e-13)


def test_pool_ustatistic_converges_to_population_risk():
    """A very large pool's U_r is close to L_r (the U-statistic is consistent)."""
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(4, 0.5), 3, 6, 0.8, _generator(9))
    counts = ustat.sample_counts(world.point_masses(), 2_000_000, 1, _generator(10))
    pool = ustat.complete_class_ustatistics(world.support, world.labels, 3, counts=counts)
    population = ustat.population_class_risks(world.support, world.labels, world.class_probs, 3)
    assert torch.allclose(pool.mean[0], population.mean, rtol=0, atol=5e-3)


# === Hoeffding decomposition === #


def test_overlap_probabilities_match_hypergeometric_sympy():
    for n_value, degree in [(5, 2), (12, 4), (4, 4)]:
        expected = [float(sp.binomial(degree, value) * sp.binomial(n_value - degree, degree - value)
                          / sp.binomial(n_value, degree)) for value in range(degree + 1)]
        assert ustat.overlap_probabilities(n_value, degree).tolist() == pytest.approx(expected, abs=1e-15)
    with pytest.raises(ValueError, match="degree"):
        ustat.overlap_probabilities(3, 4)


def test_hoeffding_variance_matches_enumeration():
    world = ustat.DiscreteWorld(
        support=torch.nn.functional.normalize(torch.randn(5, 3, generator=_generator(11)), dim=1),
        labels=torch.tensor([0, 0, 1, 1, 2]),
        point_probs=torch.tensor([0.4, 0.6, 0.7, 0.3, 1.0]),
        class_probs=torch.tensor([0.4, 0.4, 0.2]),
    )
    n_class, n_negatives, k = 3, 3, 2
    negative_probs = world.negative_masses(0)
    pools, probs = [], []
    for firsts in itertools.product([0, 1], repeat=n_class):
        for seconds in itertools.product([2, 3, 4], repeat=n_negatives):
            pools.append(torch.bincount(torch.tensor(firsts + seconds), minlength=5))
            probs.append(math.prod(float(world.point_probs[i]) for i in firsts)
                         * math.prod(float(negative_probs[i]) for i in seconds))
    probs = torch.tensor(probs)
    values = ustat.complete_class_ustatistics(world.support, world.labels, k, counts=torch.stack(pools).double(),
                                              classes=[0], n_classes=3).mean[:, 0]
    mean = float((probs * values).sum())
    variance = float((probs * (values - mean) ** 2).sum())
    kernel, first, second = ustat.hinge_kernel_tensor(world, 0, k)
    theta, sigma2 = ustat.hoeffding_components(kernel, first, second, first_degree=2)
    assert theta == pytest.approx(mean, abs=1e-13)
    assert ustat.two_sample_ustat_variance(sigma2, n_class, n_negatives) == pytest.approx(variance, abs=1e-13)


def test_additive_kernel_has_only_first_order_terms():
    """For h = f(x1) + f(x2) + g(y) the exact variance is the first-order one."""
    f = torch.tensor([0.0, 1.0, 3.0])
    g = torch.tensor([2.0, -1.0])
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.6, 0.4])
    kernel = f.view(3, 1, 1) + f.view(1, 3, 1) + g.view(1, 1, 2)
    theta, sigma2 = ustat.hoeffding_components(kernel, p, q, first_degree=2)
    var_f = float((p * f**2).sum() - (p * f).sum() ** 2)
    var_g = float((q * g**2).sum() - (q * g).sum() ** 2)
    assert theta == pytest.approx(float(2 * (p * f).sum() + (q * g).sum()))
    assert float(sigma2[1, 0]) == pytest.approx(var_f)
    assert float(sigma2[0, 1]) == pytest.approx(var_g)
    for n, m in [(2, 1), (5, 7)]:
        exact = ustat.two_sample_ustat_variance(sigma2, n, m)
        assert exact == pytest.approx(ustat.first_order_variance(sigma2, n, m))
        assert exact == pytest.approx(4 * var_f / n + var_g / m)


def test_hoeffding_rejects_asymmetric_kernel():
    kernel = torch.arange(8.0).view(2, 2, 2)
    with pytest.raises(ValueError, match="not symmetric"):
        ustat.hoeffding_components(kernel, torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]), first_degree=2)


def test_hinge_kernel_mean_is_population_risk():
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(3, 1.0), 2, 5, 0.6, _generator(12))
    for reduction in ("hardest", "mean"):
        kernel, first, second = ustat.hinge_kernel_tensor(world, 1, 2, margin=0.9, reduction=reduction)
        theta, _ = ustat.hoeffding_components(kernel, first, second, first_degree=2)
        population = ustat.population_class_risks(world.support, world.labels, world.class_probs, 2, margin=0.9,
                                                  reduction=reduction)
        assert theta == pytest.approx(float(population.mean[1]), abs=1e-13)


# === Sampling and the incomplete estimator === #


def test_collision_free_tuples_are_valid_and_uniform():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    anchors, positives, negatives = ustat.sample_collision_free_tuples(labels, 2, 60_000, _generator(13))
    assert torch.all(labels[anchors] == labels[positives])
    assert torch.all(anchors != positives)
    assert not torch.any(labels[negatives] == labels[anchors].unsqueeze(1))
    assert torch.all(negatives[:, 0] != negatives[:, 1])
    # Class 0 anchors (probability 3/5 among usable classes 0 and 1) see every 2-subset of {3, 4, 5} equally often.
    class_zero = labels[anchors] == 0
    assert float(class_zero.double().mean()) == pytest.approx(3 / 5, abs=4 * math.sqrt(0.24 / 60_000))
    subsets = negatives[class_zero].sort(dim=1).values
    frequency = torch.stack([(subsets == torch.tensor(pair)).all(dim=1).double().mean()
                             for pair in [(3, 4), (3, 5), (4, 5)]])
    assert torch.allclose(frequency, torch.full((3,), 1 / 3), atol=4 * math.sqrt(2 / 9 / int(class_zero.sum())))


def test_tuple_sampler_rejects_impossible_pool():
    with pytest.raises(ValueError, match="no class has two points"):
        ustat.sample_collision_free_tuples(torch.tensor([0, 1, 2]), 1, 10)


def test_population_tuples_never_collide():
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(5, 1.0), 2, 4, 0.5, _generator(14))
    anchors, positives, negatives = ustat.sample_population_tuples(world, 3, 50_000, _generator(15))
    assert torch.all(world.labels[anchors] == world.labels[positives])
    assert not torch.any(world.labels[negatives] == world.labels[anchors].unsqueeze(1))
    # Given a class-0 anchor, a negative has class q with probability rho_q / (1 - rho_0).
    rho = world.class_probs
    chosen = world.labels[negatives[world.labels[anchors] == 0]].flatten()
    frequency = torch.bincount(chosen, minlength=5).double() / chosen.numel()
    expected = rho / (1 - rho[0])
    expected[0] = 0
    assert torch.allclose(frequency, expected, atol=4 * math.sqrt(0.25 / chosen.numel()))


def test_tuple_losses_by_hand():
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    anchors, positives, negatives = torch.tensor([0]), torch.tensor([2]), torch.tensor([[1, 2]])
    # scores: <e0, e2 - e1> = 0.7071, <e0, e2 - e2> = 0; hardest: max(0, 1 - 0) = 1
    hardest = ustat.tuple_losses(points, anchors, positives, negatives)
    mean = ustat.tuple_losses(points, anchors, positives, negatives, reduction="mean")
    assert float(hardest) == pytest.approx(1.0)
    assert float(mean) == pytest.approx(((1 - math.sqrt(0.5)) + 1.0) / 2)


def test_incomplete_moments_match_complete_estimate():
    points, labels = _pool(40, 4, seed=16)
    moments = ustat.complete_class_ustatistics(points, labels, 2)
    mean, variance = ustat.incomplete_ustatistic_moments(moments, 2)
    estimate, dropped = ustat.hieu_ledent_estimate(moments.mean, moments.class_sizes)
    assert float(dropped) == 0.0
    assert mean == pytest.approx(float(estimate), abs=1e-14)
    anchors, positives, negatives = ustat.sample_collision_free_tuples(labels, 2, 400_000, _generator(17))
    losses = ustat.tuple_losses(points, anchors, positives, negatives)
    assert float(losses.mean()) == pytest.approx(mean, abs=4 * math.sqrt(variance / losses.numel()))
    assert float(losses.var()) == pytest.approx(variance, rel=0.02)


def test_sample_counts_sum_to_pool_size():
    counts = ustat.sample_counts(torch.tensor([0.2, 0.0, 0.8]), 50, 4, _generator(18))
    assert counts.sum(dim=1).tolist() == [50.0] * 4
    assert torch.all(counts[:, 1] == 0)


def test_world_restrict_keeps_first_classes():
    world = ustat.make_discrete_world(ustat.zipf_class_probabilities(6, 0.0), 2, 3, 0.5, _generator(19))
    smaller = world.restrict(3, torch.tensor([0.5, 0.3, 0.2]))
    assert smaller.n_classes == 3
    assert smaller.support.shape == (6, 3)
    assert torch.equal(smaller.support, world.support[:6])


# === Deviations and slopes === #


def test_uniform_deviations_by_hand():
    pool = ustat.ClassMoments(mean=torch.tensor([[[1.0, 2.0]], [[1.5, math.nan]]]),
                              second_moment=torch.zeros(2, 1, 2),
                              class_sizes=torch.tensor([[2.0, 2.0], [3.0, 1.0]]))
    population = ustat.ClassMoments(mean=torch.tensor([[1.0, 1.0]]), second_moment=torch.zeros(1, 2),
                                    class_sizes=torch.tensor([0.5, 0.5]))
    deviations = ustat.uniform_deviations(pool, population)
    assert deviations.per_class[0].tolist() == [0.0, 1.0]
    assert deviations.weighted.tolist() == pytest.approx([0.5, 0.75 * 0.5])
    assert deviations.estimator.tolist() == pytest.approx([0.5, abs(0.75 * 1.5 - 1.0)])
    assert deviations.dropped_mass.tolist() == pytest.approx([0.0, 0.25])


def test_bootstrap_slope_of_exact_power_law():
    x = [1.0, 2.0, 4.0, 8.0]
    samples = [torch.full((5, 3), value**-0.5) for value in x]
    fit, stderr = ustat.bootstrap_loglog_slope(x, samples, 50, _generator(20))
    assert fit.slope == pytest.approx(-0.5)
    assert stderr == pytest.approx(0.0, abs=1e-12)


# === Mutations: the chapter must fail on the claim that guards each formula === #


@pytest.mark.chapters
def test_wrong_bound_exponent_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_ustatistics", "ustat/shapes.py",
        "return theta * n_classes + (1 - theta) ** 2 * k", "return theta * n_classes + (1 - theta) * k",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["ustat.bound-shapes-match-sympy"]


@pytest.mark.chapters
def test_with_replacement_weights_fail_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_ustatistics", "ustat/evaluator.py",
        "ratio = ratio * (cumulative - u) / (total - u)", "ratio = ratio * cumulative / total",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["ustat.fast-matches-brute-force"]


@pytest.mark.chapters
def test_wrong_overlap_weight_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_ustatistics", "ustat/hoeffding.py",
        "math.comb(degree, c) * math.comb(n - degree, degree - c) / total",
        "math.comb(n - degree, degree - c) / total",
    )
    assert result.returncode == 1
    assert entry["failed_claims"] == ["ustat.overlap-weights-match-sympy"]
