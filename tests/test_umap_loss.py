"""The UMAP effective-loss library against SymPy, brute-force loops and umap-learn itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse
import sympy as sp
import torch

from negsamp import metrics
from negsamp.repro import thread_count
from negsamp.umap_loss import (
    EdgeSchedule,
    FuzzyGraph,
    count_samples,
    attraction_coefficient,
    best_global_scale,
    curve_parameters,
    effective_loss,
    effective_loss_terms,
    effective_target,
    expected_update,
    log_similarity_complement,
    loss_scale_derivative,
    low_dimensional_similarity,
    mean_epoch_update,
    negative_sampling_rate,
    optimize_layout,
    published_loss,
    published_loss_terms,
    repulsion_coefficient,
    repulsive_weight,
    sample_ring,
    sampled_epoch_update,
)

DEFAULT_DTYPE = torch.float64  # conftest.py sets this per test and restores it afterwards
# Chapters get this thread count from negsamp.setup.  On a busy machine the sampler's many tiny
# operations run many times slower when torch waits for a second thread.
torch.set_num_threads(thread_count())
A, B = 1.5769434602697652, 0.8950608778515733  # umap-learn's fit for min_dist 0.1, spread 1


def _random_graph(n=12, density=0.4, seed=0, max_weight=0.9):
    generator = torch.Generator().manual_seed(seed)
    values = (0.05 + (max_weight - 0.05) * torch.rand(n, n, generator=generator)).triu(1)
    is_edge = torch.rand(n, n, generator=generator).triu(1) < density
    upper = torch.where(is_edge, values, torch.zeros(()))
    dense = upper + upper.T
    return FuzzyGraph.from_scipy(scipy.sparse.csr_matrix(dense.numpy())), dense


def _random_embedding(n=12, seed=1):
    return 5 * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))


def _sympy_coefficients():
    a, b, d = sp.symbols("a b D", positive=True)
    nu = 1 / (1 + a * d**b)
    # Simplified, because the raw derivative of log(1 - nu) loses digits to cancellation at small D.
    attraction = sp.lambdify((d, a, b), sp.simplify(2 * sp.diff(sp.log(nu), d)), "math")
    repulsion = sp.lambdify((d, a, b), sp.simplify(2 * sp.diff(sp.log(1 - nu), d)), "math")
    return attraction, repulsion


# === Similarity and coefficients === #


def test_curve_parameters_match_umap_learn():
    from umap.umap_ import find_ab_params

    for spread, min_dist in [(1.0, 0.1), (1.0, 0.0), (1.0, 0.5), (2.0, 0.3)]:
        expected = find_ab_params(spread, min_dist)
        assert curve_parameters(spread, min_dist) == pytest.approx(expected, rel=1e-6)


def test_curve_parameters_reject_bad_input():
    with pytest.raises(ValueError, match="spread"):
        curve_parameters(0.0, 0.1)
    with pytest.raises(ValueError, match="min_dist"):
        curve_parameters(1.0, 3.5)


def test_similarity_and_its_complement():
    distances = torch.tensor([0.01, 0.5, 1.0, 4.0, 50.0])
    nu = low_dimensional_similarity(distances, A, B)
    assert torch.allclose(nu, 1 / (1 + A * distances**B))
    assert torch.allclose(log_similarity_complement(distances, A, B), torch.log(1 - nu), rtol=1e-12)


def test_coefficients_match_sympy():
    attraction, repulsion = _sympy_coefficients()
    distances = torch.tensor([1e-3, 0.1, 0.7, 3.0, 80.0])
    for a, b in [(A, B), (0.583, 1.334)]:
        got_attraction = attraction_coefficient(distances, a, b)
        got_repulsion = repulsion_coefficient(distances, a, b, epsilon=0.0)
        for index, distance in enumerate(distances.tolist()):
            assert float(got_attraction[index]) == pytest.approx(attraction(distance, a, b), rel=1e-12)
            assert float(got_repulsion[index]) == pytest.approx(repulsion(distance, a, b), rel=1e-12)


def test_coefficients_are_gradients_of_log_similarities():
    y_i = torch.tensor([0.3, -1.2], requires_grad=True)
    y_j = torch.tensor([1.1, 0.4])
    distance = (y_i - y_j).pow(2).sum()
    (grad_attraction,) = torch.autograd.grad(torch.log(low_dimensional_similarity(distance, A, B)), y_i)
    (grad_repulsion,) = torch.autograd.grad(log_similarity_complement((y_i - y_j).pow(2).sum(), A, B), y_i)
    gap = (y_i - y_j).detach()
    assert torch.allclose(grad_attraction, attraction_coefficient(distance.detach(), A, B) * gap)
    assert torch.allclose(grad_repulsion, repulsion_coefficient(distance.detach(), A, B, epsilon=0.0) * gap)


def test_repulsion_coefficient_matches_umap_learn_code():
    distances = torch.tensor([0.01, 0.3, 2.0])
    expected = 2 * B / ((0.001 + distances) * (A * distances**B + 1))
    assert torch.allclose(repulsion_coefficient(distances, A, B), expected)


def test_coefficients_vanish_at_zero_distance():
    zero = torch.zeros(3)
    assert torch.equal(attraction_coefficient(zero, A, B), zero)
    assert torch.equal(repulsion_coefficient(zero, A, B, epsilon=0.0), zero)


def test_coefficients_reject_bad_curve():
    with pytest.raises(ValueError, match="curve parameters"):
        attraction_coefficient(torch.ones(2), -1.0, B)
    with pytest.raises(ValueError, match="epsilon"):
        repulsion_coefficient(torch.ones(2), A, B, epsilon=-1.0)


# === Graph, weights and target === #


def test_graph_degrees_and_dense_form():
    graph, dense = _random_graph()
    assert torch.allclose(graph.degrees(), dense.sum(1))
    assert torch.equal(graph.dense(), dense)
    assert graph.max_weight == pytest.approx(float(dense.max()))
    round_trip = FuzzyGraph.from_scipy(graph.to_scipy())
    assert torch.allclose(round_trip.dense(), dense, atol=1e-7)


def test_graph_pruning_and_binarising():
    graph, dense = _random_graph()
    pruned = graph.pruned(4)
    threshold = float(dense.max()) / 4
    assert torch.equal(pruned.dense(), torch.where(dense >= threshold, dense, torch.zeros(())))
    assert torch.equal(graph.binarised().dense(), (dense > 0).double())


def test_graph_rejects_invalid_matrices():
    asymmetric = scipy.sparse.csr_matrix(np.array([[0.0, 0.5], [0.2, 0.0]]))
    with pytest.raises(ValueError, match="not symmetric"):
        FuzzyGraph.from_scipy(asymmetric)
    with pytest.raises(ValueError, match="square"):
        FuzzyGraph.from_scipy(scipy.sparse.csr_matrix(np.ones((2, 3))))
    with pytest.raises(ValueError, match="self-loops"):
        FuzzyGraph.from_scipy(scipy.sparse.csr_matrix(np.eye(2)))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        FuzzyGraph(torch.tensor([0]), torch.tensor([1]), torch.tensor([1.5]), 2)


def test_repulsive_weights_and_rates():
    degrees = torch.tensor([3.0, 5.0, 4.0, 6.5])
    n, m, gamma = 4, 5, 1.3
    push_tail = repulsive_weight(degrees[:, None], degrees[None, :], n, m, gamma, "push_tail")
    stock = repulsive_weight(degrees[:, None], degrees[None, :], n, m, gamma, "stock")
    assert torch.allclose(push_tail, gamma * m * (degrees[:, None] + degrees[None, :]) / (2 * n))
    assert torch.allclose(stock, push_tail / 2)
    rate = negative_sampling_rate(degrees, n, m, gamma, max_weight=0.8)
    assert torch.allclose(rate, gamma * m * degrees / (n * 0.8))


def test_repulsive_weight_sum_matches_balance_identity():
    graph, _ = _random_graph(n=15)
    degrees = graph.degrees()
    weights = repulsive_weight(degrees[:, None], degrees[None, :], 15, 5, 1.0)
    off_diagonal = ~torch.eye(15, dtype=torch.bool)
    assert float(weights[off_diagonal].sum()) == pytest.approx(5 * 14 / 15 * float(degrees.sum()), rel=1e-12)


def test_weights_reject_bad_arguments():
    degrees = torch.ones(3)
    with pytest.raises(ValueError, match="variant"):
        repulsive_weight(degrees, degrees, 3, variant="both")
    with pytest.raises(ValueError, match="n_points"):
        repulsive_weight(degrees, degrees, 1)
    with pytest.raises(ValueError, match="negative_sample_rate"):
        negative_sampling_rate(degrees, 3, 0)


def test_effective_target_minimises_pair_loss():
    mu, w = torch.tensor(0.3), torch.tensor(0.05)
    grid = torch.linspace(1e-4, 1 - 1e-4, 100_001)
    losses = -mu * torch.log(grid) - w * torch.log(1 - grid)
    assert float(grid[torch.argmin(losses)]) == pytest.approx(float(effective_target(mu, w)), abs=2e-5)
    assert float(effective_target(torch.tensor(0.0), w)) == 0.0
    with pytest.raises(ValueError, match="positive"):
        effective_target(mu, torch.tensor(0.0))


# === Losses and the expected update === #


def _brute_force_losses(embedding, dense, degrees, n, m=5, gamma=1.0):
    published = effective = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            distance = float((embedding[i] - embedding[j]).pow(2).sum())
            nu = 1 / (1 + A * distance**B)
            mu = float(dense[i, j])
            weight = gamma * m * float(degrees[i] + degrees[j]) / (2 * n)
            published -= mu * math.log(nu) + (1 - mu) * math.log(1 - nu)
            effective -= mu * math.log(nu) + weight * math.log(1 - nu)
    return published, effective


def test_losses_match_brute_force():
    graph, dense = _random_graph()
    embedding = _random_embedding()
    published, effective = _brute_force_losses(embedding, dense, graph.degrees(), 12)
    assert float(published_loss(embedding, graph, A, B)) == pytest.approx(published, rel=1e-12)
    assert float(effective_loss(embedding, graph, A, B)) == pytest.approx(effective, rel=1e-12)
    half = effective_loss_terms(embedding, graph, A, B, variant="stock")
    full = effective_loss_terms(embedding, graph, A, B, variant="push_tail")
    assert float(half[0]) == pytest.approx(float(full[0]), rel=1e-14)
    assert float(half[1]) == pytest.approx(float(full[1]) / 2, rel=1e-12)
    attractive, repulsive = published_loss_terms(embedding, graph, A, B)
    assert float(attractive) == pytest.approx(float(full[0]), rel=1e-14)
    assert float(attractive + repulsive) == pytest.approx(published, rel=1e-12)


def test_losses_do_not_depend_on_block_size():
    graph, _ = _random_graph()
    embedding = _random_embedding()
    for loss in (published_loss, effective_loss):
        assert float(loss(embedding, graph, A, B, block_size=5)) == pytest.approx(
            float(loss(embedding, graph, A, B)), rel=1e-13)


def _brute_force_update(embedding, dense, n, variant, m=5, gamma=1.0, epsilon=0.0):
    max_weight = float(dense.max())
    degrees = dense.sum(1)
    rates = gamma * m * degrees / (n * max_weight)
    update = torch.zeros_like(embedding)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            gap = embedding[i] - embedding[j]
            distance = gap.pow(2).sum()
            pull = -2 * A * B * distance ** (B - 1) / (1 + A * distance**B)
            push = 2 * B / ((epsilon + distance) * (1 + A * distance**B))
            rate = rates[i] + (rates[j] if variant == "push_tail" else 0)
            update[i] += (2 * dense[i, j] / max_weight * pull + rate * push) * gap
    return update


@pytest.mark.parametrize("variant", ["stock", "push_tail"])
def test_expected_update_matches_brute_force(variant):
    graph, dense = _random_graph()
    embedding = _random_embedding()
    got = expected_update(embedding, graph, A, B, variant=variant, epsilon=1e-3, block_size=5)
    assert torch.allclose(got, _brute_force_update(embedding, dense, 12, variant, epsilon=1e-3), rtol=1e-11)


def test_push_tail_update_is_negative_gradient():
    graph, _ = _random_graph()
    embedding = _random_embedding().requires_grad_(True)
    (gradient,) = torch.autograd.grad(effective_loss(embedding, graph, A, B, 5, 1.3), embedding)
    update = expected_update(embedding.detach(), graph, A, B, 5, 1.3, variant="push_tail")
    assert torch.allclose(update, -gradient / graph.max_weight, rtol=1e-10, atol=1e-12)


def test_embedding_shape_is_checked():
    graph, _ = _random_graph()
    with pytest.raises(ValueError, match="shape"):
        published_loss(torch.zeros(5, 2), graph, A, B)


# === Global rescaling === #


def test_best_global_scale_finds_known_minimum():
    embedding = _random_embedding()
    norm = float(embedding.norm())

    def loss(Y):
        return (Y.norm() / norm - 2.5) ** 2

    assert best_global_scale(loss, embedding) == pytest.approx(2.5, rel=1e-3)
    with pytest.raises(ValueError, match="bound"):
        best_global_scale(loss, embedding, bounds=(0.5, 2.0))
    with pytest.raises(ValueError, match="bounds"):
        best_global_scale(loss, embedding, bounds=(2.0, 3.0))


def test_loss_scale_derivative_matches_finite_difference():
    graph, _ = _random_graph()
    embedding = _random_embedding()

    def loss(Y):
        return effective_loss(Y, graph, A, B)

    step = 1e-6
    finite = (float(loss((1 + step) * embedding)) - float(loss((1 - step) * embedding))) / (2 * step)
    assert loss_scale_derivative(loss, embedding) == pytest.approx(finite, rel=1e-6)


# === Sampler === #


def _umap_learn_schedule_counts(periods, n_epochs, m):
    """umap-learn's loop, one edge at a time, in plain Python: firings and negatives per edge."""
    firings, negatives = [], []
    for period in periods:
        next_sample, negative_period = period, period / m
        next_negative = negative_period
        fired = drawn = 0
        for epoch in range(n_epochs):
            if next_sample <= epoch:
                next_sample += period
                count = int((epoch - next_negative) / negative_period)
                next_negative += count * negative_period
                fired, drawn = fired + 1, drawn + count
        firings.append(fired)
        negatives.append(drawn)
    return firings, negatives


