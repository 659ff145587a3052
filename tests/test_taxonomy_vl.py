"""The taxonomy library against brute force, SymPy and SciPy, and the chapter against broken formulas."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import scipy.stats
import sympy as sp
import torch

from negsamp import at_least
from negsamp import taxonomy as tx
from negsamp.taxonomy import world as tw

from mutation import run_with_patched_library

SMALL = tx.Taxonomy(n_roots=2, mids_per_root=2, leaves_per_mid=3)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# === The taxonomy === #


def _graph_distance(taxonomy: tx.Taxonomy) -> np.ndarray:
    names = taxonomy.concept_names()
    graph = nx.Graph()
    for name in names:
        graph.add_edge(name, name.rsplit(".", 1)[0] if "." in name else "top")
    lengths = dict(nx.all_pairs_shortest_path_length(graph))
    return np.array([[lengths[a][b] for b in names] for a in names])


@pytest.mark.parametrize("shape", [(2, 2, 3), (4, 3, 4), (3, 2, 2)])
def test_tree_distance_matches_breadth_first_search(shape):
    taxonomy = tx.Taxonomy(*shape)
    assert np.array_equal(taxonomy.tree_distance().numpy(), _graph_distance(taxonomy))


def test_tree_similarity_is_inverse_of_one_plus_distance():
    similarity = SMALL.tree_similarity()
    assert similarity.dtype == torch.float64
    assert torch.allclose(similarity, 1 / (1 + torch.tensor(_graph_distance(SMALL), dtype=torch.float64)))


def test_leaf_pair_counts_match_sympy_formula():
    taxonomy = tx.Taxonomy(3, 2, 4)
    leaves = torch.tensor(taxonomy.level_offsets[0]) + torch.arange(taxonomy.n_leaves)
    distances = taxonomy.tree_distance()[leaves][:, leaves]
    upper = distances[torch.triu_indices(taxonomy.n_leaves, taxonomy.n_leaves, 1).unbind()]
    R, m, l = 3, 2, 4
    expected = {2: R * m * math.comb(l, 2), 4: R * math.comb(m, 2) * l**2, 6: math.comb(R, 2) * (m * l) ** 2}
    for distance, count in expected.items():
        assert int((upper == distance).sum()) == count


def test_ancestors_and_membership_agree():
    ancestors = SMALL.is_ancestor()
    membership = SMALL.descendant_leaves()
    chains = SMALL.leaf_ancestors()
    for leaf in range(SMALL.n_leaves):
        leaf_id, mid, root = chains[leaf].tolist()
        assert set(torch.nonzero(ancestors[leaf_id]).flatten().tolist()) == {mid, root}
        assert membership[leaf_id, leaf] == 1
        assert membership[mid, leaf] == 1
        assert membership[root, leaf] == 1
    assert membership.sum(dim=0).tolist() == [3.0] * SMALL.n_leaves


def test_taxonomy_rejects_single_child():
    with pytest.raises(ValueError, match="leaves_per_mid must be an integer >= 2"):
        tx.Taxonomy(2, 2, 1)


# === Sequences and test units === #


def test_hypernym_candidates_positive_and_negative():
    taxonomy = tx.Taxonomy()
    generator = _generator()
    leaves = torch.randint(0, taxonomy.n_leaves, (500,), generator=generator)
    hops = torch.randint(0, 3, (500,), generator=generator)
    chains = taxonomy.leaf_ancestors()
    positive = tx.hypernym_candidates(taxonomy, leaves, hops, torch.ones(500, dtype=torch.bool), generator)
    negative = tx.hypernym_candidates(taxonomy, leaves, hops, torch.zeros(500, dtype=torch.bool), generator)
    assert torch.equal(positive, chains[leaves, hops])
    assert not (negative == chains[leaves, hops]).any()
    depths = taxonomy.depths()
    assert torch.equal(depths[negative], depths[positive])


def test_negative_concepts_are_distinct_non_ancestors():
    taxonomy = tx.Taxonomy()
    negatives, valid = tx.negative_concepts(taxonomy, 5, _generator())
    chains = taxonomy.leaf_ancestors()
    assert valid.tolist() == [[True] * 5, [True] * 5, [True] * 3 + [False] * 2]
    for leaf, hop in itertools.product(range(taxonomy.n_leaves), range(3)):
        drawn = negatives[leaf, hop][valid[hop]].tolist()
        assert len(set(drawn)) == len(drawn)
        assert chains[leaf, hop].item() not in drawn
        assert all(taxonomy.depths()[concept] == 3 - hop for concept in drawn)


def test_question_units_layout():
    tokens, valid = tx.taxonomic_question_units(SMALL, 2, _generator())
    assert tokens.shape == (SMALL.n_leaves, 3, 3, tw.SEQUENCE_LENGTH)
    chains = SMALL.leaf_ancestors()
    assert torch.equal(tokens[:, :, 0, 3], tx.concept_token(chains))
    assert (tokens[:, :, 0, 4] == tw.YES).all()
    assert (tokens[:, :, 1:, 4] == tw.NO).all()
    assert (tokens[..., 1] == tx.concept_token(chains[:, :1, None])).all()
    assert valid[2].tolist() == [True, True, False]  # two roots leave one negative


def test_yes_no_prompt_orders():
    hyponym, hypernym = torch.tensor([20]), torch.tensor([3])
    first = tx.yes_no_prompts(hyponym, hypernym, torch.tensor([True]), "hypernym_first")
    swapped = tx.yes_no_prompts(hyponym, hypernym, torch.tensor([False]), "hyponym_first")
    token = len(tx.SPECIAL_TOKENS)
    assert first.tolist() == [[tw.ASK, 3 + token, tw.HAS, 20 + token, tw.YES]]
    assert swapped.tolist() == [[tw.ASK, 20 + token, tw.ISA, 3 + token, tw.NO]]
    with pytest.raises(ValueError, match="unknown prompt order"):
        tx.yes_no_prompts(hyponym, hypernym, torch.tensor([True]), "sideways")


def test_text_batch_asks_scene_questions_only_about_leaves():
    world = tx.make_world(tx.Taxonomy(), 8, _generator())
    batch = tx.text_batch(world, 400, _generator(1))
    questions = batch[batch[:, 0] == tw.SCENE]
    assert len(questions) == 160
    leaf_offset = len(tx.SPECIAL_TOKENS) + world.taxonomy.level_offsets[0]
    assert (questions[:, 3] >= leaf_offset).all()


def test_grounded_batch_images_follow_prototypes():
    world = tx.make_world(tx.Taxonomy(), 8, _generator(), image_noise=0.0)
    tokens, images = tx.grounded_batch(world, 50, _generator(2))
    assert tokens.shape == (50, 5)
    assert images.shape == (50, 8)
    prototype_distance = (images[:, None] - world.prototypes[None]).norm(dim=-1).min(dim=1).values
    assert prototype_distance.max() < 1e-6
    assert ((tokens == tw.IMAGE).sum(dim=1) == 1).all()


# === The model === #


def test_batched_models_are_independent():
    config = tx.TinyLMConfig(dim=8, heads=2, batch_size=4)
    params = tx.init_params(config, 30, 4, 3, _generator())
    tokens = torch.randint(10, 30, (3, 4, 5), generator=_generator(1))
    losses = tx.next_token_loss(params, tokens, config.heads)
    gradients = torch.autograd.grad(losses[1], list(params.values()), allow_unused=True)
    for name, gradient in zip(params, gradients):
        if gradient is not None:
            assert gradient[0].abs().max() == 0, name
            assert gradient[2].abs().max() == 0, name


def test_forward_is_causal():
    config = tx.TinyLMConfig(dim=8, heads=2, batch_size=4)
    params = tx.init_params(config, 30, 4, 1, _generator())
    tokens = torch.randint(10, 30, (1, 2, 5), generator=_generator(1))
    changed = tokens.clone()
    changed[..., 4] = (changed[..., 4] + 1 - 10) % 20 + 10
    logits, _ = tx.forward(params, tokens, config.heads)
    logits_changed, _ = tx.forward(params, changed, config.heads)
    assert torch.allclose(logits[..., :4, :], logits_changed[..., :4, :], atol=1e-6)


def test_image_token_uses_projection():
    config = tx.TinyLMConfig(dim=8, heads=2, batch_size=4)
    params = tx.init_params(config, 30, 4, 1, _generator())
    tokens = torch.tensor([[[tw.SCENE, tw.IMAGE, tw.THERE, 20, tw.YES]]])
    first, _ = tx.forward(params, tokens, config.heads, torch.zeros(1, 1, 4))
    second, _ = tx.forward(params, tokens, config.heads, torch.ones(1, 1, 4))
    assert torch.allclose(first[..., 0, :], second[..., 0, :])
    assert not torch.allclose(first[..., 1, :], second[..., 1, :])


def test_minimal_pair_rejects_wrong_world_count():
    config = tx.TinyLMConfig(dim=8, heads=2, batch_size=4)
    taxonomy = tx.Taxonomy()
    worlds = [tx.make_world(taxonomy, 4, _generator(seed)) for seed in range(2)]
    params = tx.init_params(config, tx.vocabulary_size(taxonomy), 4, 3, _generator())
    with pytest.raises(ValueError, match="one per pre-trained model"):
        tx.continue_minimal_pair(params, worlds, config, 1, 0, _generator())


def test_minimal_pair_arms_share_text_half():
    config = tx.TinyLMConfig(dim=8, heads=2, batch_size=4, warmup_steps=1)
    taxonomy = tx.Taxonomy()
    worlds = [tx.make_world(taxonomy, 4, _generator(seed)) for seed in range(2)]
    params = tx.init_params(config, tx.vocabulary_size(taxonomy), 4, 2, _generator())
    arms = tx.continue_minimal_pair(params, worlds, config, 2, 1, _generator(1))
    assert arms["embedding"].shape[0] == 4
    assert torch.equal(arms["projection"][:2], params["projection"].detach())
    assert not torch.equal(arms["projection"][2:], params["projection"].detach())


@pytest.mark.parametrize("step,expected", [(0, 0.01), (99, 0.1 + 0.45 * (1 + math.cos(math.pi * 0.099))), (1000, 0.1)])
def test_learning_rate_schedule_values(step, expected):
    assert tx.learning_rate_factor(step, 1000, 100, 0.1) == pytest.approx(expected, abs=1e-3)


def test_config_rejects_bad_heads():
    with pytest.raises(ValueError, match="positive divisor"):
        tx.TinyLMConfig(dim=10, heads=3)


# === Scoring === #


def test_strict_scoring_matches_loop():
    margins = torch.randn(3, 7, 2, 5, generator=_generator())
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    got = tx.strict_unit_correct(margins, valid)
    for model, leaf, hop in itertools.product(range(3), range(7), range(2)):
        row = margins[model, leaf, hop]
        expected = bool(row[0] > 0) and all(bool(row[k] < 0) for k in range(1, 5) if valid[hop, k])
        assert bool(got[model, leaf, hop]) == expected


def test_accuracy_summaries_on_hand_example():
    correct = torch.tensor([[[True, True, False], [True, True, True], [False, True, True], [True, False, False]]])
    assert tx.overall_accuracy(correct).item() == pytest.approx(8 / 12)
    assert tx.hierarchical_consistency(correct).item() == pytest.approx(1 / 4)
    assert tx.conditional_accuracy(correct).item() == pytest.approx(3 / 6)


# === Probes, RSA and statistics === #


def test_ridge_loo_matches_explicit_refits():
    features = torch.randn(2, 25, 4, generator=_generator(), dtype=torch.float64)
    labels = torch.arange(25) % 3
    held_out = tx.ridge_loo_predictions(features, labels, penalty=0.3)
    centred = features - features.mean(dim=1, keepdim=True)
    scale = centred.pow(2).sum(dim=-1).mean(dim=1)
    design = torch.cat([centred, torch.ones(2, 25, 1, dtype=torch.float64)], dim=-1)
    targets = torch.nn.functional.one_hot(labels).double()
    for row in range(25):
        keep = torch.arange(25) != row
        gram = design[:, keep].transpose(1, 2) @ design[:, keep] + 0.3 * scale[:, None, None] * torch.eye(5)
        weights = torch.linalg.solve(gram, design[:, keep].transpose(1, 2) @ targets[keep])
        assert torch.allclose(held_out[:, row], (design[:, row:row + 1] @ weights).squeeze(1), atol=1e-10)


def test_ridge_loo_identity_in_sympy():
    lam = sp.Symbol("lambda", positive=True)
    x = sp.Matrix([[1, 2, 1], [0, 1, 1], [3, -1, 1], [2, 2, 1]])
    y = sp.Matrix([1, 0, 2, -1])
    hat = x * (x.T * x + lam * sp.eye(3)).inv() * x.T
    fitted = hat * y
    for row in range(4):
        keep = [j for j in range(4) if j != row]
        x_kept, y_kept = x.extract(keep, [0, 1, 2]), y.extract(keep, [0])
        refit = (x[row, :] * (x_kept.T * x_kept + lam * sp.eye(3)).inv() * x_kept.T * y_kept)[0]
        assert sp.simplify(refit - (fitted[row] - hat[row, row] * y[row]) / (1 - hat[row, row])) == 0


def test_ridge_rejects_bad_penalty():
    with pytest.raises(ValueError, match="penalty must be > 0"):
        tx.ridge_loo_accuracy(torch.randn(1, 4, 2), torch.tensor([0, 1, 0, 1]), penalty=0)


def test_spearman_matches_scipy_with_ties():
    generator = _generator()
    x = torch.randint(0, 4, (20, 30), generator=generator).double()
    y = torch.randint(0, 6, (20, 30), generator=generator).double()
    expected = [scipy.stats.spearmanr(a, b).statistic for a, b in zip(x.numpy(), y.numpy())]
    assert np.allclose(tx.spearman_correlation(x, y).numpy(), expected, atol=1e-12)


def test_average_ranks_match_scipy():
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0]])
    assert tx.average_ranks(values).tolist() == [scipy.stats.rankdata(values[0].numpy()).tolist()]


def test_rsa_ceiling_matches_tie_formula():
    similarity = tx.Taxonomy().tree_similarity()
    pairs = tx.upper_triangle(similarity)
    _, sizes = torch.unique(pairs, return_counts=True)
    n = int(sizes.sum())
    ceiling = math.sqrt(1 - sum(int(s) ** 3 - int(s) for s in sizes) / (n**3 - n))
    broken_ties = pairs + 1e-6 * torch.randperm(n, generator=_generator()).double() / n
    assert tx.spearman_correlation(pairs, broken_ties).item() == pytest.approx(ceiling, abs=1e-12)
    assert tx.representational_similarity(similarity, similarity).item() == pytest.approx(1.0)


def test_upper_triangle_order():
    matrix = torch.arange(16.0).reshape(4, 4)
    assert tx.upper_triangle(matrix).tolist() == [1.0, 2.0, 3.0, 6.0, 7.0, 11.0]


def test_whitening_gives_identity_covariance():
    vectors = torch.randn(2, 100, 5, generator=_generator(), dtype=torch.float64) * torch.tensor([1.0, 5, 0.1, 2, 3])
    whitened = tx.whiten(vectors)
    covariance = whitened.transpose(1, 2) @ whitened / 100
    assert torch.allclose(covariance, torch.eye(5, dtype=torch.float64).expand(2, -1, -1), atol=1e-10)


def test_category_vectors_average_leaf_rows():
    taxonomy = SMALL
    unembedding = torch.randn(1, 30, 6, generator=_generator(), dtype=torch.float64)
    leaf_rows = tx.concept_token(taxonomy.leaf_ancestors()[:, 0])
    vectors = tx.category_vectors(unembedding, leaf_rows, taxonomy.descendant_leaves())
    whitened = tx.whiten(unembedding)[0, leaf_rows]
    assert torch.allclose(vectors[0, taxonomy.level_offsets[0]:], whitened)
    assert torch.allclose(vectors[0, 0], whitened[:6].mean(dim=0))


def test_cosine_separation_on_two_clusters():
    generator = _generator()
    group = torch.arange(40) % 2 == 0
    centres = torch.where(group[:, None], torch.tensor([3.0, 0, 0]), torch.tensor([-3.0, 0, 0]))
    separated = (centres + 0.1 * torch.randn(40, 3, generator=generator)).unsqueeze(0)
    mixed = torch.randn(1, 40, 3, generator=generator)
    assert tx.cosine_separation(separated, group).item() > 1.9
    assert abs(tx.cosine_separation(mixed, group).item()) < 0.2
    with pytest.raises(ValueError, match="at least two representations"):
        tx.cosine_separation(mixed, torch.arange(40) == 0)


def test_paired_difference_matches_numpy():
    treatment = torch.tensor([0.5, 0.7, 0.4, 0.9])
    control = torch.tensor([0.4, 0.3, 0.4, 0.6])
    mean, stderr = tx.paired_difference(treatment, control)
    differences = (treatment - control).double().numpy()
    assert mean == pytest.approx(differences.mean())
    assert stderr == pytest.approx(differences.std(ddof=1) / 2)


def test_gain_beyond_change_matches_numpy():
    gain = torch.tensor([0.20, 0.35, 0.10, 0.25])
    change = torch.tensor([-0.05, 0.01, -0.03, -0.02])
    mean, stderr = tx.gain_beyond_change(gain, change)
    contrast = (gain + change).double().numpy()  # the mean change is negative, so s = -1
    assert mean == pytest.approx(contrast.mean())
    assert mean == pytest.approx(float(gain.double().mean() - change.double().mean().abs()))
    assert stderr == pytest.approx(contrast.std(ddof=1) / 2)


def test_gain_beyond_change_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="one value per seed"):
        tx.gain_beyond_change(torch.zeros(4), torch.zeros(3))


@pytest.mark.parametrize("scale,passes", [(0.2, True), (1.0, False)])
def test_gain_beyond_change_claim_can_fail(scale, passes):
    """The chapter's check fails when a knowledge score moves as much as question answering does."""
    gain = torch.tensor([0.21, 0.15, 0.30, 0.18, 0.25, 0.12, 0.27, 0.22])
    noise = torch.tensor([0.01, -0.02, 0.015, 0.0, -0.01, 0.02, -0.015, 0.005])
    change = scale * gain + noise
    mean, stderr = tx.gain_beyond_change(gain, change)
    t_quantile = float(scipy.stats.t.ppf(0.975, len(gain) - 1))
    assert at_least(t_quantile * stderr).admits(mean) is passes


# === The chapter against broken formulas === #


def _assert_chapter_fails_at(result, entry, claim_id):
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == [claim_id]
    assert claim_id in result.stdout + result.stderr


@pytest.mark.chapters
def test_lca_depth_counted_once_fails_tree_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "taxonomy_vl", "taxonomy/world.py",
        "return depths[:, None] + depths[None, :] - 2 * shared", "return depths[:, None] + depths[None, :] - shared",
    )
    _assert_chapter_fails_at(result, entry, "tvl.tree-similarity-matches-graph")


@pytest.mark.chapters
def test_ties_ranked_low_fails_spearman_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "taxonomy_vl", "taxonomy/analysis.py",
        "return (below + up_to + 1).double() / 2", "return (below + 1).double()",
    )
    _assert_chapter_fails_at(result, entry, "tvl.spearman-matches-scipy")


@pytest.mark.chapters
def test_in_sample_probe_fails_leave_one_out_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "taxonomy_vl", "taxonomy/analysis.py",
        "return (hat @ targets - leverage * targets) / (1 - leverage)", "return hat @ targets",
    )
    _assert_chapter_fails_at(result, entry, "tvl.ridge-loo-matches-refit")
