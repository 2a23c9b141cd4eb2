"""perturbench: benchmark Perturb-seq perturbation-response prediction against linear baselines.

The light core is imported eagerly; models, the report and GEARS are reached through
:func:`perturbench.models.registry.get_model` / their modules so heavy extras stay optional.
"""

from perturbench.data.conditions import CTRL, ConditionError, canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.models.base import FitContext, Model, Prediction
from perturbench.models.registry import MODELS, get_model, model_names

__all__ = [
    "CTRL",
    "MODELS",
    "ConditionError",
    "DatasetError",
    "FitContext",
    "Model",
    "PerturbDataset",
    "Prediction",
    "canonical_condition",
    "get_model",
    "model_names",
]
