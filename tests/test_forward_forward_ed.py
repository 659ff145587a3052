"""The forward_forward package against SymPy, closed forms, brute force and torch's own modules.

The last two tests are mutation tests: they run the chapter against a broken
copy of the library and check that a named claim fails early.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from mutation import run_with_patched_library
from negsamp import forward_forward as ff

DOUBLE = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_psd(count: int, size: int, rank: int, seed: int = 0) -> torch.Tensor:
    factors = torch.randn(count, size, rank, generator=_generator(seed), dtype=DOUBLE)
    return factors @ factors.transpose(1, 2)


# === Effective dimensionality === #


def test_second_moment_matches_brute_force():
    responses = torch.randn(5, 7, 3, generator=_generator(), dtype=DOUBLE)
    expected = np.stack([sum(np.outer(row, row) for row in block) / 6 for block in responses.numpy()])
    np.testing.assert_allclose(ff.second_moment(responses).numpy(), expected, atol=1e-12)


def test_covariance_matches_numpy():
    responses = torch.randn(6, 3, generator=_generator(), dtype=DOUBLE)
    np.testing.assert_allclose(ff.covariance(responses).numpy(), np.cov(responses.numpy().T), atol=1e-12)


def test_ed_trace_form_equals_eigen_form():
    matrices = _random_psd(50, 8, 5)
    trace_form = ff.effective_dimensionality(matrices)
    eigen_form = ff.effective_dimensionality(matrices, method="eigen")
    assert float((trace_form - eigen_form).abs().max()) < 1e-10


def test_ed_matches_sympy_participation_ratio():
    lam = sp.symbols("l1:4", nonnegative=True)
    ed = sp.lambdify(lam, sum(lam) ** 2 / sum(l**2 for l in lam), "math")
    values = [0.3, 1.7, 0.05]
    got = ff.effective_dimensionality(torch.diag(torch.tensor(values, dtype=DOUBLE)))
    assert float(got) == pytest.approx(ed(*values), abs=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 5, 8])
def test_ed_lies_between_one_and_rank(rank):
    ed = ff.effective_dimensionality(_random_psd(100, 8, rank, seed=rank))
    assert float(ed.min()) >= 1 - 1e-12
    assert float(ed.max()) <= rank + 1e-12


def test_ed_attains_bounds():
    vector = torch.randn(6, 1, dtype=DOUBLE, generator=_generator())
    assert float(ff.effective_dimensionality(vector @ vector.T)) == pytest.approx(1.0, abs=1e-12)
    equal_eigenvalues = torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.0, 0.0], dtype=DOUBLE))
    assert float(ff.effective_dimensionality(equal_eigenvalues)) == pytest.approx(3.0, abs=1e-12)


def test_ed_is_scale_and_rotation_invariant():
    matrix = _random_psd(1, 6, 4)[0]
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, dtype=DOUBLE, generator=_generator(1)))
    moved = 7.5 * rotation @ matrix @ rotation.T
    assert float(ff.effective_dimensionality(moved)) == pytest.approx(float(ff.effective_dimensionality(matrix)),
                                                                       abs=1e-12)


def test_response_ed_equals_gram_ed():
    responses = torch.randn(4, 6, 20, generator=_generator(), dtype=DOUBLE)
    gram = responses @ responses.transpose(1, 2)
    assert float((ff.response_ed(responses) - ff.effective_dimensionality(gram)).abs().max()) < 1e-10


def test_ed_eps_keeps_zero_matrix_finite():
    assert float(ff.effective_dimensionality(torch.zeros(3, 3, dtype=DOUBLE), eps=1e-6)) == 0.0


def test_eigenvalue_gradient_matches_sympy_and_autograd():
    lam = sp.symbols("l1:5", positive=True)
    ed = sum(lam) ** 2 / sum(l**2 for l in lam)
    values = torch.tensor([0.2, 1.0, 3.0, 0.7], dtype=DOUBLE, requires_grad=True)
    (autograd,) = torch.autograd.grad(ff.ed_from_eigenvalues(values), values)
    closed = ff.ed_gradient_eigenvalues(values.detach())
    symbolic = [float(sp.diff(ed, l).subs(dict(zip(lam, values.tolist())))) for l in lam]
    np.testing.assert_allclose(closed.numpy(), autograd.numpy(), atol=1e-12)
    np.testing.assert_allclose(closed.numpy(), symbolic, atol=1e-12)


def test_matrix_gradient_matches_autograd():
    matrices = _random_psd(10, 5, 3).requires_grad_(True)
    (autograd,) = torch.autograd.grad(ff.effective_dimensionality(matrices).sum(), matrices)
    closed = ff.ed_gradient_matrix(matrices.detach())
    assert float((closed - autograd).abs().max()) < 1e-12
    assert float((closed * matrices.detach()).sum(dim=(1, 2)).abs().max()) < 1e-10


def test_response_gradient_matches_autograd():
    responses = torch.randn(3, 9, 4, generator=_generator(), dtype=DOUBLE, requires_grad=True)
    (autograd,) = torch.autograd.grad(ff.response_ed(responses).sum(), responses)
    assert float((ff.ed_gradient_responses(responses.detach()) - autograd).abs().max()) < 1e-12


def test_isotropic_formula_matches_matrix_ed():
    direction = torch.zeros(7, dtype=DOUBLE)
    direction[2] = 1.0
    for snr in [0.0, 0.1, 2.0, 50.0]:
        matrix = snr * torch.outer(direction, direction) + torch.eye(7, dtype=DOUBLE)
        assert float(ff.isotropic_signal_noise_ed(torch.tensor(snr, dtype=DOUBLE), 7)) == pytest.approx(
            float(ff.effective_dimensionality(matrix)), abs=1e-12)


def test_isotropic_formula_keeps_float64():
    snr = torch.tensor([0.3, 3.0], dtype=DOUBLE)
    assert ff.isotropic_signal_noise_ed(snr, 4).dtype == DOUBLE


def test_signal_to_noise_ratio_of_constructed_copies():
    noise = torch.randn(20000, 5, generator=_generator(), dtype=DOUBLE)
    mean = torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0], dtype=DOUBLE)  # squared norm 25
    snr = ff.signal_to_noise_ratio(mean + 0.5 * noise)  # noise variance 0.25 per unit
    assert float(snr) == pytest.approx(100.0, rel=0.03)


@pytest.mark.parametrize("call, message", [
    (lambda: ff.second_moment(torch.zeros(1, 3)), "at least m = 2"),
    (lambda: ff.effective_dimensionality(torch.zeros(2, 3)), "shape"),
    (lambda: ff.effective_dimensionality(torch.eye(2), method="svd"), "unknown method"),
    (lambda: ff.effective_dimensionality(torch.eye(2), eps=-1.0), "eps"),
    (lambda: ff.isotropic_signal_noise_ed(1.0, 0), "dim"),
])
def test_invalid_ed_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# === Noisy copies and the batched network === #


def test_noisy_copies_shape_rate_and_mean():
    inputs = torch.rand(2, 50, 30, generator=_generator(), dtype=DOUBLE) + 0.1
    copies = ff.noisy_copies(inputs, 40, 0.25, _generator(1))
    assert copies.shape == (2, 50, 40, 30)
    dropped = float((copies == 0).double().mean())
    assert dropped == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / copies.numel()))
    survivor_scale = copies[copies != 0] / inputs.unsqueeze(2).expand_as(copies)[copies != 0]
    assert float((survivor_scale - 1 / 0.75).abs().max()) < 1e-12


def test_noisy_copies_without_noise_repeat_the_input():
    inputs = torch.rand(4, 6, generator=_generator())
    copies = ff.noisy_copies(inputs, 3, 0.0)
    assert torch.equal(copies, inputs.unsqueeze(1).expand(4, 3, 6))


@pytest.mark.parametrize("n_copies, probability", [(0, 0.2), (2, 1.0), (2, -0.1)])
def test_noisy_copies_reject_bad_arguments(n_copies, probability):
    with pytest.raises(ValueError):
        ff.noisy_copies(torch.zeros(2, 3), n_copies, probability)


def test_random_semi_orthogonal_has_orthonormal_columns():
    q = ff.random_semi_orthogonal(12, 5, 3, _generator(), dtype=DOUBLE)
    assert q.shape == (3, 12, 5)
    assert float((q.transpose(1, 2) @ q - torch.eye(5, dtype=DOUBLE)).abs().max()) < 1e-12
    with pytest.raises(ValueError, match="cols <= rows"):
        ff.random_semi_orthogonal(3, 4, 1)


def test_layer_responses_match_torch_modules():
    stack = ff.init_layer_stack([6, 8, 5], [4, 3], 1, _generator(), dtype=DOUBLE)
    modules = torch.nn.Sequential(
        torch.nn.BatchNorm1d(6, affine=False), torch.nn.Linear(6, 8, bias=False), torch.nn.ReLU(),
        torch.nn.BatchNorm1d(8, affine=False), torch.nn.Linear(8, 5, bias=False), torch.nn.ReLU(),
    ).double().train()
    modules[1].weight.data = stack.weights[0][0].T.clone()
    modules[4].weight.data = stack.weights[1][0].T.clone()
    inputs = torch.randn(40, 6, generator=_generator(1), dtype=DOUBLE)
    ours = ff.layer_responses(inputs.unsqueeze(0), stack)[-1][0]
    with torch.no_grad():
        assert float((ours - modules(inputs)).abs().max()) < 1e-12


def test_calibrated_statistics_are_full_data_moments():
    stack = ff.init_layer_stack([4, 6, 3], [2, 2], 2, _generator(), dtype=DOUBLE)
    inputs = torch.randn(2, 100, 4, generator=_generator(1), dtype=DOUBLE)
    calibrated = ff.calibrate_statistics(inputs, stack, 1, 0.0, chunk=7)
    assert torch.allclose(calibrated.means[0], inputs.mean(dim=1, keepdim=True))
    assert torch.allclose(calibrated.variances[0], inputs.var(dim=1, keepdim=True))
    first = ff.layer_responses(inputs, ff.LayerStack(stack.weights[:1], stack.projections[:1],
                                                     calibrated.means[:1], calibrated.variances[:1]))[0]
    assert torch.allclose(calibrated.means[1], first.mean(dim=1, keepdim=True))
    assert torch.allclose(calibrated.variances[1], first.var(dim=1, keepdim=True))


def test_within_ed_of_identical_copies_is_one():
    codes = torch.rand(3, 5, 1, 4, generator=_generator(), dtype=DOUBLE).expand(3, 5, 6, 4)
    assert float((ff.within_input_ed(codes) - 1).abs().max()) < 1e-12


def test_compression_terms_match_direct_computation():
    hidden = [torch.rand(2, 4 * 3, 5, generator=_generator(), dtype=DOUBLE)]
    projection = [torch.eye(5, dtype=DOUBLE)[:, :3].expand(2, 5, 3)]
    within, across = ff.compression_terms(hidden, projection, 3, eps=0.0)
    codes = hidden[0][..., :3].reshape(2, 4, 3, 3)
    expected_within = ff.response_ed(codes).mean(dim=1)
    expected_across = ff.response_ed(codes.mean(dim=2))
    assert torch.allclose(within[:, 0], expected_within)
    assert torch.allclose(across[:, 0], expected_across)


def test_replicates_do_not_share_gradients():
    stack = ff.init_layer_stack([5, 6], [3], 2, _generator(), dtype=DOUBLE)
    inputs = torch.rand(2, 8 * 4, 5, generator=_generator(1), dtype=DOUBLE)

    def gradient_of_first(weights):
        leaf = [w.clone().requires_grad_(True) for w in weights]
        hidden = ff.layer_responses(inputs, stack, leaf)
        within, across = ff.compression_terms(hidden, stack.projections, 4, 1e-6)
        loss = ff.compression_loss(within, across, torch.tensor([0.5, 0.5], dtype=DOUBLE), 0.5)
        return torch.autograd.grad(loss, leaf)[0][0]

    changed = [stack.weights[0].clone()]
    changed[0][1] += 1.0
    assert torch.allclose(gradient_of_first(stack.weights), gradient_of_first(changed))


def test_training_spreads_inputs_apart():
    inputs = torch.rand(1, 120, 10, generator=_generator(), dtype=DOUBLE)
    stack = ff.init_layer_stack([10, 32], [8], 1, _generator(1), dtype=DOUBLE)
    config = ff.StochasticFFConfig(n_copies=6, epochs=15, batch_size=40, learning_rate=1e-2)
    trained = ff.train_stochastic_ff(inputs, stack, config, torch.tensor([0.5], dtype=DOUBLE), _generator(2))
    before = ff.calibrate_statistics(inputs, stack, 6, 0.2, _generator(3))
    after = ff.calibrate_statistics(inputs, trained, 6, 0.2, _generator(3))
    _, across_before = ff.measure_layer_ed(inputs, before, 6, 0.2, _generator(4))
    _, across_after = ff.measure_layer_ed(inputs, after, 6, 0.2, _generator(4))
    assert float(across_after) > 1.5 * float(across_before)
    assert trained.history["across"].shape == (15, 1, 1)


def test_select_and_concatenate_replicates_round_trip():
    first = ff.init_layer_stack([3, 4], [2], 2, _generator(0))
    second = ff.init_layer_stack([3, 4], [2], 1, _generator(1))
    both = ff.concatenate_replicates(first, second)
    assert both.replicates == 3
    assert torch.equal(ff.select_replicates(both, slice(2, 3)).weights[0], second.weights[0])


def test_last_layer_features_need_calibration():
    stack = ff.init_layer_stack([3, 4], [2], 1, _generator())
    with pytest.raises(ValueError, match="calibrate_statistics"):
        ff.last_layer_features(torch.zeros(1, 5, 3), stack, 2, 0.2)


# === Read-outs === #


def test_energy_logits_mean_and_variance_form():
    outputs = torch.randn(7, 9, 4, generator=_generator(), dtype=DOUBLE)
    expected = 9 / 8 * (outputs.mean(1) ** 2 + outputs.var(1, unbiased=False))
    assert torch.allclose(ff.energy_logits(outputs), expected)
    assert torch.equal(ff.energy_logits(outputs[:, :1]), outputs[:, 0] ** 2)


def test_mean_readout_equals_mean_of_outputs():
    features = torch.randn(2, 5, 3, 4, generator=_generator(), dtype=DOUBLE)
    weight = torch.randn(2, 4, 6, generator=_generator(1), dtype=DOUBLE)
    bias = torch.randn(2, 1, 6, generator=_generator(2), dtype=DOUBLE)
    outputs = torch.einsum("rncd,rdk->rnck", features, weight) + bias.unsqueeze(2)
    assert torch.allclose(ff.readout_logits(features, weight, bias, "mean"), outputs.mean(2))
    assert torch.allclose(ff.readout_logits(features, weight, bias, "energy"), ff.energy_logits(outputs))


def _two_blobs(n: int = 200, seed: int = 0):
    generator = _generator(seed)
    labels = torch.randint(0, 2, (1, n), generator=generator)
    centres = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=DOUBLE)
    inputs = centres[labels] + 0.3 * torch.randn(1, n, 3, generator=generator, dtype=DOUBLE)
    return inputs, labels


@pytest.mark.parametrize("mode", ["energy", "mean"])
def test_train_readout_separates_blobs(mode):
    inputs, labels = _two_blobs()
    weight, bias = ff.train_readout(inputs.unsqueeze(2), labels, 2, mode, epochs=30, learning_rate=1e-2,
                                    dropout=0.0, generator=_generator(1))
    assert float(ff.readout_correct(inputs.unsqueeze(2), labels, weight, bias, mode).double().mean()) > 0.97


def test_linear_probe_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    generator = _generator(3)
    labels = torch.randint(0, 3, (1, 150), generator=generator)
    inputs = torch.eye(3, dtype=DOUBLE)[labels] + torch.randn(1, 150, 3, generator=generator, dtype=DOUBLE)
    weight, bias = ff.fit_linear_probe(inputs, labels, 3)
    # Three classes, so scikit-learn fits the same multinomial objective with penalty ||W||^2 / 2.
    reference = LogisticRegression(tol=1e-10, max_iter=10_000).fit(inputs[0].numpy(), labels[0].numpy())
    np.testing.assert_allclose(weight[0].T.numpy(), reference.coef_, atol=1e-4)
    centred_bias = bias[0, 0] - bias[0, 0].mean()  # softmax ignores a common shift of the biases
    np.testing.assert_allclose(centred_bias.numpy(), reference.intercept_ - reference.intercept_.mean(), atol=1e-4)


# === Baselines === #


def test_label_embedding_and_wrong_labels():
    labels = torch.randint(0, 10, (5, 40), generator=_generator())
    assert not torch.any(ff.wrong_labels(labels, 10, _generator(1)) == labels)
    embedded = ff.embed_label(torch.zeros(5, 40, 3), labels, 10)
    assert torch.equal(embedded[..., 3:].argmax(-1), labels)


def test_rms_normalise_and_goodness():
    h = torch.tensor([[3.0, 4.0]], dtype=DOUBLE)
    assert float(ff.ff_goodness(h)) == 25.0
    assert float(ff.rms_normalise(h).pow(2).mean()) == pytest.approx(1.0, abs=1e-6)


def test_forward_forward_and_backprop_learn_blobs():
    inputs, labels = _two_blobs(300, seed=5)
    weights, biases = ff.train_forward_forward(inputs.float(), labels, [32, 32], 2, epochs=20,
                                               learning_rate=3e-3, generator=_generator(6))
    scores = ff.forward_forward_scores(inputs.float(), weights, biases, 2)
    assert scores.shape == (1, 300, 2)
    assert float(ff.accuracy(scores, labels)) > 0.9
    weights, biases = ff.train_backprop_mlp(inputs.float(), labels, [16], 2, epochs=20, learning_rate=1e-2,
                                            generator=_generator(7))
    with torch.no_grad():
        assert float(ff.accuracy(ff.backprop_logits(inputs.float(), weights, biases), labels)) > 0.95


# === Evaluation === #


def test_stratified_splits_are_disjoint_and_balanced():
    labels = np.repeat(np.arange(4), 25)
    train, test = ff.stratified_split_indices(labels, 0.2, [0, 1])
    assert train.shape == (2, 80)
    assert test.shape == (2, 20)
    for r in range(2):
        assert not set(train[r]) & set(test[r])
        assert np.bincount(labels[test[r]]).tolist() == [5, 5, 5, 5]


def test_paired_accuracy_difference_uses_larger_variance():
    first = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    second = torch.tensor([[1, 0, 0, 1], [1, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    mean, stderr = ff.paired_accuracy_difference(first, second)
    assert mean == pytest.approx(0.25)
    # Every replicate differs by 0.25, so the spread is 0 and the McNemar term sets the error:
    # d_10 = 0.25, d_01 = 0, variance (0.25 - 0.0625) / 4 per replicate, divided by R = 3.
    assert stderr == pytest.approx(math.sqrt(0.046875 / 3))


def test_paired_accuracy_fractional_correctness():
    # Correctness averaged over noisy evaluations: the test term is the variance over inputs of
    # first - second, here differences (0.5, 0, 0.25, 0) with mean 0.1875 in each replicate.
    first = torch.tensor([[1.0, 1.0, 0.5, 1.0]] * 2)
    second = torch.tensor([[0.5, 1.0, 0.25, 1.0]] * 2)
    mean, stderr = ff.paired_accuracy_difference(first, second)
    differences = np.array([0.5, 0.0, 0.25, 0.0])
    assert mean == pytest.approx(differences.mean())
    assert stderr == pytest.approx(math.sqrt(differences.var() / 4 / 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ff.paired_accuracy_difference(first * 2, second)


def test_paired_difference_matches_manual():
    mean, stderr = ff.paired_difference([0.9, 0.8, 0.7], [0.85, 0.8, 0.6])
    differences = np.array([0.05, 0.0, 0.1])
    assert mean == pytest.approx(differences.mean())
    assert stderr == pytest.approx(differences.std(ddof=1) / math.sqrt(3))


# === Mutation tests: the chapter must notice a broken formula early === #


@pytest.mark.chapters
def test_covariance_instead_of_second_moment_fails_gram_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "forward_forward_ed", "forward_forward/ed.py",
        "    gram = responses.transpose(-1, -2) @ responses\n",
        "    centred = responses - responses.mean(dim=-2, keepdim=True)\n"
        "    gram = centred.transpose(-1, -2) @ centred\n",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["ffed.ed-gram-duality"]


@pytest.mark.chapters
def test_dropping_the_noise_fails_drop_rate_claim(tmp_path):
    result, entry = run_with_patched_library(
        tmp_path, "forward_forward_ed", "forward_forward/stochastic.py",
        "    keep = uniform >= drop_probability\n",
        "    keep = uniform >= 0\n",
    )
    assert result.returncode == 1
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["ffed.copies-drop-rate"]
