"""Cell-level Perturb-seq data → a validated :class:`PerturbDataset`.

Input: an AnnData of log-normalized cells (``sc.pp.normalize_total`` + ``sc.pp.log1p``) with a
condition column (``obs[condition_key]``: the control label or genes joined by ``+``). The
loader canonicalises conditions (control label → ``ctrl``, genes sorted), optionally keeps the
cells matching ``keep`` (``{'dataset': 'norman19'}``), rejects what would silently corrupt the
benchmark (see :func:`dataset_from_cells`), converts X to CSR float32, builds the pseudobulk
(mean per condition) and annotates DE genes (:func:`perturbench.data.de.annotate_de`).
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.data.conditions import CTRL, ConditionError, canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.de import annotate_de, group_sums

#: obs['perturbation_type'] values accepted as genetic perturbations (compared lower-case).
GENETIC_TYPES = frozenset(
    {"crispr", "crispra", "crispri", "crisprko", "ko", "knockout", "knockdown", "sirna", "shrna", "genetic"}
)
_RAW_MAX = 30.0  # log1p of a normalized count this large would need ~1e13 counts per cell


def pseudobulk_from_cells(cells: ad.AnnData) -> ad.AnnData:
    """Mean expression per ``obs['condition']``: ``X_pb = diag(1/n_c) · Iᵀ · X``.

    ``I`` is the sparse (cells × conditions) indicator matrix; the product runs over blocks of
    cells (:func:`perturbench.data.de.group_sums`), so X is neither densified nor copied whole;
    sums accumulate in float64. Rows: ``ctrl`` first (when present), then sorted conditions;
    ``obs['n_cells']`` holds ``n_c``; ``var`` is copied.
    """
    labels = cells.obs["condition"].astype(str).to_numpy()
    present = set(labels)
    order = ([CTRL] if CTRL in present else []) + sorted(present - {CTRL})
    codes = pd.Index(order).get_indexer(labels)
    n_cells = np.bincount(codes, minlength=len(order))
    sums, _ = group_sums(cells.X, codes, len(order))
    obs = pd.DataFrame({"n_cells": n_cells.astype(np.int64)}, index=pd.Index(order, name=None))
    return ad.AnnData(sums / n_cells[:, None], obs=obs, var=cells.var.copy())


def _keep_mask(obs: pd.DataFrame, keep: dict[str, str] | None, source: str) -> np.ndarray:
    mask = np.ones(len(obs), dtype=bool)
    for column, value in (keep or {}).items():
        if column not in obs:
            raise DatasetError(
                f"{source}: obs: keep filter column {column!r} not found (columns: {list(obs.columns)})"
            )
        mask &= obs[column].astype(str).to_numpy() == str(value)
    if not mask.any():
        raise DatasetError(f"{source}: obs: keep filter {keep!r} selects no cells")
    return mask


def _check_condition_column(obs: pd.DataFrame, key: str, source: str) -> None:
    if key not in obs:
        raise DatasetError(f"{source}: obs: missing condition column {key!r} (columns: {list(obs.columns)})")
    column = obs[key]
    if isinstance(column.dtype, pd.CategoricalDtype):
        unused = sorted(set(column.cat.categories) - set(column.dropna().unique()))
        if unused:
            raise DatasetError(
                f"{source}: obs[{key!r}]: conditions with no cells (unused categories) {unused[:5]}"
            )
    if column.isna().any():
        raise DatasetError(
            f"{source}: obs[{key!r}]: {int(column.isna().sum())} cells have no condition (NaN)"
        )


def _check_genetic(obs: pd.DataFrame, source: str) -> None:
    """Reject mixes that a genetic-perturbation benchmark cannot pool: other perturbation types
    (``obs['perturbation_type']``) or several cell types (``obs['cell_type']``)."""
    if "perturbation_type" in obs:
        kinds = sorted({str(k) for k in obs["perturbation_type"].unique()})
        other = [k for k in kinds if k.lower() not in GENETIC_TYPES]
        if other:
            raise DatasetError(
                f"{source}: obs['perturbation_type']: non-genetic perturbations {other}; "
                f"select genetic cells with keep={{'perturbation_type': ...}}"
            )
    if "cell_type" in obs and obs["cell_type"].nunique() > 1:
        kinds = sorted({str(k) for k in obs["cell_type"].unique()})
        raise DatasetError(
            f"{source}: obs['cell_type']: several cell types {kinds[:5]} would be pooled; "
            f"select one with keep (e.g. keep={{'cell_type': {kinds[0]!r}}})"
        )


def _canonical_labels(obs: pd.DataFrame, key: str, control_label: str, source: str) -> pd.Categorical:
    raw = obs[key].astype(str)
    labels = sorted(set(raw))
    if control_label != CTRL and CTRL in labels and control_label in labels:
        raise DatasetError(
            f"{source}: obs[{key!r}]: both {control_label!r} and {CTRL!r} present; which is control?"
        )
    if control_label not in labels:
        raise DatasetError(
            f"{source}: obs[{key!r}]: no control cells (label {control_label!r}; found e.g. {labels[:5]})"
        )
    mapping = {control_label: CTRL}
    for label in labels:
        if label == control_label:
            continue
        try:
            mapping[label] = canonical_condition(label, where=f"{source}: obs[{key!r}]")
        except ConditionError as err:
            raise DatasetError(str(err)) from None
    return pd.Categorical(raw.map(mapping).to_numpy())


def _check_values(x: sp.csr_matrix, source: str) -> None:
    """Finite, non-negative, log-normalized (not raw or normalized-only counts)."""
    data = x.data
    if not np.all(np.isfinite(data)):
        raise DatasetError(f"{source}: X: {int((~np.isfinite(data)).sum())} NaN or inf values")
    if data.size == 0:
        return
    if data.min() < 0:
        raise DatasetError(
            f"{source}: X: negative values (min {data.min():.3g}); expected log-normalized "
            "expression, not scaled data (sc.pp.scale)"
        )
    row_sums = np.asarray(x.sum(axis=1)).ravel()
    equal_sums = row_sums.size > 1 and row_sums.mean() > 100 and row_sums.std() < 1e-3 * row_sums.mean()
    if data.max() > _RAW_MAX or equal_sums:
        integer = bool(np.all(data == np.round(data)))
        why = (
            "every row sums to the same total"
            if equal_sums
            else f"{'integer ' if integer else ''}values up to {data.max():.6g}"
        )
        raise DatasetError(
            f"{source}: X: looks like raw counts ({why}); "
            "normalize and log1p first (sc.pp.normalize_total + sc.pp.log1p)"
        )


def _as_csr(cells: ad.AnnData, source: str) -> sp.csr_matrix:
    if cells.X is None:
        raise DatasetError(f"{source}: X: missing expression matrix")
    if cells.var_names.has_duplicates:
        dups = sorted(set(cells.var_names[cells.var_names.duplicated()]))
        raise DatasetError(f"{source}: var_names: duplicate gene names {dups[:5]}")
    x = sp.csr_matrix(cells.X, dtype=np.float32)
    x.sum_duplicates()
    return x


def _missing_targets(ds: PerturbDataset, policy: Literal["warn", "error"]) -> dict[str, list[str]]:
    missing = ds.targets_missing_from_genes()
    if missing and policy == "error":
        raise DatasetError(
            f"{ds.source}: obs['condition']: {len(missing)} condition(s) target genes that are not "
            f"measured genes: {sorted(missing)[:10]}"
        )
    if missing:
        warnings.warn(
            f"{ds.source}: {len(missing)} condition(s) target unmeasured genes (e.g. {sorted(missing)[:3]}); "
            "recorded in meta['targets_missing_from_genes']",
            stacklevel=4,
        )
    return missing


def _build(
    cells: ad.AnnData,
    *,
    name: str,
    source: str,
    condition_key: str,
    control_label: str,
    targets: Literal["warn", "error"],
) -> PerturbDataset:
    """Validate the selected cells and assemble the annotated dataset."""
    if targets not in ("warn", "error"):
        raise ValueError(f"targets must be 'warn' or 'error', got {targets!r}")
    _check_genetic(cells.obs, source)
    condition = _canonical_labels(cells.obs, condition_key, control_label, source)
    x = _as_csr(cells, source)
    _check_values(x, source)
    obs = cells.obs.copy()
    obs["condition"] = condition
    clean = ad.AnnData(x, obs=obs, var=cells.var.copy())
    ds = PerturbDataset(name, pseudobulk_from_cells(clean), clean, False, source, {})
    ds.meta["targets_missing_from_genes"] = _missing_targets(ds, targets)
    return annotate_de(ds)


def dataset_from_cells(
    cells: ad.AnnData,
    *,
    name: str,
    source: str,
    condition_key: str = "condition",
    control_label: str = CTRL,
    keep: dict[str, str] | None = None,
    targets: Literal["warn", "error"] = "warn",
) -> PerturbDataset:
    """Validate log-normalized cells and return an annotated :class:`PerturbDataset`.

    ``keep`` keeps the cells whose obs columns equal the given values (all must match).
    Raises :class:`DatasetError` (naming ``source`` and the field) for: a missing condition
    column, an unused condition category (a condition with no cells), NaN conditions, missing
    control cells, malformed condition names (``A++B``, ``ctrl+ctrl``, empty, non-gene
    characters), non-genetic ``obs['perturbation_type']`` values or several
    ``obs['cell_type']`` values (filter them with ``keep``), duplicate gene names, NaN/inf or
    negative values, and raw or normalized-but-unlogged counts (max > 30 or equal row sums).
    Perturbed genes absent from the measured genes: ``targets='warn'`` records them in
    ``meta['targets_missing_from_genes']`` (CRISPRa screens target unmeasured genes),
    ``targets='error'`` raises.
    """
    _check_condition_column(cells.obs, condition_key, source)
    mask = _keep_mask(cells.obs, keep, source)
    selected = cells if mask.all() else cells[mask]
    return _build(
        selected,
        name=name,
        source=source,
        condition_key=condition_key,
        control_label=control_label,
        targets=targets,
    )


def read_cells_h5ad(
    path: str | os.PathLike[str],
    *,
    name: str,
    condition_key: str = "condition",
    control_label: str = CTRL,
    keep: dict[str, str] | None = None,
    targets: Literal["warn", "error"] = "warn",
) -> PerturbDataset:
    """:func:`dataset_from_cells` on an h5ad file; with ``keep``, the file is opened backed
    (``backed='r'``) and only the selected cells are loaded into memory."""
    source = os.fspath(path)
    if not keep:
        return dataset_from_cells(
            ad.read_h5ad(path),
            name=name,
            source=source,
            condition_key=condition_key,
            control_label=control_label,
            targets=targets,
        )
    backed = ad.read_h5ad(path, backed="r")
    try:
        _check_condition_column(backed.obs, condition_key, source)
        cells = backed[_keep_mask(backed.obs, keep, source)].to_memory()
    finally:
        backed.file.close()
    return _build(
        cells,
        name=name,
        source=source,
        condition_key=condition_key,
        control_label=control_label,
        targets=targets,
    )
