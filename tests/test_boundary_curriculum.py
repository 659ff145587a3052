"""The dual-encoder library against SymPy, closed forms and brute force.

The last three tests are mutation tests (marked ``chapters``): each breaks one
formula of the library and checks that the chapter fails on the claim that
guards it, within its first seconds, because the derivation checks come first.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch

from negsamp.critic import infonce_loss
from negsamp.dual_encoder import (
    Method,
    TrainingConfig,
    attribute_edit_negatives,
    boundary_contrastive_loss,
    boundary_gallery,
    boundary_gallery_scores,
    caption_token_embeddings,
    compose_scene_sets,
    curriculum_temperature,
    draw_attributes,
    draw_scene_images,
    image_bank,
    infonce_from_similarities,
    init_dual_encoders,
    local_contrastive_loss,
    nearest_prototype,
    paired_similarity,
    pooled_embedding,
    sample_tempered_negatives,
    shortcut_fraction,
    slot_image_embeddings,
    stack_scene_sets,
    synthetic_image_bank,
    synthetic_prototypes,
    tempered_negative_probabilities,
    train_dual_encoders,
)
from negsamp.metrics import gallery_hit_at_k, recall_at_k_retrieval

from mutation import run_with_patched_library


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# === Losses === #


def test_infonce_matches_per_row_cross_entropy():
    generator = _generator()
    similarity = torch.rand(2, 5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    extra = torch.rand(2, 5, generator=generator, dtype=torch.float64) * 2 - 1
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    tau = 0.2
    got = infonce_from_similarities(similarity, tau, extra, mask)
    for model in range(2):
        image_rows, caption_rows = [], []
        for i in range(5):
            others = [similarity[model, i, j] for j in range(5) if j != i]
            if mask[model, i]:
                others.append(extra[model, i])
            image_rows.append(infonce_loss(torch.stack([similarity[model, i, i], *others]).view(1, -1) / tau))
            column = [similarity[model, j, i] for j in range(5) if j != i]
            caption_row = torch.stack([similarity[model, i, i], *column]).view(1, -1)
            caption_rows.append(infonce_loss(caption_row / tau))
        expected = (torch.cat(image_rows).mean() + torch.cat(caption_rows).mean()) / 2
        assert float(got[model]) == pytest.approx(float(expected), abs=1e-12)


def test_infonce_fully_masked_extra_equals_no_extra():
    similarity = torch.rand(3, 4, 4, generator=_generator(1), dtype=torch.float64)
    extra = torch.rand(3, 4, generator=_generator(2), dtype=torch.float64)
    masked = infonce_from_similarities(similarity, 0.1, extra, torch.zeros(3, 4, dtype=torch.bool))
    plain = infonce_from_similarities(similarity, 0.1)
    assert torch.allclose(masked, plain, atol=1e-14)


def test_infonce_gradient_is_softmax_weight_over_temperature():
    """SymPy's per-anchor gradient (pi_j - [j = 1]) / tau against autograd for one row."""
    s = sp.symbols("s1:4", real=True)
    tau = sp.Symbol("tau", positive=True)
    pi = [sp.exp(v / tau) / sum(sp.exp(w / tau) for w in s) for v in s]
    gradient = sp.lambdify((*s, tau), [sp.diff(-sp.log(pi[0]), v) for v in s], "math")
    values = torch.tensor([0.3, 0.8, -0.4], dtype=torch.float64, requires_grad=True)
    (autograd,) = torch.autograd.grad(infonce_loss(values.view(1, -1) / 0.25).sum(), values)
    assert autograd.tolist() == pytest.approx(gradient(0.3, 0.8, -0.4, 0.25), abs=1e-12)


def test_infonce_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature must be positive"):
        infonce_from_similarities(torch.zeros(3, 3), 0.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., B, B\)"):
        infonce_from_similarities(torch.zeros(3, 4), 0.1)


