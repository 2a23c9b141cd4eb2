"""Save and load a :class:`PerturbDataset` as a folder of two h5ad files.

``pseudobulk.h5ad`` is the dataset contract's pseudobulk (conditions × genes); ``cells.h5ad``
holds the cells, or zero cells for pseudobulk-only sources (so every dataset has the same files
and Snakemake rules need no special cases). Both are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbench.data.contract import PerturbDataset
from perturbench.data.io import write_h5ad_atomic

PSEUDOBULK = "pseudobulk.h5ad"
CELLS = "cells.h5ad"


def dataset_folder(path: str | Path) -> Path:
    """The dataset folder named by ``path``: the folder itself, or the folder of its
    ``pseudobulk.h5ad`` (so workflow rules can pass their declared input/output files)."""
    path = Path(path)
    return path.parent if path.name == PSEUDOBULK else path


def save_dataset(ds: PerturbDataset, folder: str | Path) -> None:
    """Write ``ds`` to ``folder/pseudobulk.h5ad`` and ``folder/cells.h5ad`` (``folder``: see
    :func:`dataset_folder`)."""
    folder = dataset_folder(folder)
    pb = ds.pseudobulk.copy()
    pb.uns["dataset"] = {"name": ds.name, "delta_only": bool(ds.delta_only), "source": ds.source}
    pb.uns["meta_json"] = json.dumps(ds.meta, sort_keys=True, default=str)
    if ds.cells is not None:
        cells = ds.cells
    else:
        cells = ad.AnnData(
            X=np.zeros((0, pb.n_vars), dtype=np.float32),
            obs=pd.DataFrame({"condition": pd.Series([], dtype=str)}, index=pd.Index([], dtype=str)),
            var=pd.DataFrame(index=pb.var_names.copy()),
        )
    write_h5ad_atomic(cells, folder / CELLS)
    write_h5ad_atomic(pb, folder / PSEUDOBULK)


def load_dataset(folder: str | Path, *, with_cells: bool = True) -> PerturbDataset:
    """Read a dataset written by :func:`save_dataset` (validated again on load; ``folder``: see
    :func:`dataset_folder`)."""
    folder = dataset_folder(folder)
    pb = ad.read_h5ad(folder / PSEUDOBULK)
    info = dict(pb.uns.pop("dataset", {}))
    meta = json.loads(pb.uns.pop("meta_json", "{}"))
    cells = None
    if with_cells and (folder / CELLS).exists():
        cells = ad.read_h5ad(folder / CELLS)
        if cells.n_obs == 0:
            cells = None
        else:
            cells.obs["condition"] = cells.obs["condition"].astype(str)
    return PerturbDataset(
        name=str(info.get("name", folder.name)),
        pseudobulk=pb,
        cells=cells,
        delta_only=bool(info.get("delta_only", False)),
        source=str(folder / PSEUDOBULK),
        meta=meta,
    )
