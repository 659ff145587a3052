"""U-statistic risk estimators for supervised contrastive learning from one labelled pool.

Contrastive tuples (anchor, positive of the same class, ``k`` negatives of
other classes) built from one finite pool share points, so the empirical
risk over all of them is a U-statistic.  This package provides

- :mod:`~negsamp.ustat.shapes`: the collision probability, per-class
  effective sizes and the sample-complexity shapes of the analyses;
- :mod:`~negsamp.ustat.evaluator`: an exact, fast evaluator of the complete
  class-wise U-statistics of a hinge loss, the exact population risk of a
  discrete world, and brute-force references;
- :mod:`~negsamp.ustat.sampling`: discrete worlds, pools, collision-free
  tuple sampling and the incomplete (sub-sampled) estimator;
- :mod:`~negsamp.ustat.hoeffding`: the Hoeffding decomposition and exact
  variance of a class-wise U-statistic;
- :mod:`~negsamp.ustat.scaling`: the deviations each analysis controls and
  bootstrap slopes of their scaling.

References
----------
.. [1] N. M. Hieu and A. Ledent, "Generalization analysis for supervised
   contrastive representation learning under non-IID settings", ICML 2025,
   arXiv:2505.04937.
.. [2] N. M. Hieu and A. Ledent, "A refined generalization analysis for
   extreme multi-class supervised contrastive representation learning",
   arXiv:2605.07596, 2026.
"""

from .evaluator import (
    ClassMoments,
    brute_force_class_ustatistics,
    brute_force_evaluation_count,
    brute_force_population_risks,
    complete_class_ustatistics,
    hieu_ledent_estimate,
    population_class_risks,
)
from .hoeffding import (
    first_order_variance,
    hinge_kernel_tensor,
    hoeffding_components,
    overlap_probabilities,
    two_sample_ustat_variance,
)
from .sampling import (
    DiscreteWorld,
    incomplete_ustatistic_moments,
    make_discrete_world,
    sample_collision_free_tuples,
    sample_counts,
    sample_population_tuples,
    tuple_losses,
)
from .scaling import Deviations, bootstrap_loglog_slope, uniform_deviations
from .shapes import (
    class_size_threshold,
    collision_probability,
    effective_class_sizes,
    sample_complexity_classwise,
    sample_complexity_hl2025,
    sample_complexity_new_reconstructed,
    sample_complexity_refined,
    small_class_mass,
    zipf_class_probabilities,
)

__all__ = [
    "ClassMoments",
    "Deviations",
    "DiscreteWorld",
    "bootstrap_loglog_slope",
    "brute_force_class_ustatistics",
    "brute_force_evaluation_count",
    "brute_force_population_risks",
    "class_size_threshold",
    "collision_probability",
    "complete_class_ustatistics",
    "effective_class_sizes",
    "first_order_variance",
    "hieu_ledent_estimate",
    "hinge_kernel_tensor",
    "hoeffding_components",
    "incomplete_ustatistic_moments",
    "make_discrete_world",
    "overlap_probabilities",
    "population_class_risks",
    "sample_collision_free_tuples",
    "sample_complexity_classwise",
    "sample_complexity_hl2025",
    "sample_complexity_new_reconstructed",
    "sample_complexity_refined",
    "sample_counts",
    "sample_population_tuples",
    "small_class_mass",
    "tuple_losses",
    "two_sample_ustat_variance",
    "uniform_deviations",
    "zipf_class_probabilities",
]