def test_local_loss_matches_brute_force():
    generator = _generator(3)
    positive = torch.rand(2, 4, 3, generator=generator, dtype=torch.float64)
    negative = torch.rand(2, 4, 3, generator=generator, dtype=torch.float64)
    differs = torch.rand(2, 4, 3, generator=generator) < 0.5
    differs[0, 0] = False
    differs[0, 1] = torch.tensor([True, False, False])
    got = local_contrastive_loss(positive, negative, differs, 0.3)
    for model in range(2):
        per_anchor = []
        for i in range(4):
            slots = [k for k in range(3) if differs[model, i, k]]
            if slots:
                gaps = [float(negative[model, i, k] - positive[model, i, k]) for k in slots]
                terms = [math.log1p(math.exp(gap / 0.3)) for gap in gaps]
                per_anchor.append(sum(terms) / len(terms))
        expected = sum(per_anchor) / len(per_anchor) if per_anchor else 0.0
        assert float(got[model]) == pytest.approx(expected, abs=1e-12)


def test_local_loss_is_zero_without_differing_slots():
    values = torch.rand(2, 3, 4)
    got = local_contrastive_loss(values, values + 1, torch.zeros(2, 3, 4, dtype=torch.bool), 0.1)
    assert torch.equal(got, torch.zeros(2))


def test_local_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="share one shape"):
        local_contrastive_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.bool), 0.1)


def test_boundary_loss_adds_weighted_local_term():
    generator = _generator(4)
    shape = (2, 5, 3, 6)
    slots, tokens, extra = (torch.randn(*shape, generator=generator, dtype=torch.float64) for _ in range(3))
    differs = torch.rand(2, 5, 3, generator=generator) < 0.5
    mask = torch.ones(2, 1, dtype=torch.bool)
    without = boundary_contrastive_loss(slots, tokens, extra, differs, mask, 0.0, 0.1, 0.1)
    weighted = boundary_contrastive_loss(slots, tokens, extra, differs, mask, 0.7, 0.1, 0.1)
    assert torch.allclose(without.total, without.global_term)
    assert torch.allclose(weighted.total, weighted.global_term + 0.7 * weighted.local_term, atol=1e-14)
    assert torch.all(weighted.local_term > 0)


def test_local_term_zero_without_extra():
    generator = _generator(5)
    slots, tokens, extra = (torch.randn(2, 4, 3, 5, generator=generator) for _ in range(3))
    differs = torch.ones(2, 4, 3, dtype=torch.bool)
    loss = boundary_contrastive_loss(slots, tokens, extra, differs, torch.zeros(2, 1, dtype=torch.bool),
                                     1.0, 0.1, 0.1)
    assert torch.equal(loss.local_term, torch.zeros(2))


def test_pooled_embedding_is_unit_mean_direction():
    values = torch.tensor([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, -4.0]]])
    assert torch.allclose(pooled_embedding(values), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))


# === Samplers === #


def test_schedule_is_geometric_then_constant():
    assert curriculum_temperature(0, 100, 1.0, 0.01, 0.5) == pytest.approx(1.0)
    assert curriculum_temperature(25, 100, 1.0, 0.01, 0.5) == pytest.approx(0.1)
    assert curriculum_temperature(50, 100, 1.0, 0.01, 0.5) == pytest.approx(0.01)
    assert curriculum_temperature(99, 100, 1.0, 0.01, 0.5) == pytest.approx(0.01)
    assert curriculum_temperature(40, 100, 0.5, 0.5, 0.7) == pytest.approx(0.5)


@pytest.mark.parametrize("arguments", [(0, 10, 0.0, 1.0, 0.5), (0, 10, 1.0, -1.0, 0.5), (0, 0, 1.0, 0.1, 0.5),
                                       (0, 10, 1.0, 0.1, 0.0), (0, 10, 1.0, 0.1, 1.5)])
def test_schedule_rejects_bad_arguments(arguments):
    with pytest.raises(ValueError):
        curriculum_temperature(*arguments)


def test_tempered_probabilities_limits_and_mask():
    similarity = torch.tensor([[0.1, 0.9, 0.5, 0.95]], dtype=torch.float64)
    allowed = torch.tensor([[True, True, True, False]])
    cold = tempered_negative_probabilities(similarity, 1e-4, allowed)
    hot = tempered_negative_probabilities(similarity, 1e6, allowed)
    assert cold[0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0], abs=1e-12)
    assert hot[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0], abs=1e-6)
    middle = tempered_negative_probabilities(similarity, 0.5, allowed)
    expected = torch.softmax(similarity[0, :3] / 0.5, dim=0)
    assert middle[0, :3].tolist() == pytest.approx(expected.tolist(), abs=1e-12)


