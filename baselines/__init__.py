"""Baselines and controls of the benchmark, all behind the model contract of ``perturbench.models.base``.

Closed-form baselines live here (``simple``: control, mean, additive; ``linear``: ridge, GRN
ridge, two-stage, linear embedding). The GEARS wrapper (``baselines.gears_model``) needs the
``gears`` extra and is imported only through the model registry.
"""

from baselines.linear import (
    GRNRidgeConfig,
    GRNRidgeModel,
    LinearEmbeddingConfig,
    LinearEmbeddingModel,
    RidgeConfig,
    RidgeModel,
    TwoStageConfig,
    TwoStageModel,
    grn_ridge_solve,
    linear_embedding_solve,
    output_laplacian,
    ridge_solve,
    top_eigenvectors,
)
from baselines.simple import AdditiveModel, BaselineError, BaselineModel, ControlModel, MeanModel, NoParams, multi_hot

__all__ = [
    "AdditiveModel",
    "BaselineError",
    "BaselineModel",
    "ControlModel",
    "GRNRidgeConfig",
    "GRNRidgeModel",
    "LinearEmbeddingConfig",
    "LinearEmbeddingModel",
    "MeanModel",
    "NoParams",
    "RidgeConfig",
    "RidgeModel",
    "TwoStageConfig",
    "TwoStageModel",
    "grn_ridge_solve",
    "linear_embedding_solve",
    "multi_hot",
    "output_laplacian",
    "ridge_solve",
    "top_eigenvectors",
]
