"""Save and load a :class:`PerturbDataset` as a folder of two h5ad files.

``pseudobulk.h5ad`` is the dataset contract's pseudobulk (conditions × genes); ``cells.h5ad``
holds the cells, or zero cells for pseudobulk-only sources (so every dataset has the same files
and Snakemake rules need no special cases). Both are written atomically.

A feature set is a gene mask over the prepared cells, so its folder stores them once:
:func:`save_featureset` writes ``pseudobulk.h5ad`` and ``cells_ref.json`` (the prepared cells'
path relative to the folder and the kept genes, in order) instead of a second ``cells.h5ad``;
:func:`load_dataset` reads the referenced cells only when ``with_cells`` and keeps the listed
genes (columns of the CSR matrix), so pseudobulk-only jobs never touch the cells.

DE lists (``uns['de20']``, ``['de20_nondropout']``, ``['de_ranking']``: condition → genes) are
stored flat, as ``uns['de_lists'][kind]`` = {``conditions``, ``vocabulary`` (the distinct genes),
``indices`` (every list concatenated, as positions in ``vocabulary``), ``offsets``} (list i is
``vocabulary[indices[offsets[i]:offsets[i + 1]]]``): four arrays per kind instead of one HDF5
dataset per condition, which made reading a 2,000-condition pseudobulk take ~9 s.
:func:`load_dataset` restores the per-condition dicts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbench.data.contract import DE_KINDS, PerturbDataset
from perturbench.data.io import write_h5ad_atomic, write_text_atomic
from perturbench.errors import ConfigError

PSEUDOBULK = "pseudobulk.h5ad"
CELLS = "cells.h5ad"
CELLS_REF = "cells_ref.json"
DE_LISTS = "de_lists"  # uns key of the flat DE lists (module docstring)


def _pseudobulk_to_save(ds: PerturbDataset) -> ad.AnnData:
    """The pseudobulk with its dataset record; X and float layers stored as float32 (means of
    log-expression need no more; readers compute in float64, :meth:`PerturbDataset.expression`)."""
    pb = ds.pseudobulk.copy()
    pb.X = _float32(pb.X)
    for key in list(pb.layers):
        pb.layers[key] = _float32(pb.layers[key])
    _pack_de_lists(pb.uns)
    pb.uns["dataset"] = {"name": ds.name, "delta_only": bool(ds.delta_only), "source": ds.source}
    pb.uns["meta_json"] = json.dumps(ds.meta, sort_keys=True, default=str)
    return pb


def _pack_de_lists(uns: dict) -> None:
    """Move the DE dicts of ``uns`` into ``uns[DE_LISTS]`` (module docstring), in place."""
    packed = {}
    for kind in DE_KINDS:
        if kind not in uns:
            continue
        lists = {str(c): [str(g) for g in genes] for c, genes in uns.pop(kind).items()}
        flat = [g for genes in lists.values() for g in genes]
        vocabulary, indices = np.unique(np.array(flat, dtype=object).astype(str), return_inverse=True)
        sizes = [len(genes) for genes in lists.values()]
        packed[kind] = {"conditions": np.array(list(lists), dtype=str), "vocabulary": vocabulary,
                        "indices": indices.astype(np.int32).ravel(),
                        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)}
    if packed:
        uns[DE_LISTS] = packed


def _unpack_de_lists(uns: dict) -> None:
    """Restore the DE dicts from ``uns[DE_LISTS]``, in place (inverse of :func:`_pack_de_lists`)."""
    for kind, flat in dict(uns.pop(DE_LISTS, {})).items():
        genes = np.asarray(flat["vocabulary"], dtype=object)[np.asarray(flat["indices"], dtype=np.int64)].tolist()
        offsets = np.asarray(flat["offsets"]).tolist()
        uns[kind] = {str(c): genes[offsets[i]:offsets[i + 1]] for i, c in enumerate(flat["conditions"])}


def _float32(x):
    """``x`` as float32 when it is a float64 array (dense or sparse), else unchanged."""
    return x.astype(np.float32) if getattr(x, "dtype", None) == np.float64 else x


def save_featureset(ds: PerturbDataset, folder: str | Path, *, cells_from: str | Path) -> None:
    """Write ``ds``'s pseudobulk and a reference to the cells file ``cells_from`` (module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ref = {"cells": os.path.relpath(Path(cells_from), folder), "genes": ds.genes}
    write_text_atomic(folder / CELLS_REF, json.dumps(ref, indent=0) + "\n")
    write_h5ad_atomic(_pseudobulk_to_save(ds), folder / PSEUDOBULK)


def dataset_folder(path: str | Path) -> Path:
    """The dataset folder named by ``path``: the folder itself, or the folder of its
    ``pseudobulk.h5ad`` (so workflow rules can pass their declared input/output files)."""
    path = Path(path)
    return path.parent if path.name == PSEUDOBULK else path


def save_dataset(ds: PerturbDataset, folder: str | Path) -> None:
    """Write ``ds`` to ``folder/pseudobulk.h5ad`` and ``folder/cells.h5ad`` (``folder``: see
    :func:`dataset_folder`)."""
    folder = dataset_folder(folder)
    pb = _pseudobulk_to_save(ds)
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
    _unpack_de_lists(pb.uns)
    info = dict(pb.uns.pop("dataset", {}))
    meta = json.loads(pb.uns.pop("meta_json", "{}"))
    cells = _read_cells(folder) if with_cells else None
    if cells is not None and cells.n_obs == 0:
        cells = None
    elif cells is not None:
        cells.obs["condition"] = cells.obs["condition"].astype(str)
    return PerturbDataset(
        name=str(info.get("name", folder.name)),
        pseudobulk=pb,
        cells=cells,
        delta_only=bool(info.get("delta_only", False)),
        source=str(folder / PSEUDOBULK),
        meta=meta,
    )


def _read_cells(folder: Path) -> ad.AnnData | None:
    """``folder/cells.h5ad``, else the genes of ``cells_ref.json`` taken from the referenced file."""
    if (folder / CELLS).exists():
        return ad.read_h5ad(folder / CELLS)
    if not (folder / CELLS_REF).exists():
        return None
    try:
        ref = json.loads((folder / CELLS_REF).read_text())
        path, genes = folder / ref["cells"], list(ref["genes"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{folder / CELLS_REF}: cannot read the cells reference ({err})") from None
    if not path.exists():
        raise ConfigError(f"{folder / CELLS_REF}: field 'cells': {path} does not exist")
    cells = ad.read_h5ad(path)
    if list(cells.var_names) == genes:
        return cells
    cols = cells.var_names.get_indexer(genes)
    if (cols < 0).any():
        raise ConfigError(f"{folder / CELLS_REF}: field 'genes': {int((cols < 0).sum())} genes not in {path}")
    return ad.AnnData(cells.X[:, cols], obs=cells.obs, var=cells.var.iloc[cols].copy())