def test_tempered_probabilities_reject_rows_without_candidates():
    with pytest.raises(ValueError, match="at least one True"):
        allowed = torch.tensor([[True, False, False], [False] * 3])
        tempered_negative_probabilities(torch.zeros(2, 3), 1.0, allowed)


def test_sampler_frequencies_match_probabilities():
    similarity = torch.tensor([0.2, -0.3, 0.7, 0.1], dtype=torch.float64)
    allowed = torch.tensor([True, True, True, False])
    draws = 100_000
    drawn = sample_tempered_negatives(similarity.expand(draws, -1), 0.4, allowed.expand(draws, -1),
                                      _generator(6))
    frequencies = torch.bincount(drawn, minlength=4).double() / draws
    probabilities = tempered_negative_probabilities(similarity, 0.4, allowed)
    assert int((drawn == 3).sum()) == 0
    stderr = torch.sqrt(probabilities * (1 - probabilities) / draws)
    assert torch.all((frequencies[:3] - probabilities[:3]).abs() < 5 * stderr[:3])


# === Scenes === #


def test_boundary_gallery_matches_enumeration():
    attributes = torch.tensor([[2, 0, 4], [1, 1, 1]])
    gallery = boundary_gallery(attributes, 5)
    assert gallery.shape == (2, 1 + 3 * 4, 3)
    for row, caption in enumerate(attributes.tolist()):
        expected = {tuple(caption[:k] + [v] + caption[k + 1:])
                    for k in range(3) for v in range(5) if v != caption[k]}
        got = [tuple(c) for c in gallery[row].tolist()]
        assert got[0] == tuple(caption)
        assert set(got[1:]) == expected
        assert len(got[1:]) == len(expected)


def test_boundary_gallery_keeps_leading_axes():
    attributes = draw_attributes((2, 3), 4, 6, 0.0, _generator(7))
    gallery = boundary_gallery(attributes, 6)
    assert gallery.shape == (2, 3, 1 + 4 * 5, 4)
    differing = (gallery[..., 1:, :] != attributes.unsqueeze(-2)).sum(dim=-1)
    assert torch.all(differing == 1)


def test_attribute_edits_change_exactly_one_slot():
    attributes = draw_attributes((500,), 4, 10, 0.5, _generator(8))
    edited = attribute_edit_negatives(attributes, 10, _generator(9))
    assert torch.all((edited != attributes).sum(dim=-1) == 1)
    assert int(edited.max()) < 10
    assert int(edited.min()) >= 0


def test_shortcut_fraction_matches_its_probability():
    n, values, strength = 40_000, 10, 0.9
    attributes = draw_attributes((n,), 4, values, strength, _generator(10))
    expected = strength + (1 - strength) / values  # untied details still match the tie by chance
    assert shortcut_fraction(attributes, values) == pytest.approx(expected, abs=4 * math.sqrt(expected / n))
    plain = draw_attributes((n,), 4, values, 0.0, _generator(11))
    assert shortcut_fraction(plain, values) == pytest.approx(1 / values, abs=4 * math.sqrt(0.1 / n))


@pytest.mark.parametrize("arguments", [((5,), 1, 10, 0.5), ((5,), 4, 1, 0.5), ((5,), 4, 10, 1.5)])
def test_draw_attributes_rejects_bad_arguments(arguments):
    with pytest.raises(ValueError):
        draw_attributes(*arguments, _generator())


def test_scene_images_show_the_captioned_class():
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1])
    bank = image_bank(torch.arange(7.0).view(7, 1), labels, 3)
    assert bank.labels.tolist() == sorted(labels.tolist())
    attributes = draw_attributes((50,), 3, 3, 0.0, _generator(12))
    indices = draw_scene_images(bank, attributes, _generator(13))
    assert torch.equal(bank.labels[indices], attributes)


def test_image_bank_rejects_a_missing_class():
    with pytest.raises(ValueError, match="at least one image"):
        image_bank(torch.zeros(3, 2), torch.tensor([0, 0, 2]), 3)


def test_stacking_rejects_different_image_sizes():
    generator = _generator(27)
    small = synthetic_image_bank(synthetic_prototypes(3, 4, generator), 2, 0.0, generator)
    large = synthetic_image_bank(synthetic_prototypes(3, 6, generator), 2, 0.0, generator)
    with pytest.raises(ValueError, match="image size"):
        stack_scene_sets(compose_scene_sets(small, small, 1, 5, 5, 2, 0.0, generator),
                         compose_scene_sets(large, large, 1, 5, 5, 2, 0.0, generator))