def test_edge_schedule_matches_umap_learn_loop():
    weights = torch.tensor([1.0, 0.5, 0.37, 0.11, 0.01])
    graph = FuzzyGraph(torch.arange(5), torch.arange(1, 6), weights, 6)
    schedule = EdgeSchedule.from_graph(graph, 5)
    firings, negatives = torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)
    for epoch in range(300):
        fired, counts = schedule.advance(epoch)
        firings[fired] += 1
        negatives[fired] += counts
    expected_firings, expected_negatives = _umap_learn_schedule_counts((1.0 / weights).tolist(), 300, 5)
    assert firings.tolist() == expected_firings
    assert negatives.tolist() == expected_negatives


def test_sampled_update_clips_and_moves_both_ends():
    graph = FuzzyGraph(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.ones(2), 2)
    embedding = torch.tensor([[0.0, 0.0], [0.05, 0.0]])
    schedule = EdgeSchedule.from_graph(graph, 1e-9)  # no negatives
    update, counts = sampled_epoch_update(embedding, graph, schedule, 1, A, B)
    assert counts.positives == 2
    assert counts.negatives == 0
    pull = float((attraction_coefficient(torch.tensor(0.0025), A, B) * -0.05).clamp(-4, 4))
    assert torch.allclose(update[0], torch.tensor([2 * pull, 0.0]))
    assert torch.allclose(update[1], -update[0])


