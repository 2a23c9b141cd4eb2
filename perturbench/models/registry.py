"""The model registry: one line per model, imported lazily so heavy extras stay optional."""

from __future__ import annotations

import importlib
from typing import Any

from perturbench.models.base import Model

# name -> "module:Class". Classes take keyword hyper-parameters (their config dataclass fields).
MODELS: dict[str, str] = {
    "control": "baselines.simple:ControlModel",
    "mean": "baselines.simple:MeanModel",
    "additive": "baselines.simple:AdditiveModel",
    "ridge": "baselines.linear:RidgeModel",
    "grn_ridge": "baselines.linear:GRNRidgeModel",
    "two_stage": "baselines.linear:TwoStageModel",
    "linear_embedding": "baselines.linear:LinearEmbeddingModel",
    "gears": "baselines.gears_model:GEARSModel",
    "dual_stream_mamba": "perturbench.models.dual_stream:DualStreamMambaModel",
}

#: models that read cells (``train.cells``); every other model is fitted from the pseudobulk
#: alone, so its job never loads the cells.
CELL_MODELS = frozenset({"gears", "dual_stream_mamba"})


def model_names() -> list[str]:
    return list(MODELS)


def get_model(name: str, **params: Any) -> Model:
    """Instantiate model ``name`` with hyper-parameters ``params``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    module_name, cls_name = MODELS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        extra = "gears" if name == "gears" else "test"
        raise ImportError(
            f"model {name!r} needs an optional dependency ({err.name}); "
            f"install it with: pip install -e '.[{extra}]'"
        ) from err
    return getattr(module, cls_name)(**params)
