"""perturbench: benchmark Perturb-seq perturbation-response prediction against linear baselines.

Importing the package (or :mod:`perturbench.data`, :mod:`perturbench.metrics`) imports neither
torch nor any model: the model registry and the contract are reached lazily through the names
below, and a model's module is imported only when it is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from perturbench.data.conditions import CTRL, ConditionError, canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.errors import ConfigError, PerturbenchError

_LAZY = {
    "FitContext": "perturbench.models.base",
    "Model": "perturbench.models.base",
    "Prediction": "perturbench.models.base",
    "ModelSpec": "perturbench.models.registry",
    "get_model": "perturbench.models.registry",
    "model_names": "perturbench.models.registry",
}

__all__ = [
    "CTRL",
    "ConditionError",
    "ConfigError",
    "DatasetError",
    "PerturbDataset",
    "PerturbenchError",
    "canonical_condition",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'perturbench' has no attribute {name!r}")