@pytest.mark.parametrize("variant", ["stock", "push_tail"])
def test_sampled_negatives_move_tail_only_in_push_tail(variant):
    # Two points and one directed edge: every negative is the head itself (no effect) or point 1.
    graph = FuzzyGraph(torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]), 2)
    embedding = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    schedule = EdgeSchedule.from_graph(graph, 5)
    generator = torch.Generator().manual_seed(0)
    total_update, pushes = torch.zeros(2, 2), 0
    for epoch in range(1, 41):
        update, counts = sampled_epoch_update(embedding, graph, schedule, epoch, A, B, variant=variant,
                                              generator=generator)
        total_update += update
        pushes += counts.negatives - counts.self_negatives
    assert pushes > 0
    pull = 40 * float(attraction_coefficient(torch.tensor(9.0), A, B) * -3.0)
    if variant == "stock":
        assert float(total_update[1, 0]) == pytest.approx(-pull)  # the tail only feels attraction
        assert float(total_update.sum(0)[0]) < 0  # repulsion moves the head alone
    else:
        assert torch.allclose(total_update.sum(0), torch.zeros(2), atol=1e-12)  # equal and opposite


def test_mean_epoch_update_estimates_expected_update():
    graph, _ = _random_graph(n=10, density=0.5, max_weight=1.0)
    # A grid with spacing 0.6 keeps every update below the clip, which the closed form ignores.
    embedding = 0.6 * torch.cartesian_prod(torch.arange(5.0), torch.arange(2.0))
    for variant in ("stock", "push_tail"):
        mean, stderr, counts = mean_epoch_update(embedding, graph, A, B, 2000, variant=variant, batches=20,
                                                 generator=torch.Generator().manual_seed(3))
        field = expected_update(embedding, graph, A, B, variant=variant, epsilon=1e-3)
        statistic = float((mean - field).pow(2).sum() / stderr.pow(2).sum())
        assert statistic < 2.0
        assert counts.negatives / counts.positives == pytest.approx(5, abs=0.05)


