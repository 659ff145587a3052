"""Forward-Forward learning with and without negative samples.

* :mod:`.ed`: effective dimensionality (participation ratio) of uncentred
  second moments, its bounds, gradients and closed forms;
* :mod:`.stochastic`: noisy copies, the batched BatchNorm-ReLU network and
  the layer-local ED-compression objective of Zhu et al. (2025);
* :mod:`.readout`: energy and linear read-outs over noisy copies;
* :mod:`.baselines`: Forward-Forward with label-embedded negatives
  (Hinton, 2022) and a backprop MLP;
* :mod:`.evaluation`: splits per seed and paired comparisons.

References
----------
.. [1] G. Hinton, "The Forward-Forward algorithm: Some preliminary
   investigations", arXiv:2212.13345, 2022.
.. [2] Z. Zhu, Y. Qi, H. Ma, W. Lu and J. Feng, "Stochastic Forward-Forward
   learning through representational dimensionality compression", NeurIPS 2025.
"""

from .baselines import (
    backprop_logits,
    embed_label,
    ff_goodness,
    forward_forward_scores,
    rms_normalise,
    train_backprop_mlp,
    train_forward_forward,
    wrong_labels,
)
from .ed import (
    covariance,
    ed_from_eigenvalues,
    ed_gradient_eigenvalues,
    ed_gradient_matrix,
    ed_gradient_responses,
    effective_dimensionality,
    isotropic_signal_noise_ed,
    response_ed,
    second_moment,
    signal_to_noise_ratio,
)
from .evaluation import accuracy, paired_accuracy_difference, paired_difference, stratified_split_indices
from .readout import (
    READOUT_MODES,
    energy_logits,
    fit_linear_probe,
    linear_probe_objective,
    readout_correct,
    readout_logits,
    train_readout,
)
from .stochastic import (
    LayerStack,
    StochasticFFConfig,
    across_input_ed,
    calibrate_statistics,
    compression_loss,
    compression_terms,
    concatenate_replicates,
    init_layer_stack,
    last_layer_features,
    layer_responses,
    measure_layer_ed,
    noisy_copies,
    random_semi_orthogonal,
    select_replicates,
    train_stochastic_ff,
    within_input_ed,
)

__all__ = [
    "LayerStack",
    "READOUT_MODES",
    "StochasticFFConfig",
    "accuracy",
    "across_input_ed",
    "backprop_logits",
    "calibrate_statistics",
    "compression_loss",
    "compression_terms",
    "concatenate_replicates",
    "covariance",
    "ed_from_eigenvalues",
    "ed_gradient_eigenvalues",
    "ed_gradient_matrix",
    "ed_gradient_responses",
    "effective_dimensionality",
    "embed_label",
    "energy_logits",
    "ff_goodness",
    "fit_linear_probe",
    "forward_forward_scores",
    "init_layer_stack",
    "isotropic_signal_noise_ed",
    "last_layer_features",
    "layer_responses",
    "linear_probe_objective",
    "measure_layer_ed",
    "noisy_copies",
    "paired_accuracy_difference",
    "paired_difference",
    "random_semi_orthogonal",
    "readout_correct",
    "readout_logits",
    "response_ed",
    "rms_normalise",
    "second_moment",
    "select_replicates",
    "signal_to_noise_ratio",
    "stratified_split_indices",
    "train_backprop_mlp",
    "train_forward_forward",
    "train_readout",
    "train_stochastic_ff",
    "within_input_ed",
    "wrong_labels",
]