def test_nearest_prototype_reads_low_noise_synthetic_images():
    prototypes = synthetic_prototypes(10, 64, _generator(14))
    bank = synthetic_image_bank(prototypes, 50, 0.2, _generator(15))
    assert torch.equal(nearest_prototype(bank.images, prototypes), bank.labels)


def test_stacked_scene_sets_point_to_the_right_pixels():
    generator = _generator(16)
    prototypes = synthetic_prototypes(5, 8, generator)
    first = synthetic_image_bank(prototypes, 4, 0.0, generator)
    second = image_bank(torch.eye(8)[:5].repeat(2, 1) * 7, torch.arange(5).repeat(2), 5)
    sets_a = compose_scene_sets(first, first, 2, 30, 10, 3, 0.5, generator)
    sets_b = compose_scene_sets(second, second, 2, 30, 10, 3, 0.0, generator)
    stacked = stack_scene_sets(sets_a, sets_b)
    for attributes, images in [(stacked.train_attributes, stacked.train_images),
                               (stacked.test_attributes, stacked.test_images)]:
        pixels = stacked.pixels[images]
        assert torch.allclose(pixels[:2], prototypes[attributes[:2]])
        assert torch.equal(pixels[2:], torch.eye(8)[attributes[2:]] * 7)


# === Towers, training and evaluation === #


def test_towers_match_a_per_model_forward_pass():
    model = init_dual_encoders(3, 6, 2, 4, hidden=5, dim=3, generator=_generator(17), dtype=torch.float64)
    pixels = torch.rand(3, 7, 2, 6, generator=_generator(18), dtype=torch.float64)
    captions = torch.randint(0, 4, (3, 7, 2), generator=_generator(19))
    slots = slot_image_embeddings(model, pixels)
    tokens = caption_token_embeddings(model, captions)
    for m in range(3):
        for k in range(2):
            inputs = torch.cat([pixels[m, :, k], torch.eye(2, dtype=torch.float64)[k].expand(7, 2)], dim=1)
            hidden = torch.relu(inputs @ model.hidden_weight[m] + model.hidden_bias[m])
            expected = hidden @ model.output_weight[m] + model.output_bias[m]
            assert torch.allclose(slots[m, :, k], expected, atol=1e-12)
            assert torch.equal(tokens[m, :, k], model.token_table[m, k * 4 + captions[m, :, k]])


def test_stacked_models_do_not_share_gradients():
    model = init_dual_encoders(2, 4, 2, 3, hidden=4, dim=3, generator=_generator(20))
    pixels = torch.rand(2, 5, 2, 4, generator=_generator(21))
    loss = slot_image_embeddings(model, pixels)[0].sum()
    loss.backward()
    assert torch.all(model.hidden_weight.grad[1] == 0)
    assert torch.any(model.hidden_weight.grad[0] != 0)


def test_method_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="unknown negatives"):
        Method("x", "random")
    with pytest.raises(ValueError, match="needs an extra negative"):
        Method("x", "in-batch", local_weight=0.5)
    with pytest.raises(ValueError, match="positive"):
        Method("x", "mined", sampler_start=0.0)


def _tiny_scenes(generator):
    prototypes = synthetic_prototypes(4, 8, generator)
    bank = synthetic_image_bank(prototypes, 10, 0.1, generator)
    return compose_scene_sets(bank, bank, 2, 60, 12, 3, 0.9, generator)


def test_training_logs_and_lowers_the_loss():
    generator = _generator(22)
    scenes = _tiny_scenes(generator)
    methods = [Method("infonce", "in-batch"), Method("curriculum", "mined", 0.5, 1.0, 0.05),
               Method("edit", "edit")]
    config = TrainingConfig(steps=60, batch_size=8, pool_size=16, learning_rate=1e-2, hidden=8, dim=4)
    model, log = train_dual_encoders(scenes, [0, 1, 1], [60, 30, 60], methods, 4, config, generator)
    assert model.n_models == 3
    assert log.loss.shape == (60, 3)
    assert torch.isnan(log.negative_overlap[:, 0]).all()
    assert not torch.isnan(log.negative_overlap[:, 1:]).any()
    assert log.sampler_temperature[0, 1] == pytest.approx(1.0)
    assert log.sampler_temperature[-1, 1] == pytest.approx(0.05)
    assert torch.isnan(log.sampler_temperature[:, 2]).all()
    assert torch.all(log.negative_overlap[:, 2] == 2)  # an edit shares all but one of the 3 slots
    assert torch.all(log.loss[-10:].mean(dim=0) < log.loss[:10].mean(dim=0))