def test_count_samples_matches_sampler_counts():
    graph, _ = _random_graph(n=10, density=0.5, max_weight=1.0)
    embedding = _random_embedding(n=10)
    schedule = EdgeSchedule.from_graph(graph, 5)
    generator = torch.Generator().manual_seed(4)
    totals = [0, 0, 0]
    for epoch in range(60):
        _, counts = sampled_epoch_update(embedding, graph, schedule, epoch, A, B, generator=generator)
        totals = [totals[0] + counts.positives, totals[1] + counts.negatives,
                  totals[2] + counts.self_negatives]
    counted = count_samples(graph, 60, 5, generator=torch.Generator().manual_seed(4))
    assert (counted.positives, counted.negatives, counted.self_negatives) == tuple(totals)
    with pytest.raises(ValueError, match="n_epochs"):
        count_samples(graph, 0)


def test_optimize_layout_reproducible_and_descends():
    points = sample_ring(60, generator=torch.Generator().manual_seed(0))
    distances = torch.cdist(points, points).pow(2)
    nearest = distances.argsort(1)[:, 1:6]
    dense = torch.zeros(60, 60)
    dense[torch.arange(60)[:, None], nearest] = 1.0
    graph = FuzzyGraph.from_scipy(scipy.sparse.csr_matrix(torch.maximum(dense, dense.T).numpy()))
    start = 10 * torch.rand(60, 2, generator=torch.Generator().manual_seed(1))
    runs = [optimize_layout(start, graph, A, B, n_epochs=100, generator=torch.Generator().manual_seed(2))
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert float(effective_loss(runs[0], graph, A, B, variant="stock")) < float(
        effective_loss(start, graph, A, B, variant="stock"))


def test_optimize_layout_rejects_bad_input():
    graph, _ = _random_graph()
    with pytest.raises(ValueError, match="shape"):
        optimize_layout(torch.zeros(3, 2), graph, A, B)
    with pytest.raises(ValueError, match="positive"):
        optimize_layout(torch.zeros(12, 2), graph, A, B, n_epochs=0)


def test_sample_ring_lies_in_annulus():
    points = sample_ring(500, radius=4.0, noise_radius=0.5, generator=torch.Generator().manual_seed(0))
    radii = points.norm(dim=1)
    assert points.shape == (500, 2)
    assert float(radii.min()) >= 3.5
    assert float(radii.max()) <= 4.5
    with pytest.raises(ValueError, match="n_points"):
        sample_ring(0)


# === umap-learn wrappers === #


def test_umap_learn_graph_is_symmetric_with_log2k_degrees():
    from negsamp.umap_loss.reference import umap_learn_graph

    points = sample_ring(200, generator=torch.Generator().manual_seed(0)).numpy()
    graph = FuzzyGraph.from_scipy(umap_learn_graph(points, 15))
    assert float(graph.degrees().min()) >= math.log2(15) - 1e-4
    assert graph.max_weight == pytest.approx(1.0)


def test_umap_learn_epoch_matches_stock_expected_update():
    from negsamp.umap_loss.reference import umap_learn_graph, umap_learn_mean_epoch_update

    points = sample_ring(40, generator=torch.Generator().manual_seed(0)).numpy()
    graph_scipy = umap_learn_graph(points, 8)
    grid = 0.6 * torch.cartesian_prod(torch.arange(8.0), torch.arange(5.0))
    frozen = (grid - grid.mean(0)).float().double()
    mean, stderr = umap_learn_mean_epoch_update(frozen.numpy(), graph_scipy, A, B, 2000, batches=20)
    graph = FuzzyGraph.from_scipy(graph_scipy).pruned(500)
    for variant, bound in (("stock", lambda t: t < 2.0), ("push_tail", lambda t: t > 5.0)):
        field = expected_update(frozen, graph, A, B, variant=variant, epsilon=1e-3).numpy()
        assert bound(float(((mean - field) ** 2).sum() / (stderr**2).sum())), variant


# === Per-point metrics === #


def test_per_point_metrics_average_to_the_global_ones():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(150, 8, generator=generator)
    embedding = features[:, :2] + 0.5 * torch.randn(150, 2, generator=generator)
    labels = torch.randint(0, 3, (150,), generator=generator)
    assert float(metrics.knn_correct(embedding, labels, 7).double().mean()) == pytest.approx(
        metrics.knn_accuracy(embedding, labels, 7))
    assert float(metrics.trustworthiness_per_point(features, embedding, 10).mean()) == pytest.approx(
        metrics.trustworthiness(features.numpy(), embedding.numpy(), 10), abs=1e-12)
