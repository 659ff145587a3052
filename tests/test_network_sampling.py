"""The graph-sampling library against SymPy, closed forms and brute force, plus mutation tests of the chapter."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import sympy as sp
import torch
from scipy.stats import binom, spearmanr

from mutation import run_with_patched_library
from negsamp import graph_sampling as gs
from negsamp import metrics

DEFAULT_DTYPE = torch.float64  # conftest.py sets this per test and restores it afterwards


def _karate():
    return gs.adjacency_matrix(nx.karate_club_graph())


def _sympy_pair_objective():
    s = sp.Symbol("s", real=True)
    p, q, k = sp.symbols("p q k", positive=True)
    objective = p * sp.log(1 / (1 + sp.exp(-s))) + k * q * sp.log(1 / (1 + sp.exp(s)))
    return s, p, q, k, objective


# === Proximity === #


def test_adjacency_matrix_of_karate_club():
    adjacency = _karate()
    assert adjacency.shape == (34, 34)
    assert torch.equal(adjacency, adjacency.T)
    assert int(adjacency.sum()) == 2 * 78
    assert float(adjacency.diagonal().abs().sum()) == 0.0


def test_adjacency_matrix_rejects_isolated_node():
    graph = nx.path_graph(4)
    graph.add_node(99)
    with pytest.raises(ValueError, match="isolated"):
        gs.adjacency_matrix(graph)


def test_adjacency_matrix_rejects_directed_graph():
    with pytest.raises(ValueError, match="undirected"):
        gs.adjacency_matrix(nx.DiGraph([(0, 1), (1, 2), (2, 0)]))


def test_window_proximity_matches_matrix_powers():
    adjacency = _karate()
    transition = (adjacency / adjacency.sum(1, keepdim=True)).numpy()
    window = 3
    expected = sum(np.linalg.matrix_power(transition, r) for r in range(1, window + 1)) / window
    np.fill_diagonal(expected, 0)
    expected /= expected.sum(1, keepdims=True)
    got = gs.window_proximity(adjacency, window).numpy()
    assert np.max(np.abs(got - expected)) < 1e-14


def test_window_one_is_adjacency_proximity():
    adjacency = _karate()
    assert torch.allclose(gs.window_proximity(adjacency, 1), gs.adjacency_proximity(adjacency), atol=1e-15)


def test_window_support_is_hop_ball():
    path = gs.adjacency_matrix(nx.path_graph(6))
    relevant = gs.relevant_mask(gs.window_proximity(path, 2))
    assert relevant[0].nonzero().flatten().tolist() == [1, 2]
    assert relevant[3].nonzero().flatten().tolist() == [1, 2, 4, 5]


def test_pagerank_proximity_matches_truncated_series():
    adjacency = _karate()
    restart = 0.2
    transition = (adjacency / adjacency.sum(1, keepdim=True)).numpy()
    series = sum(restart * (1 - restart) ** r * np.linalg.matrix_power(transition, r) for r in range(400))
    np.fill_diagonal(series, 0)
    series /= series.sum(1, keepdims=True)
    got = gs.personalized_pagerank_proximity(adjacency, restart).numpy()
    assert np.max(np.abs(got - series)) < 1e-12


@pytest.mark.parametrize("restart", [0.0, 1.0, -0.1])
def test_pagerank_rejects_bad_restart(restart):
    with pytest.raises(ValueError, match="restart"):
        gs.personalized_pagerank_proximity(_karate(), restart)


def test_top_k_mask_breaks_ties_by_index():
    proximity = torch.tensor([[0.0, 0.3, 0.3, 0.3, 0.1],
                              [0.5, 0.0, 0.5, 0.0, 0.0],
                              [0.25, 0.25, 0.0, 0.25, 0.25],
                              [0.4, 0.2, 0.2, 0.0, 0.2],
                              [0.1, 0.2, 0.3, 0.4, 0.0]])
    mask = gs.top_k_mask(proximity, 2)
    assert mask[0].nonzero().flatten().tolist() == [1, 2]
    assert mask[1].nonzero().flatten().tolist() == [0, 2]
    assert mask[2].nonzero().flatten().tolist() == [0, 1]
    assert mask[4].nonzero().flatten().tolist() == [2, 3]


def test_top_k_mask_keeps_only_relevant_nodes():
    proximity = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    mask = gs.top_k_mask(proximity, 2)
    assert mask[0].nonzero().flatten().tolist() == [1]
    assert mask.diagonal().sum() == 0


# === Samplers and the optimal score === #


@pytest.mark.parametrize("name", gs.STRATEGIES)
def test_strategy_distributions_are_row_stochastic(name):
    proximity = gs.window_proximity(_karate(), 2)
    positive, negative = gs.strategy_distributions(name, proximity, top_k=5)
    for distribution in (positive, negative):
        assert torch.allclose(distribution.sum(1), torch.ones(34), atol=1e-12)
        assert float(distribution.diagonal().abs().sum()) == 0.0
        assert torch.all(distribution >= 0)


def test_close_negatives_match_their_definition():
    proximity = gs.window_proximity(_karate(), 2)
    share = 0.6
    _, negative = gs.strategy_distributions("close_negatives", proximity, close_share=share)
    relevant = gs.relevant_mask(proximity)
    size = relevant.sum(1, keepdim=True).double()
    expected = (1 - share) / 33 + share * relevant / size
    expected.fill_diagonal_(0)
    assert torch.allclose(negative, expected, atol=1e-15)


def test_top_k_strategy_matches_its_definition():
    proximity = gs.window_proximity(_karate(), 2)
    top = gs.top_k_mask(proximity, 5)
    positive, negative = gs.strategy_distributions("top_k", proximity, top_k=5, hard_share=0.25)
    assert torch.all(positive[~top] == 0)
    ratio = positive[top] / proximity[top]
    rows = top.nonzero()[:, 0]
    for row in range(34):
        values = ratio[rows == row]
        assert torch.allclose(values, values[0].expand_as(values), rtol=1e-12)
    expected_inside = 0.75 / 33 + 0.25 / top.sum(1, keepdim=True).double()
    assert torch.allclose(negative[top], expected_inside.expand_as(negative)[top], atol=1e-15)


def test_distant_positives_flatten_proximity():
    proximity = gs.window_proximity(_karate(), 2)
    positive = gs.power_distribution(proximity, 0.5)
    relevant = gs.relevant_mask(proximity)
    expected = torch.where(relevant, proximity.sqrt(), torch.zeros_like(proximity))
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(positive, expected, atol=1e-15)


def test_unknown_strategy_rejected():
    with pytest.raises(ValueError, match="unknown strategy"):
        gs.strategy_distributions("hard", gs.window_proximity(_karate(), 2))


def test_optimal_scores_match_sympy_maximiser():
    s, p, q, k, objective = _sympy_pair_objective()
    (solution,) = sp.solve(sp.Eq(sp.diff(objective, s), 0), s)
    for p_value, q_value, k_value in [(0.3, 0.1, 5), (0.02, 0.5, 1), (0.9, 0.001, 20)]:
        expected = float(solution.subs({p: p_value, q: q_value, k: k_value}))
        got = gs.optimal_scores(torch.tensor(p_value), torch.tensor(q_value), k_value)
        assert float(got) == pytest.approx(expected, abs=1e-12)


def test_optimal_scores_at_support_edges():
    scores = gs.optimal_scores(torch.tensor([0.0, 0.2, 0.0]), torch.tensor([0.1, 0.0, 0.0]), 5)
    assert scores[0] == -math.inf
    assert scores[1] == math.inf
    assert math.isnan(float(scores[2]))


@pytest.mark.parametrize("bad", [0, -2, float("inf"), float("nan")])
def test_optimal_scores_reject_bad_k(bad):
    with pytest.raises(ValueError, match="k must be"):
        gs.optimal_scores(torch.tensor(0.1), torch.tensor(0.1), bad)


def test_variance_matches_sympy_delta_method():
    p, q, k, T = sp.symbols("p q k T", positive=True)
    plus, minus = sp.symbols("c_plus c_minus", positive=True)
    estimate = sp.log(plus / minus)
    means = {plus: T * p, minus: k * T * q}
    variance = (sp.diff(estimate, plus).subs(means) ** 2 * T * p * (1 - p)
                + sp.diff(estimate, minus).subs(means) ** 2 * k * T * q * (1 - q))
    for values in [(0.2, 0.03, 5, 100), (0.5, 0.5, 1, 7), (0.01, 0.2, 10, 5000)]:
        expected = float(variance.subs(dict(zip((p, q, k, T), values))))
        got = gs.score_error_variance(torch.tensor(values[0]), torch.tensor(values[1]), values[3], values[2])
        assert float(got) == pytest.approx(expected, rel=1e-12)


def test_variance_matches_exact_binomial():
    """For large expected counts the delta method agrees with the exact variance of log(c+/c-)."""
    p_value, q_value, k_value, draws = 0.1, 0.04, 5, 20_000

    def exact_log_variance(trials, probability):
        support = np.arange(1, trials + 1)
        weights = binom.pmf(support, trials, probability)
        weights /= weights.sum()
        logs = np.log(support)
        return float(np.sum(weights * logs**2) - np.sum(weights * logs) ** 2)

    exact = exact_log_variance(draws, p_value) + exact_log_variance(k_value * draws, q_value)
    formula = float(gs.score_error_variance(torch.tensor(p_value), torch.tensor(q_value), draws, k_value))
    smallest_mean = min(draws * p_value, k_value * draws * q_value)
    assert abs(exact / formula - 1) < 3 / smallest_mean


@pytest.mark.parametrize("draws, probability", [(5000, 0.02), (2000, 0.1), (25000, 0.004)])
def test_log_count_variance_second_order_term(draws, probability):
    """The exact variance of log(c) exceeds the delta method by about 3 / (2 mu), mu = E[c]."""
    support = np.arange(1, draws + 1)
    weights = binom.pmf(support, draws, probability)
    weights /= weights.sum()
    logs = np.log(support)
    exact = np.sum(weights * logs**2) - np.sum(weights * logs) ** 2
    mean = draws * probability
    delta_method = (1 - probability) / mean
    assert (exact / delta_method - 1) * mean == pytest.approx(1.5, abs=0.15)


def test_sample_pair_counts_totals_and_means():
    distribution = torch.tensor([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.1, 0.9, 0.0]])
    generator = torch.Generator().manual_seed(0)
    counts = gs.sample_pair_counts(distribution.repeat(2000, 1), 30, generator)
    assert torch.all(counts.sum(1) == 30)
    assert torch.all(counts[:, 0][::3] == 0)
    mean = counts.view(2000, 3, 3).mean(0) / 30
    stderr = torch.sqrt(distribution * (1 - distribution) / 30 / 2000)
    assert float(((mean - distribution).abs() / stderr.clamp(min=1e-12)).max()) < 5


def test_sample_pair_counts_in_chunks(monkeypatch):
    from negsamp.graph_sampling import sampling

    monkeypatch.setattr(sampling, "_DRAWS_PER_CHUNK", 7)
    distribution = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    counts = gs.sample_pair_counts(distribution, 23, torch.Generator().manual_seed(1))
    assert counts.sum(1).tolist() == [23.0, 23.0]
    assert counts[1].tolist() == [23.0, 0.0, 0.0]


def test_uncovered_share_formula_and_measurement():
    positive = torch.tensor([[0.0, 0.9, 0.1], [0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])
    members = positive > 0
    share, stderr = gs.expected_uncovered_share(positive, members, 3)
    missed = (1 - positive[members]) ** 3
    assert share == pytest.approx(float(missed.mean()), abs=1e-15)
    assert stderr == pytest.approx(float(torch.sqrt((missed * (1 - missed)).sum()) / 6), abs=1e-15)
    counts = torch.tensor([[0.0, 3.0, 0.0], [1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    assert gs.uncovered_share(counts, members) == pytest.approx(2 / 6)


def test_empirical_scores_are_log_count_ratio():
    assert float(gs.empirical_scores(torch.tensor(6.0), torch.tensor(3.0))) == pytest.approx(math.log(2))


# === Trainer === #


def test_sgns_pair_loss_is_minus_sympy_objective():
    s, p, q, k, objective = _sympy_pair_objective()
    value = sp.lambdify((s, p, q, k), objective, "math")
    for score, p_value, q_value, k_value in [(0.3, 0.2, 0.1, 5), (-4.0, 0.9, 0.05, 2), (6.0, 0.01, 0.3, 1)]:
        got = gs.sgns_pair_loss(torch.tensor(score), torch.tensor(p_value), torch.tensor(k_value * q_value))
        assert float(got) == pytest.approx(-value(score, p_value, q_value, k_value), abs=1e-12)


def test_sgns_pair_loss_ignores_untrained_pairs():
    loss = gs.sgns_pair_loss(torch.tensor([50.0, -50.0]), torch.zeros(2), torch.zeros(2))
    assert loss.tolist() == [0.0, 0.0]


def test_full_rank_training_reaches_optimal_scores():
    adjacency = gs.adjacency_matrix(nx.cycle_graph(6))
    proximity = gs.personalized_pagerank_proximity(adjacency, 0.3)
    uniform = gs.uniform_distribution(6)
    model = gs.train_sgns(proximity, 3 * uniform, 6, steps=3000, lr=0.05)
    target = gs.optimal_scores(proximity, uniform, 3)
    off = ~torch.eye(6, dtype=torch.bool)
    assert float((model.scores() - target)[off].abs().max()) < 0.02


def test_train_sgns_rejects_bad_inputs():
    weights = torch.ones(4, 4)
    with pytest.raises(ValueError, match="dim"):
        gs.train_sgns(weights, weights, 5)
    with pytest.raises(ValueError, match="non-negative"):
        gs.train_sgns(weights, -weights, 2)
    with pytest.raises(ValueError, match="differs"):
        gs.train_sgns(weights, torch.ones(3, 3), 2)


def test_node_embedding_symmetric_scores():
    model = gs.NodeEmbedding(torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [5.0]]), 0.0, 0.0)
    assert model.scores().tolist() == [[3.0, 5.0], [6.0, 10.0]]
    assert model.scores(symmetric=True).tolist() == [[3.0, 5.5], [5.5, 10.0]]


# === Properties and downstream metrics === #


def _pair_win(first, second):
    if first > second:
        return 1.0
    if first == second:
        return 0.5
    return 0.0


def _brute_force_properties(scores, proximity, members, rtol=1e-9):
    n = scores.shape[0]
    discrimination, monotonicity = [], []
    for u in range(n):
        inside = [v for v in range(n) if v != u and members[u, v]]
        outside = [v for v in range(n) if v != u and not members[u, v]]
        wins = [_pair_win(scores[u, a], scores[u, b]) for a in inside for b in outside]
        discrimination.append(sum(wins) / len(wins) if wins else math.nan)
        ordered = [(a, b) for a, b in itertools.permutations(inside, 2)
                   if proximity[u, a] > proximity[u, b] * (1 + rtol)]
        signs = [float(np.sign(scores[u, a] - scores[u, b])) for a, b in ordered]
        monotonicity.append(sum(signs) / len(signs) if signs else math.nan)
    return np.array(discrimination), np.array(monotonicity)


def test_properties_match_brute_force():
    generator = torch.Generator().manual_seed(3)
    n = 11
    scores = torch.randint(0, 4, (n, n), generator=generator).double()
    scores[2, 5] = -math.inf
    scores[4, 1] = -math.inf
    proximity = torch.randint(0, 3, (n, n), generator=generator).double()
    proximity[0, 1] = proximity[0, 2] * (1 + 1e-12)  # a rounding-level difference counts as a tie
    members = torch.rand(n, n, generator=generator) < 0.5
    members[6] = False
    expected_disc, expected_mono = _brute_force_properties(scores.numpy(), proximity.numpy(), members.numpy())
    got_disc = gs.discrimination_per_anchor(scores, members).numpy()
    got_mono = gs.monotonicity_per_anchor(scores, proximity, members).numpy()
    np.testing.assert_allclose(got_disc, expected_disc, atol=1e-12)
    np.testing.assert_allclose(got_mono, expected_mono, atol=1e-12)
    assert math.isnan(got_disc[6])
    assert math.isnan(got_mono[6])


def test_discrimination_rejects_nan_off_diagonal():
    scores = torch.zeros(3, 3)
    scores[0, 0] = math.nan  # the diagonal is ignored
    gs.discrimination_per_anchor(scores, torch.eye(3, dtype=torch.bool).roll(1, 1))
    scores[0, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        gs.discrimination_per_anchor(scores, torch.eye(3, dtype=torch.bool).roll(1, 1))


def test_rank_correlation_matches_scipy():
    generator = torch.Generator().manual_seed(5)
    first = torch.randint(0, 5, (7, 7), generator=generator).double()
    second = torch.randn(7, 7, generator=generator)
    got = gs.rank_correlation_per_anchor(first, second)
    for u in range(7):
        keep = [v for v in range(7) if v != u]
        expected = spearmanr(first[u, keep].numpy(), second[u, keep].numpy())[0]
        assert float(got[u]) == pytest.approx(expected, abs=1e-12)


def test_paired_effect_by_hand():
    first = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    second = np.zeros_like(first)
    effect, stderr = gs.paired_effect(first, second)
    assert effect == pytest.approx(1.5)
    per_graph = np.array([1.0, math.sqrt(3.0)]) / math.sqrt(3)
    assert stderr == pytest.approx(math.sqrt(np.sum(per_graph**2)) / 2)


def test_paired_effect_rejects_single_replicate():
    with pytest.raises(ValueError, match="replicates"):
        gs.paired_effect(np.ones((2, 1)), np.ones((2, 1)))


def test_split_edges_keeps_graph_connected():
    adjacency = _karate()
    train, held_out = gs.split_edges(adjacency, 0.2, seed=4)
    assert held_out.shape == (round(0.2 * 78), 2)
    assert torch.all(held_out[:, 0] < held_out[:, 1])
    assert torch.all(adjacency[held_out[:, 0], held_out[:, 1]] == 1)
    assert torch.all(train[held_out[:, 0], held_out[:, 1]] == 0)
    assert torch.equal(train, train.T)
    assert int(train.sum()) // 2 == 78 - held_out.shape[0]
    assert nx.is_connected(nx.from_numpy_array(train.numpy()))


def test_sample_non_edges_are_not_edges():
    adjacency = _karate()
    pairs = gs.sample_non_edges(adjacency, 50, seed=2)
    assert torch.all(adjacency[pairs[:, 0], pairs[:, 1]] == 0)
    assert torch.all(pairs[:, 0] < pairs[:, 1])
    assert len({tuple(pair) for pair in pairs.tolist()}) == 50


def test_link_auc_perfect_and_reversed():
    adjacency = _karate()
    edges = torch.nonzero(torch.triu(adjacency))
    non_edges = gs.sample_non_edges(adjacency, 40, seed=0)
    assert gs.link_prediction_auc(adjacency, edges, non_edges) == 1.0
    assert gs.link_prediction_auc(-adjacency, edges, non_edges) == 0.0


def test_recommendation_metrics_on_hand_example():
    train = gs.adjacency_matrix(nx.path_graph(4))
    held_out = torch.tensor([[0, 2]])
    scores = torch.tensor([[0.0, 9.0, 1.0, 4.0],
                           [0.0, 0.0, 0.0, 0.0],
                           [1.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]])
    result = gs.recommendation_metrics(scores, train, held_out, k=1)
    # Node 0 ranks nodes 2 and 3 (1 is a training neighbour): 3 wins, so no hit at k = 1.
    # Node 2 ranks node 0 only (1 and 3 are training neighbours): a hit.
    assert result["anchors"] == 2
    assert result["hit"] == pytest.approx(0.5)
    assert result["ndcg"] == pytest.approx(0.5)


# === Walks and gensim === #


def test_random_walks_follow_edges():
    adjacency = _karate()
    walks = gs.random_walks(adjacency, walks_per_node=3, walk_length=12, seed=0)
    assert walks.shape == (34 * 3, 12)
    assert walks[:, 0].tolist() == list(range(34)) * 3
    steps = torch.stack([walks[:, :-1].reshape(-1), walks[:, 1:].reshape(-1)])
    assert torch.all(adjacency[steps[0], steps[1]] == 1)


def test_window_pair_counts_match_loop():
    walks = torch.tensor([[0, 1, 2, 1, 3], [3, 1, 0, 1, 2]])
    expected = np.zeros((4, 4))
    for walk in walks.tolist():
        for i, j in itertools.permutations(range(len(walk)), 2):
            if abs(i - j) <= 2 and walk[i] != walk[j]:
                expected[walk[i], walk[j]] += 1
    assert np.array_equal(gs.window_pair_counts(walks, 2, 4).numpy(), expected)


def test_walk_negative_weights_follow_smoothed_unigram():
    walks = torch.tensor([[0, 1, 2, 1], [2, 1, 0, 1]])
    counts = gs.window_pair_counts(walks, 1, 3)
    weights = gs.walk_negative_weights(counts, walks, k=4)
    frequency = torch.tensor([2.0, 4.0, 2.0]) ** 0.75
    noise = frequency / frequency.sum()
    expected = 4 * counts.sum(1, keepdim=True) * noise
    expected.fill_diagonal_(0)
    assert torch.allclose(weights, expected, atol=1e-12)


def test_gensim_deepwalk_is_reproducible():
    walks = gs.random_walks(_karate(), walks_per_node=2, walk_length=10, seed=1)
    first = gs.gensim_deepwalk(walks, dim=4, window=2, k=3, epochs=1, seed=7)
    second = gs.gensim_deepwalk(walks, dim=4, window=2, k=3, epochs=1, seed=7)
    assert first.source.shape == (34, 4)
    assert first.context.shape == (34, 4)
    assert torch.equal(first.source, second.source)
    assert torch.equal(first.context, second.context)


# === Synthetic graphs and the AUC standard error === #


def test_synthetic_graphs_connected_and_seeded():
    block = gs.planted_partition_graph(3, 20, 0.3, 0.02, seed=1)
    assert nx.is_connected(block)
    assert sorted(block.nodes) == list(range(block.number_of_nodes()))
    assert nx.utils.graphs_equal(block, gs.planted_partition_graph(3, 20, 0.3, 0.02, seed=1))
    ring = gs.small_world_graph(30, 4, 0.1, seed=2)
    assert nx.is_connected(ring)
    assert ring.number_of_edges() == 60


def test_planted_partition_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="p_out"):
        gs.planted_partition_graph(2, 10, 0.1, 0.2)


def test_auc_standard_error_matches_simulation():
    """Hanley and McNeil's formula is exact for exponential scores, so replicated AUCs must match it."""
    generator = torch.Generator().manual_seed(0)
    n_positive, n_negative, replicates = 60, 80, 3000
    rate = 3.0  # positives ~ Exp(1) and negatives ~ Exp(rate), so AUC = rate / (1 + rate)
    aucs = []
    for _ in range(replicates):
        positive = torch.empty(n_positive).exponential_(1.0, generator=generator)
        negative = torch.empty(n_negative).exponential_(rate, generator=generator)
        aucs.append(metrics.roc_auc(positive, negative))
    auc = rate / (1 + rate)
    predicted = metrics.auc_standard_error(auc, n_positive, n_negative)
    assert np.mean(aucs) == pytest.approx(auc, abs=4 * predicted / math.sqrt(replicates))
    assert np.std(aucs) == pytest.approx(predicted, rel=0.1)


# === Mutation tests: breaking a formula fails a named claim early in the chapter === #


@pytest.mark.chapters
def test_dropping_log_k_fails_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "network_sampling", "graph_sampling/sampling.py",
        "return torch.log(positive) - torch.log(negative) - math.log(k)",
        "return torch.log(positive) - torch.log(negative)",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["netsamp.optimum-matches-library"]


@pytest.mark.chapters
def test_swapped_close_negatives_fail_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "network_sampling", "graph_sampling/sampling.py",
        "close = set_uniform_distribution(relevant_mask(proximity), proximity.dtype)",
        "close = set_uniform_distribution(top_k_mask(proximity, top_k), proximity.dtype)",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["netsamp.strategy-scores-match-sympy"]


@pytest.mark.chapters
def test_wrong_variance_fails_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "network_sampling", "graph_sampling/sampling.py",
        "return (1 / positive - 1 + 1 / (k * negative) - 1 / k) / positives_per_anchor",
        "return (1 / positive + 1 / (k * negative)) / positives_per_anchor",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["netsamp.variance-matches-library"]
