"""``precomputed``: predictions another tool made (scGPT, STATE, CPA, …) joining the benchmark.

File format, one h5ad per dataset / feature set / split seed: obs_names = the split's test
conditions (canonical names, ``A+B`` with genes sorted; GEARS-style ``A+ctrl`` is accepted),
var_names = the dataset's genes (any order; reordered to the dataset's), X = predicted mean
expression on the truth's scale (the dataset's log-normalized scale; changes for delta-only data).
A missing or an extra condition or gene is an error naming the file and the field.

``path`` (the one hyper-parameter) may hold ``{dataset}``, ``{featureset}`` and ``{seed}``,
filled in from the fit context: ``external/scgpt/{dataset}/{featureset}/seed{seed}.h5ad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import anndata as ad
import numpy as np
import scipy.sparse as sp

from perturbench.data.conditions import canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.models.base import FitContext, Prediction


@dataclass(frozen=True)
class PrecomputedConfig:
    path: str = ""  # the prediction file; may hold {dataset}, {featureset}, {seed}

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("PrecomputedConfig.path: the prediction file is required")


def read_external_prediction(path: str | Path, *, conditions: Sequence[str], genes: Sequence[str],
                             model: str) -> Prediction:
    """The h5ad at ``path`` as a :class:`Prediction` for exactly ``conditions`` × ``genes``."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: prediction file not found")
    adata = ad.read_h5ad(path)
    names = [canonical_condition(c, where=f"{path}: obs_names") for c in adata.obs_names]
    _same(path, "obs_names", "conditions", names, conditions)
    _same(path, "var_names", "genes", list(adata.var_names), genes)
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    rows = [names.index(c) for c in conditions]
    cols = [list(adata.var_names).index(g) for g in genes] if list(adata.var_names) != list(genes) else slice(None)
    mean = np.asarray(x, dtype=np.float64)[rows][:, cols]
    if not np.all(np.isfinite(mean)):
        raise DatasetError(f"{path}: X: non-finite predicted values")
    return Prediction(model=model, conditions=list(conditions), genes=list(genes), mean=mean)


def _same(path: Path, field: str, what: str, found: Sequence[str], wanted: Sequence[str]) -> None:
    if len(set(found)) != len(found):
        raise DatasetError(f"{path}: {field}: repeated {what}")
    missing, extra = sorted(set(wanted) - set(found)), sorted(set(found) - set(wanted))
    if missing or extra:
        raise DatasetError(f"{path}: {field}: {len(missing)} missing {what} {missing[:5]}, "
                           f"{len(extra)} extra {what} {extra[:5]}")


class PrecomputedModel:
    """Registry key ``precomputed``: reads the prediction file at predict time (module docstring)."""

    name = "precomputed"
    Config = PrecomputedConfig

    def __init__(self, **params: str) -> None:
        self.config = PrecomputedConfig(**params)
        self._path: Path | None = None
        self._genes: list[str] = []

    def fit(self, train: PerturbDataset, *, context: FitContext) -> Self:
        fields = {"dataset": context.dataset, "featureset": context.featureset, "seed": context.seed}
        self._path = Path(self.config.path.format(**fields))
        self._genes = list(train.genes)
        return self

    def predict(self, conditions: Sequence[str]) -> Prediction:
        if self._path is None:
            raise DatasetError("precomputed: predict called before fit")
        return read_external_prediction(self._path, conditions=conditions, genes=self._genes, model=self.name)
