"""The model registry: one registration line per model, declaring its traits.

A model's module is imported only when the model is built (:func:`get_model`) or its
hyper-parameters are checked (:func:`check_params`), so heavy extras (torch, GEARS) stay
optional and importing the registry imports no model. The traits are what the workflow, the
report and the contract test read instead of lists of names:

- ``kind``: ``control`` (no learning: the no-change reference), ``baseline`` (closed-form /
  simple) or ``learned`` (trained networks, and predictions made by other tools);
- ``needs_cells``: runs only on datasets with single cells;
- ``reads_cells``: its fit reads ``train.cells`` when there are cells (every other model is fitted
  from the pseudobulk alone, so its job never loads the cells);
- ``training_curves``: writes ``loss_curves.tsv`` into ``FitContext.log_dir``;
- ``uncertainty``: predicts a per-gene σ (``layers['logvar']``), so it gets a calibration row;
- ``extra``: the optional dependency group it needs (``pip install -e '.[extra]'``);
- ``quick_params``: hyper-parameters for a seconds-long smoke run (the contract test).

Models from other packages register through the entry-point group ``perturbench.models``: each
entry point names a :class:`ModelSpec` object (``mypkg.perturbench:SPEC``).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

from perturbench.errors import ConfigError, MissingExtraError

ModelKind = Literal["control", "baseline", "learned"]
ENTRY_POINT_GROUP = "perturbench.models"


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: where its class lives and its traits (module docstring)."""

    name: str
    target: str  # "module:Class"; the class takes its ``Config`` dataclass fields as keywords
    kind: ModelKind
    needs_cells: bool = False
    reads_cells: bool = False
    training_curves: bool = False
    uncertainty: bool = False
    extra: str | None = None
    quick_params: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]


_BUILTIN = (
    ModelSpec("control", "baselines.simple:ControlModel", "control"),
    ModelSpec("mean", "baselines.simple:MeanModel", "baseline"),
    ModelSpec("additive", "baselines.simple:AdditiveModel", "baseline"),
    ModelSpec("ridge", "baselines.linear:RidgeModel", "baseline"),
    ModelSpec("grn_ridge", "baselines.linear:GRNRidgeModel", "baseline"),
    ModelSpec("two_stage", "baselines.linear:TwoStageModel", "baseline"),
    ModelSpec("linear_embedding", "baselines.linear:LinearEmbeddingModel", "baseline"),
    ModelSpec("precomputed", "baselines.precomputed:PrecomputedModel", "learned"),
    ModelSpec("gears", "baselines.gears_model:GEARSModel", "learned", needs_cells=True, reads_cells=True,
              extra="gears", quick_params={"epochs": 1, "hidden_size": 8}),
    ModelSpec("dual_stream_mamba", "perturbench.models.dual_stream:DualStreamMambaModel", "learned",
              reads_cells=True, training_curves=True, uncertainty=True, quick_params={"epochs": 1, "d_model": 8}),
)


@cache
def registered() -> dict[str, ModelSpec]:
    """Name → :class:`ModelSpec`: the built-in models, then those of installed entry points."""
    specs = {spec.name: spec for spec in _BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ModelSpec):
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}): expected a ModelSpec, got {type(spec).__name__}")
        if spec.name in specs:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}): model {spec.name!r} is already registered")
        specs[spec.name] = spec
    return specs



def model_names() -> list[str]:
    return list(registered())


def model_spec(name: str) -> ModelSpec:
    specs = registered()
    if name not in specs:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(specs)}")
    return specs[name]


def model_class(name: str) -> type:
    """The class of model ``name`` (imports its module; a missing extra names the extra)."""
    spec = model_spec(name)
    module_name, cls_name = spec.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if err.name == module_name:
            raise
        extra = spec.extra or "test"
        raise MissingExtraError(
            f"model {name!r} needs an optional dependency ({err.name}); install it with: pip install -e '.[{extra}]'"
        ) from err
    return getattr(module, cls_name)


def check_params(name: str, params: dict[str, Any], *, where: str | None = None) -> None:
    """Raise :class:`ConfigError` naming ``where`` (e.g. the run) and the key when ``params`` are not
    hyper-parameters of model ``name`` or a value is refused by its ``Config`` dataclass."""
    where = where or f"model {name!r}"
    if name not in registered():
        raise ConfigError(f"{where}: model: unknown model {name!r}; known models: {', '.join(registered())}")
    config = getattr(model_class(name), "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ConfigError(f"{where}: model {name!r} declares no Config dataclass of hyper-parameters")
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{where}: params: unknown hyper-parameter(s) {unknown}; known: {sorted(known)}")
    try:
        config(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: params: {err}") from None


def resolved_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every hyper-parameter of model ``name`` with ``params`` applied (defaults included)."""
    check_params(name, params)
    return dataclasses.asdict(model_class(name).Config(**params))


def get_model(name: str, **params: Any) -> Any:
    """Instantiate model ``name`` with hyper-parameters ``params`` (checked first)."""
    check_params(name, params)
    return model_class(name)(**params)
