"""The model contract: ``fit(train, context=...) -> self``, ``predict(conditions) -> Prediction``.

Every model — control, the linear baselines, GEARS, the dual-stream Mamba network — goes through
this one contract, so one contract test and one metric pipeline cover them all. Models never
own the data module, the workflow's file layout or the device policy: what they may use is in
:class:`FitContext`.

Prediction file format (``predictions/{model}.h5ad``): obs_names = predicted test conditions
(canonical names), var_names = genes (the dataset's order), X = predicted mean expression on
the truth's scale (float32 like the stored pseudobulks, so a prediction equal to the control row
stays equal to it and a predicted change of exactly zero stays zero), optional ``layers['logvar']`` = per-gene predicted log-variance,
optional ``layers['logvar_raw']`` = the log-variance before calibration on validation conditions,
``uns['model']`` = model name, ``uns['skipped']`` = condition → reason for test conditions the
model could not predict (never silently dropped), ``uns['run']`` = the run record of
:mod:`perturbench.provenance` (its ``params`` stored as JSON text, since h5ad holds no ``None``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self

import anndata as ad
import numpy as np
import pandas as pd

from perturbench.data.contract import PerturbDataset
from perturbench.data.io import write_h5ad_atomic
from perturbench.graphs import GeneGraph


@dataclass(frozen=True)
class FitContext:
    """What a model may use besides its training data."""

    seed: int = 0
    val: PerturbDataset | None = None  # validation conditions (for early stopping / choices only)
    go_graph: GeneGraph | None = None  # GO Jaccard similarity graph over gene symbols
    go_table: Path | None = None  # the GO annotation table the graph came from (GEARS rebuilds its own files)
    workdir: Path | None = None  # scratch folder for models that need files (GEARS)
    device: str = "cpu"
    log_dir: Path | None = None  # where training curves / checkpoints go, when the model has any
    dataset: str = ""  # the dataset's name and the feature set (labels, e.g. for precomputed predictions)
    featureset: str = ""


@dataclass
class Prediction:
    """Predicted mean expression for some conditions (see module docstring for the file format)."""

    model: str
    conditions: list[str]
    genes: list[str]
    mean: np.ndarray  # (n_conditions, n_genes)
    logvar: np.ndarray | None = None  # (n_conditions, n_genes) or None
    skipped: dict[str, str] = field(default_factory=dict)
    # importance of each gene for one output gene: {"output_gene": g, "genes": [...], "values": [...]}
    attribution: dict | None = None
    run: dict | None = None  # the run record (perturbench.provenance), when the workflow made the file
    logvar_raw: np.ndarray | None = None  # (n_conditions, n_genes): log-variance before calibration, or None

    def __post_init__(self) -> None:
        shape = (len(self.conditions), len(self.genes))
        if self.mean.shape != shape:
            raise ValueError(f"{self.model}: prediction shape {self.mean.shape} != {shape}")
        for name in ("logvar", "logvar_raw"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{self.model}: {name} shape {value.shape} != {shape}")
        if not np.all(np.isfinite(self.mean)):
            raise ValueError(f"{self.model}: non-finite predicted expression")

    def to_anndata(self) -> ad.AnnData:
        adata = ad.AnnData(
            X=self.mean.astype(np.float32),
            obs=pd.DataFrame(index=pd.Index(self.conditions, dtype=str)),
            var=pd.DataFrame(index=pd.Index(self.genes, dtype=str)),
        )
        if self.logvar is not None:
            adata.layers["logvar"] = self.logvar.astype(np.float32)
        if self.logvar_raw is not None:
            adata.layers["logvar_raw"] = self.logvar_raw.astype(np.float32)
        adata.uns["model"] = self.model
        adata.uns["skipped"] = dict(self.skipped)
        if self.attribution is not None:
            adata.uns["attribution"] = dict(self.attribution)
        if self.run is not None:
            adata.uns["run"] = {**self.run, "params": json.dumps(self.run["params"], sort_keys=True)}
        return adata

    def write(self, path: str | Path) -> None:
        write_h5ad_atomic(self.to_anndata(), path)

    @classmethod
    def read(cls, path: str | Path) -> Prediction:
        adata = ad.read_h5ad(path)
        for key in ("model",):
            if key not in adata.uns:
                raise ValueError(f"{path}: prediction file lacks uns[{key!r}]")
        logvar, raw = (np.asarray(adata.layers[k]) if k in adata.layers else None for k in ("logvar", "logvar_raw"))
        return cls(
            model=str(adata.uns["model"]),
            conditions=list(adata.obs_names),
            genes=list(adata.var_names),
            mean=np.asarray(adata.X, dtype=np.float64),
            logvar=logvar,
            skipped={str(k): str(v) for k, v in dict(adata.uns.get("skipped", {})).items()},
            attribution=_read_attribution(adata.uns.get("attribution")),
            run=_read_run(adata.uns.get("run")),
            logvar_raw=raw,
        )

    @staticmethod
    def read_run(path: str | Path) -> dict | None:
        """Only the run record ``uns['run']`` of a prediction file (None without one), not its arrays."""
        import h5py

        with h5py.File(path, "r") as handle:
            return _read_run(ad.io.read_elem(handle["uns/run"])) if "uns/run" in handle else None


def _read_run(raw: dict | None) -> dict | None:
    """``uns['run']`` as plain Python values, ``params`` decoded from its JSON text."""
    if raw is None:
        return None
    plain = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in raw.items()}
    plain["params"] = json.loads(str(raw["params"]))
    plain["versions"] = {str(k): str(v) for k, v in dict(raw.get("versions", {})).items()}
    return plain


def _read_attribution(raw: dict | None) -> dict | None:
    if raw is None:
        return None
    return {
        "output_gene": str(raw["output_gene"]),
        "genes": [str(g) for g in raw["genes"]],
        "values": [float(v) for v in raw["values"]],
    }


class Model(Protocol):
    """What every registered model implements."""

    name: str

    def fit(self, train: PerturbDataset, *, context: FitContext) -> Self: ...

    def predict(self, conditions: Sequence[str]) -> Prediction: ...


def most_variable_gene(train: PerturbDataset) -> str:
    """The output gene whose training pseudobulk varies most across perturbations (ties: first)."""
    values = train.expression(train.conditions)
    return train.genes[int(np.argmax(values.var(axis=0)))]


def attribution_record(model: object, train: PerturbDataset) -> dict | None:
    """Attributions of a fitted model for its most variable output gene, when it provides them.

    Models may define ``attributions(output_gene) -> dict[gene, importance]`` (|W| for linear
    models, input gradients for the dual-stream model); the record is stored in the prediction.
    """
    method = getattr(model, "attributions", None)
    if method is None or not train.conditions:
        return None
    gene = most_variable_gene(train)
    values = method(gene)
    ordered = sorted(values)
    return {"output_gene": gene, "genes": ordered, "values": [float(values[g]) for g in ordered]}