def test_training_rejects_mismatched_plans():
    scenes = _tiny_scenes(_generator(23))
    with pytest.raises(ValueError, match="one entry per model"):
        train_dual_encoders(scenes, [0], [10, 10], [Method("a", "in-batch")], 4, TrainingConfig(steps=1),
                            _generator())
    with pytest.raises(ValueError, match="n_train"):
        train_dual_encoders(scenes, [0], [1000], [Method("a", "in-batch")], 4, TrainingConfig(steps=1),
                            _generator())


def test_gallery_scores_put_the_true_caption_first():
    generator = _generator(24)
    scenes = _tiny_scenes(generator)
    model = init_dual_encoders(3, 8, 3, 4, hidden=6, dim=5, generator=generator)
    scores = boundary_gallery_scores(model, scenes, [0, 1, 0], 4, models_per_chunk=2)
    assert scores.shape == (3, 12, 1 + 3 * 3)
    pairs = paired_similarity(model, scenes, [0, 1, 0])
    assert torch.allclose(scores[..., 0], pairs.diagonal(dim1=-2, dim2=-1), atol=1e-6)
    subset = paired_similarity(model, scenes, [0, 1, 0], models=[2])
    assert torch.allclose(subset[0], pairs[2])


# === Metrics === #


def test_gallery_hit_ties_count_against_match():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.5, 0.5, 0.1], [0.2, 0.3, 0.4]])
    assert gallery_hit_at_k(scores, 1).tolist() == [1.0, 0.0, 0.0]
    assert gallery_hit_at_k(scores, 2).tolist() == [1.0, 1.0, 0.0]
    assert gallery_hit_at_k(scores, 3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="k must lie"):
        gallery_hit_at_k(scores, 4)


def test_gallery_hit_agrees_with_square_retrieval():
    similarity = torch.rand(30, 30, generator=_generator(25))
    moved = torch.stack([torch.cat([row[i:i + 1], row[:i], row[i + 1:]]) for i, row in enumerate(similarity)])
    for k in (1, 5):
        assert float(gallery_hit_at_k(moved, k).mean()) == pytest.approx(recall_at_k_retrieval(similarity, k))


def test_gallery_hit_brute_force_rank():
    scores = torch.rand(200, 7, generator=_generator(26))
    scores[::3, 2] = scores[::3, 0]  # ties
    for k in (1, 3):
        expected = [float(sum(v >= row[0] for v in row.tolist()) <= k) for row in scores]
        assert gallery_hit_at_k(scores, k).tolist() == expected


def test_no_duplicate_tuples_in_small_gallery():
    attributes = torch.tensor(list(itertools.product(range(3), repeat=2)))
    gallery = boundary_gallery(attributes, 3)
    for row in gallery:
        assert len({tuple(c) for c in row.tolist()}) == row.shape[0]
    assert np.all(gallery.numpy() < 3)


# === Mutation tests: the chapter must fail on the claim that guards each formula === #


def _assert_fails_on(tmp_path, module, old, new, claim_id):
    result, entry = run_with_patched_library(tmp_path, "boundary_curriculum", module, old, new)
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == [claim_id]
    assert claim_id in result.stdout + result.stderr


@pytest.mark.chapters
def test_removing_annealing_fails_schedule_claim(tmp_path):
    _assert_fails_on(tmp_path, "dual_encoder/samplers.py",
                     "return start * math.exp(progress * math.log(end / start))", "return start",
                     "bc.schedule-matches-closed-form")


@pytest.mark.chapters
def test_removing_local_loss_fails_objective_claim(tmp_path):
    _assert_fails_on(tmp_path, "dual_encoder/losses.py",
                     "total = global_term + local_weight * local_term", "total = global_term",
                     "bc.objective-matches-derivation")


@pytest.mark.chapters
def test_one_sided_infonce_fails_gradient_claim(tmp_path):
    _assert_fails_on(tmp_path, "dual_encoder/losses.py",
                     "return (image_loss + caption_loss) / 2", "return image_loss",
                     "bc.batch-gradient-matches-softmax-form")
