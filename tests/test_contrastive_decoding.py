"""The decoding library against SymPy, closed forms, hand examples and brute force, and the
contrastive-decoding chapter against broken copies of its decoding rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from mutation import run_with_patched_library
from negsamp import decoding
from negsamp.decoding import PAD, ToyWorld

WORLD = ToyWorld()


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# === Contrastive rule and plausibility constraint === #


def _sympy_tilt(n_tokens: int):
    p = sp.symbols(f"p1:{n_tokens + 1}", positive=True)
    q = sp.symbols(f"q1:{n_tokens + 1}", positive=True)
    alpha = sp.Symbol("alpha", nonnegative=True)
    weights = [p[i] * (p[i] / q[i]) ** alpha for i in range(n_tokens)]
    return sp.lambdify((p, q, alpha), [w / sum(weights) for w in weights], "numpy")


def test_contrastive_scores_match_sympy_tilt():
    tilt = _sympy_tilt(4)
    generator = _generator()
    positive = torch.randn(50, 4, generator=generator, dtype=torch.float64) * 2
    negative = torch.randn(50, 4, generator=generator, dtype=torch.float64) * 2
    for alpha in (0.0, 0.5, 1.0, 2.5):
        library = torch.softmax(decoding.contrastive_scores(positive, negative, alpha, 0.0), dim=1)
        p = torch.softmax(positive, 1).numpy().T
        q = torch.softmax(negative, 1).numpy().T
        expected = np.stack(tilt(p, q, alpha), axis=1)
        assert np.abs(library.numpy() - expected).max() < 1e-12


def test_contrastive_scores_shift_invariant():
    generator = _generator(1)
    positive = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    negative = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    base = torch.softmax(decoding.contrastive_scores(positive, negative, 1.5, 0.2), dim=1)
    shifted_scores = decoding.contrastive_scores(positive + 7.0, negative - 3.0, 1.5, 0.2)
    assert torch.allclose(torch.softmax(shifted_scores, dim=1), base, atol=1e-12)


def test_alpha_zero_returns_positive_logits():
    positive = torch.tensor([[0.3, -1.0, 2.0]])
    negative = torch.tensor([[5.0, 5.0, -5.0]])
    assert torch.equal(decoding.contrastive_scores(positive, negative, 0.0, 0.0), positive)


def test_plausible_tokens_probability_form():
    generator = _generator(2)
    logits = torch.randn(200, 8, generator=generator, dtype=torch.float64) * 3
    probabilities = torch.softmax(logits, dim=1)
    for beta in (0.05, 0.1, 0.5):
        expected = probabilities >= beta * probabilities.max(dim=1, keepdim=True).values
        assert torch.equal(decoding.plausible_tokens(logits, beta), expected)


def test_plausible_tokens_edge_thresholds():
    logits = torch.tensor([[1.0, 3.0, -50.0]])
    assert decoding.plausible_tokens(logits, 0.0).all()
    assert decoding.plausible_tokens(logits, 1.0).tolist() == [[False, True, False]]


def test_apc_removes_boosted_implausible_token():
    """A token that both branches find unlikely is boosted by the tilt, and APC removes it."""
    positive = torch.log(torch.tensor([[0.90, 0.09, 0.01]]))
    negative = torch.log(torch.tensor([[0.90, 0.0999, 0.0001]]))
    free = torch.softmax(decoding.contrastive_scores(positive, negative, 1.0, 0.0), dim=1)
    constrained = torch.softmax(decoding.contrastive_scores(positive, negative, 1.0, 0.1), dim=1)
    assert float(free[0, 2]) > 0.1
    assert float(constrained[0, 2]) == 0.0


@pytest.mark.parametrize("alpha, beta, match", [(-1.0, 0.1, "alpha"), (float("inf"), 0.1, "alpha"),
                                                (1.0, 1.5, "beta"), (1.0, -0.1, "beta")])
def test_contrastive_scores_reject_bad_settings(alpha, beta, match):
    logits = torch.zeros(1, 3)
    with pytest.raises(ValueError, match=match):
        decoding.contrastive_scores(logits, logits, alpha, beta)


def test_contrastive_scores_reject_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        decoding.contrastive_scores(torch.zeros(2, 3), torch.zeros(2, 4), 1.0, 0.1)


# === VCD's diffusion noise === #


def test_signal_coefficient_matches_product_formula():
    betas = 1 / (1 + np.exp(-np.linspace(-6, 6, 1000))) * (5e-3 - 1e-5) + 1e-5
    for step in (0, 1, 500, 999):
        expected = math.sqrt(np.prod(1 - betas[: step + 1]))
        assert decoding.diffusion_signal_coefficient(step) == pytest.approx(expected, abs=1e-12)
    assert decoding.diffusion_signal_coefficient(500) > decoding.diffusion_signal_coefficient(999)


@pytest.mark.parametrize("step", [-1, 1000, 2.5])
def test_signal_coefficient_rejects_bad_step(step):
    with pytest.raises(ValueError, match="noise step"):
        decoding.diffusion_signal_coefficient(step)


def test_noise_image_moments():
    images = torch.randn(20_000, 4, generator=_generator(3), dtype=torch.float64)
    signal = decoding.diffusion_signal_coefficient(500)
    residual = decoding.noise_image(images, 500, _generator(4)) - signal * images
    stderr = (1 - signal**2) * math.sqrt(2 / residual.numel())
    assert abs(float(residual.var()) - (1 - signal**2)) < 4 * stderr
    assert abs(float(residual.mean())) < 4 * math.sqrt((1 - signal**2) / residual.numel())


# === DPO === #


def test_dpo_loss_at_zero_margin_is_log_two():
    zeros = torch.zeros(5)
    assert float(decoding.dpo_loss(zeros, zeros, zeros, zeros, 0.1)) == pytest.approx(math.log(2))


def test_dpo_loss_gradient_matches_sympy():
    h = sp.symbols("h1:3", real=True)
    W = sp.Matrix(3, 2, sp.symbols("w1:7", real=True))
    logits = W * sp.Matrix(h)
    log_p = [logits[k] - sp.log(sum(sp.exp(logits[j]) for j in range(3))) for k in range(3)]
    beta, reference_margin = sp.Symbol("beta", positive=True), sp.Symbol("r", real=True)
    loss = -sp.log(1 / (1 + sp.exp(-beta * (log_p[0] - log_p[1] - reference_margin))))
    gradient = sp.lambdify((list(W), h, beta, reference_margin), [sp.diff(loss, x) for x in h])

    W_value = torch.tensor([[0.3, -1.2], [0.7, 0.4], [-0.5, 1.1]], dtype=torch.float64)
    h_value = torch.tensor([0.2, -0.6], dtype=torch.float64, requires_grad=True)
    reference = torch.tensor([-1.0, -0.5, -2.0], dtype=torch.float64)
    log_probs = torch.log_softmax(W_value @ h_value, dim=0)
    library = decoding.dpo_loss(log_probs[0:1], log_probs[1:2], reference[0:1], reference[1:2], 0.3)
    (autograd,) = torch.autograd.grad(library, h_value)
    expected = gradient(W_value.flatten().tolist(), [0.2, -0.6], 0.3, float(reference[0] - reference[1]))
    assert np.allclose(autograd.numpy(), expected, atol=1e-12)


def test_dpo_loss_rejects_bad_beta():
    zeros = torch.zeros(2)
    with pytest.raises(ValueError, match="beta"):
        decoding.dpo_loss(zeros, zeros, zeros, zeros, 0.0)


def test_single_token_flow_matches_explicit_iteration():
    """The three-token example, against gradient descent written out with the closed-form gradient."""
    W = torch.tensor([[1.0, 0.0], [1.0, -0.2], [0.5, 1.0]], dtype=torch.float64)
    flow = decoding.single_token_dpo_flow(W, 0, 1, beta=0.1, lr=1.0, steps=200)
    h = np.zeros(2)
    direction = (W[0] - W[1]).numpy()
    for _ in range(200):
        log_p = W.numpy() @ h - np.log(np.exp(W.numpy() @ h).sum())
        margin = (log_p[0] - log_p[1]) - 0.0
        h = h + 0.1 / (1 + np.exp(0.1 * margin)) * direction
    expected = np.exp(W.numpy() @ h) / np.exp(W.numpy() @ h).sum()
    assert np.allclose(flow[-1].numpy(), expected, atol=1e-12)
    assert flow.shape == (201, 3)
    assert float(flow[-1, 2]) > 0.8
    assert float(flow[-1, 0]) < 1 / 3


def test_single_token_flow_rejects_equal_tokens():
    with pytest.raises(ValueError, match="differ"):
        decoding.single_token_dpo_flow(torch.eye(3), 1, 1, 0.1, 1.0, 5)


# === The toy world === #


def test_world_token_layout():
    assert WORLD.n_objects == 12
    assert (WORLD.bg, WORLD.eos) == (12, 13)
    assert int(WORLD.count_token(torch.tensor(1))) == 14
    assert int(WORLD.weather_token(torch.tensor(0))) == 20
    assert WORLD.vocab_size == 24
    assert WORLD.partner(torch.tensor([0, 1, 10, 11])).tolist() == [1, 0, 11, 10]


@pytest.mark.parametrize("field, value", [("pair_rate", 1.5), ("n_pairs", 0), ("image_noise", -1.0),
                                          ("partner_rate", 0.9)])
def test_world_rejects_bad_parameters(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        ToyWorld(**{field: value})


def test_compact_slots_hand_example():
    world = ToyWorld(n_pairs=2)
    slots = torch.tensor([[PAD, 1, world.bg, PAD], [PAD, PAD, PAD, PAD], [0, 1, 2, 3]])
    expected = torch.tensor([[1, world.bg, world.eos, PAD, PAD],
                             [world.eos, PAD, PAD, PAD, PAD],
                             [0, 1, 2, 3, world.eos]])
    assert torch.equal(decoding.compact_slots(world, slots), expected)


def test_web_captions_follow_rates_in_limits():
    objects = torch.tensor([[True, False, False, False, True, True] + [False] * 6])
    always_partner = ToyWorld(partner_rate=1.0, filler_rate=0.0)
    always_filler = ToyWorld(partner_rate=0.0, filler_rate=1.0)
    partner_caption = decoding.web_captions(always_partner, objects, _generator())
    filler_caption = decoding.web_captions(always_filler, objects, _generator())
    assert partner_caption[0, :5].tolist() == [0, 1, 4, 5, always_partner.eos]
    assert filler_caption[0, :5].tolist() == [0, always_filler.bg, 4, 5, always_filler.eos]


def test_preference_captions_hand_example():
    objects = torch.tensor([[False, True, True, True] + [False] * 8])
    chosen, rejected = decoding.preference_captions(WORLD, objects)
    assert chosen[0, :5].tolist() == [WORLD.bg, 1, 2, 3, WORLD.eos]
    assert rejected[0, :5].tolist() == [0, 1, 2, 3, WORLD.eos]


def test_sample_scenes_member_rates():
    scenes = decoding.sample_scenes(WORLD, 40_000, _generator(5))
    pairs = scenes.objects.reshape(-1, WORLD.n_pairs, 2)
    assert bool(scenes.objects.any(dim=1).all())
    drawn = pairs.any(dim=2)
    both_share = float((pairs.all(dim=2).sum() / drawn.sum()))
    stderr = math.sqrt(0.2 * 0.8 / float(drawn.sum()))
    assert abs(both_share - WORLD.both_rate) < 4 * stderr
    assert scenes.images.shape == (40_000, WORLD.image_dim)


def test_preference_scenes_all_have_lone_member():
    scenes = decoding.sample_preference_scenes(WORLD, 300, _generator(6))
    assert len(scenes) == 300
    assert bool(decoding.has_lone_member(WORLD, scenes.objects).all())


def test_count_and_weather_answers():
    objects = torch.zeros(3, 12, dtype=torch.bool)
    objects[0, :2] = True
    objects[1, :] = True
    counts = decoding.count_answers(WORLD, objects)
    assert counts.tolist() == [int(WORLD.count_token(torch.tensor(c))) for c in (2, 6, 1)]
    assert decoding.weather_answers(WORLD, torch.tensor([3])).tolist() == [23]


# === Model, teacher forcing and sampling === #


def test_prefix_bags_hand_example():
    tokens = torch.tensor([[2, WORLD.bg, 5, WORLD.eos, PAD]])
    bags = decoding.prefix_bags(WORLD, tokens)
    assert bags[0, 0].sum() == 0
    assert bags[0, 1].nonzero().flatten().tolist() == [2]
    assert bags[0, 3].nonzero().flatten().tolist() == [2, 5, WORLD.bg]
    assert bags[0, 4].sum() == 3


def test_token_log_probs_match_position_loop():
    torch.manual_seed(0)
    model = decoding.ToyMLLM(WORLD).double()
    scenes = decoding.sample_scenes(WORLD, 6, _generator(7))
    tokens = decoding.web_captions(WORLD, scenes.objects, _generator(8))
    images = scenes.images.double()
    with torch.no_grad():
        library = decoding.token_log_probs(model, images, tokens)
    bags = decoding.prefix_bags(WORLD, tokens)
    for row in range(tokens.shape[0]):
        for position in range(tokens.shape[1]):
            token = int(tokens[row, position])
            if token == PAD:
                assert float(library[row, position]) == 0.0
                continue
            with torch.no_grad():
                logits = model(images[row:row + 1], torch.tensor([decoding.CAPTION]),
                               bags[row, position:position + 1], torch.tensor([position]))
            expected = float(torch.log_softmax(logits, dim=1)[0, token])
            assert float(library[row, position]) == pytest.approx(expected, abs=1e-12)


class _ScriptedDecoder(decoding.BaseDecoder):
    """Emits object ``position`` at positions 0 and 1, then ``EOS``."""

    def scores(self, state, task, bag, position):
        scores = torch.full((state.shape[0], WORLD.vocab_size), -1e9)
        target = torch.where(position < 2, position, torch.full_like(position, WORLD.eos))
        return scores.scatter(1, target.unsqueeze(1), 0.0)


def test_sample_captions_stops_at_eos():
    model = decoding.ToyMLLM(WORLD)
    tokens = decoding.sample_captions(_ScriptedDecoder(model), torch.zeros(3, WORLD.image_dim),
                                      _generator())
    assert tokens.shape == (3, WORLD.max_len)
    assert tokens[0].tolist() == [0, 1, WORLD.eos] + [PAD] * (WORLD.max_len - 3)


def test_dcd_with_equal_projections_is_plain_decoding():
    torch.manual_seed(1)
    model = decoding.ToyMLLM(WORLD).double()
    images = torch.randn(10, WORLD.image_dim, dtype=torch.float64)
    task = torch.zeros(10, dtype=torch.long)
    bag = torch.zeros(10, WORLD.bag_dim, dtype=torch.float64)
    position = torch.zeros(10, dtype=torch.long)
    dcd = decoding.DCDDecoder(model, model.projection, model.projection, 2.0, 0.0)
    base = decoding.BaseDecoder(model)
    assert torch.allclose(dcd.scores(images, task, bag, position),
                          base.scores(images, task, bag, position), atol=1e-12)


def test_dcd_uses_negative_projection():
    torch.manual_seed(2)
    model = decoding.ToyMLLM(WORLD).double()
    negative = torch.nn.Linear(WORLD.image_dim, 16).double()
    images = torch.randn(4, WORLD.image_dim, dtype=torch.float64)
    state = (torch.zeros(4, dtype=torch.long), torch.zeros(4, WORLD.bag_dim, dtype=torch.float64),
             torch.zeros(4, dtype=torch.long))
    dcd = decoding.DCDDecoder(model, model.projection, negative, 1.0, 0.0)
    expected = 2 * model(images, *state) - model(images, *state, projection=negative)
    assert torch.allclose(dcd.scores(images, *state), expected, atol=1e-12)


# === Metrics === #


def test_caption_metrics_hand_example():
    world = ToyWorld(n_pairs=2)
    objects = torch.tensor([[True, False, True, True], [False, False, True, False]])
    tokens = torch.tensor([[0, 1, 2, world.eos, PAD], [0, 2, 3, world.eos, PAD]])
    metrics = decoding.caption_metrics(world, tokens, objects)
    # Six mentions; hallucinated: 1 (partner of 0), 0 (not a partner: 1 is absent), 3 (partner of 2).
    assert metrics["chair_i"] == pytest.approx(3 / 6)
    assert metrics["chair_s"] == pytest.approx(1.0)
    assert metrics["partner_hall"] == pytest.approx(2 / 6)
    assert metrics["other_hall"] == pytest.approx(1 / 6)
    assert metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    assert metrics["partner_given_lone"] == pytest.approx(2 / 2)
    assert metrics["invalid"] == 0.0


def test_caption_metrics_flag_answer_tokens():
    tokens = torch.tensor([[0, int(WORLD.count_token(torch.tensor(2))), WORLD.eos]])
    objects = torch.zeros(1, 12, dtype=torch.bool)
    objects[0, 0] = True
    assert decoding.caption_metrics(WORLD, tokens, objects)["invalid"] == 1.0


# === Training === #


def _small_setup(seed: int = 0):
    generator = _generator(seed)
    torch.manual_seed(seed)
    scenes = decoding.sample_scenes(WORLD, 400, generator)
    model = decoding.ToyMLLM(WORLD)
    decoding.train_sft(model, scenes, decoding.web_captions(WORLD, scenes.objects, generator),
                       epochs=3, batch_size=100, lr=3e-3, generator=generator)
    pairs = decoding.sample_preference_scenes(WORLD, 200, generator)
    chosen, rejected = decoding.preference_captions(WORLD, pairs.objects)
    return model, pairs, chosen, rejected, generator


def test_train_projection_fits_captions_and_keeps_model():
    model, pairs, chosen, rejected, generator = _small_setup()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    negative = decoding.train_projection(model, pairs.images, rejected, epochs=3, batch_size=50,
                                         lr=3e-3, generator=generator)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(parameter.requires_grad for parameter in model.parameters())
    with torch.no_grad():
        base = decoding.caption_log_probs(model, pairs.images, rejected).mean()
        fitted = decoding.caption_log_probs(model, pairs.images, rejected, negative).mean()
    assert float(fitted) > float(base)


def test_train_dpo_grows_margin_and_keeps_reference():
    model, pairs, chosen, rejected, _ = _small_setup(1)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    policies, trajectory = decoding.train_dpo(model, pairs.images, chosen, rejected, beta=0.1, lr=1e-3,
                                              checkpoints=[2, 5])
    assert sorted(policies) == [2, 5]
    assert trajectory["step"] == list(range(6))
    margins = np.array(trajectory["log_p_chosen"]) - np.array(trajectory["log_p_rejected"])
    assert margins[-1] > margins[0]
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_train_dpo_rejects_bad_checkpoints():
    model, pairs, chosen, rejected, _ = _small_setup(2)
    with pytest.raises(ValueError, match="checkpoints"):
        decoding.train_dpo(model, pairs.images, chosen, rejected, beta=0.1, lr=1e-3, checkpoints=[5, 2])


# === Mutations: the chapter must fail at a named claim within its first seconds === #


def _assert_fails_with(result, entry, claim_id):
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == [claim_id]
    assert claim_id in result.stdout + result.stderr


@pytest.mark.chapters
def test_dropping_dcd_negative_branch_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_decoding", "decoding/model.py",
        "negative = self.model(state, task, bag, position, projection=self.negative)",
        "negative = self.model(state, task, bag, position, projection=self.positive)",
    )
    _assert_fails_with(result, entry, "cd.dcd-rule-matches-library")


@pytest.mark.chapters
def test_dropping_plausibility_constraint_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_decoding", "decoding/rules.py",
        "return scores.masked_fill(~plausible, -math.inf)", "return scores",
    )
    _assert_fails_with(result, entry, "cd.apc-matches-library")


@pytest.mark.chapters
def test_dropping_negative_logits_from_rule_fails_named_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "contrastive_decoding", "decoding/rules.py",
        "scores = (1 + alpha) * positive_logits - alpha * negative_logits",
        "scores = positive_logits",
    )
    _assert_fails_with(result, entry, "cd.tilt-matches-library")
