"""User pseudobulk tables (one row per condition) → a validated :class:`PerturbDataset`.

Table format
------------
One row per perturbation condition, one column per measured gene. Values are either mean
log-normalized expression of the condition's cells (*absolute*) or effects relative to control
such as log fold-changes (*delta-only*).

- **TSV** (``.tsv``, ``.tsv.gz``, tab-separated, header line) or **parquet** (``.parquet``): a
  column named ``condition``; every other column is a gene (numeric values).
- **h5ad** (``.h5ad``): X is conditions × genes (dense or sparse); conditions are
  ``obs['condition']`` when that column exists, else ``obs_names``; genes are ``var_names``.
  ``obs['n_cells']`` and DE lists in ``uns`` (``de20``, ``de20_nondropout``, ``de_ranking``)
  are kept when present.
- Condition names: ``ctrl`` for control, otherwise the target genes joined by ``+``
  (``KLF1+MAP2K6``). Any gene order and GEARS-style ``A+ctrl`` are accepted and canonicalised
  (genes sorted), so a table holding both ``B+A`` and ``A+B`` is rejected as a duplicate.
- A ``ctrl`` row is required. Delta-only tables have a ``ctrl`` row of zeros; with
  ``delta_only=None`` an all-zero ``ctrl`` row marks the table as delta-only.
- No NaN/inf values, no duplicate condition or gene names.
- ``obs['n_cells']`` is 0 ("unknown") for TSV/parquet tables and h5ad files without it.
- DE genes (``uns['de20']``): the 20 genes with the largest ``|x_c − x_ctrl|``.
- Optional split-half replicates (for a noise ceiling without cells): TSV/parquet tables with a
  ``replicate`` column holding 1 and 2 give two rows per condition, the means of two halves of its
  cells (the condition's value is their average); h5ad files give them as layers ``replicate1``
  and ``replicate2``. Either way they become pseudobulk layers ``replicate1`` / ``replicate2``.

:func:`norman_npz_to_pseudobulk` converts the Norman 2019 log fold-change archive
(``norman2019_pseudobulk_lfc.npz``) into such an h5ad (delta-only, ``ctrl`` row of zeros).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.data.conditions import CTRL, ConditionError, canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.de import annotate_de
from perturbench.data.io import write_h5ad_atomic

_DE_KEYS = ("de20", "de20_nondropout", "de_ranking")
REPLICATE_LAYERS = ("replicate1", "replicate2")  # pseudobulk layers of split-half replicate means
_NPZ_KEYS = ("lfc_s", "sing_labels", "lfc_d", "doub_labels", "genes_hvg")


@dataclass
class _Table:
    """A table as read, before validation: raw condition names, gene names, values."""

    conditions: list[str]
    genes: list[str]
    x: np.ndarray
    where: str  # the field holding the condition names, for messages
    n_cells: np.ndarray | None = None
    uns: dict = field(default_factory=dict)
    halves: tuple[np.ndarray, np.ndarray] | None = None  # split-half replicate means, rows as x


def _numeric(frame: pd.DataFrame, genes: list[str], source: str) -> np.ndarray:
    """Gene columns as float64; empty cells and ``NA`` are missing values (NaN)."""
    frame = frame.replace(["", "NA"], np.nan)
    try:
        return frame.to_numpy(dtype=np.float64)
    except ValueError:
        for gene, column in zip(genes, frame.columns):
            try:
                frame[column].to_numpy(dtype=np.float64)
            except ValueError as err:
                raise DatasetError(f"{source}: column {gene!r}: non-numeric value ({err})") from None
        raise


def _from_frame(frame: pd.DataFrame, columns: list[str], source: str) -> _Table:
    if "condition" not in columns:
        raise DatasetError(f"{source}: columns: no 'condition' column (first columns: {columns[:5]})")
    if "" in columns:
        raise DatasetError(
            f"{source}: columns: a column has no name (written with its index? use index=False)"
        )
    genes = [c for c in columns if c not in ("condition", "replicate")]
    frame = frame.set_axis(range(len(columns)), axis=1)
    gene_cols = [i for i, c in enumerate(columns) if c not in ("condition", "replicate")]
    conditions = frame[columns.index("condition")].astype(str).tolist()
    table = _Table(conditions, genes, _numeric(frame[gene_cols], genes, source), "column 'condition'")
    if "replicate" in columns:
        return _replicate_table(table, frame[columns.index("replicate")].astype(str).tolist(), source)
    return table


def _replicate_table(table: _Table, replicate: list[str], source: str) -> _Table:
    """Two rows per condition (replicate 1 and 2) → one row, their mean, with the halves kept."""
    bad = sorted({r for r in replicate if r not in ("1", "2")})
    if bad:
        raise DatasetError(f"{source}: column 'replicate': values {bad[:5]} (expected 1 and 2)")
    rows: dict[str, dict[str, int]] = {}
    for i, (cond, rep) in enumerate(zip(table.conditions, replicate)):
        if rep in rows.setdefault(cond, {}):
            raise DatasetError(f"{source}: column 'replicate': condition {cond!r} has replicate {rep} twice")
        rows[cond][rep] = i
    lacking = [c for c, r in rows.items() if len(r) != 2]
    if lacking:
        raise DatasetError(f"{source}: column 'replicate': conditions without both replicates 1 and 2: {lacking[:5]}")
    conds = list(rows)
    a = table.x[[rows[c]["1"] for c in conds]]
    b = table.x[[rows[c]["2"] for c in conds]]
    return _Table(conds, table.genes, (a + b) / 2, table.where, halves=(a, b))


def _read_tsv(path: Path, source: str) -> _Table:
    try:
        raw = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{source}: empty file (expected a header line with 'condition')") from None
    header = [str(c) for c in raw.iloc[0]]
    return _from_frame(raw.iloc[1:].reset_index(drop=True), header, source)


def _read_parquet(path: Path, source: str) -> _Table:
    frame = pd.read_parquet(path)
    return _from_frame(frame, [str(c) for c in frame.columns], source)


def _read_h5ad(path: Path) -> _Table:
    adata = ad.read_h5ad(path)
    by_column = "condition" in adata.obs
    conditions = adata.obs["condition"].astype(str).tolist() if by_column else list(adata.obs_names)
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    n_cells = adata.obs["n_cells"].to_numpy() if "n_cells" in adata.obs else None
    uns = {k: adata.uns[k] for k in _DE_KEYS if k in adata.uns}
    where = "obs['condition']" if by_column else "obs_names"
    halves = None
    if "replicate1" in adata.layers and "replicate2" in adata.layers:
        halves = tuple(np.asarray(_dense_layer(adata.layers[k]), dtype=np.float64) for k in REPLICATE_LAYERS)
    return _Table(conditions, list(map(str, adata.var_names)), x.astype(np.float64), where, n_cells, uns, halves)


def _dense_layer(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _read(path: Path, source: str) -> _Table:
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return _read_h5ad(path)
    if name.endswith((".tsv", ".tsv.gz")):
        return _read_tsv(path, source)
    if name.endswith(".parquet"):
        return _read_parquet(path, source)
    raise DatasetError(
        f"{source}: unsupported table format {path.suffix!r} (use .h5ad, .tsv, .tsv.gz or .parquet)"
    )


def _canonical(raw: list[str], where: str) -> list[str]:
    out: dict[str, str] = {}
    for name in raw:
        try:
            canon = canonical_condition(name, where=where)
        except ConditionError as err:
            raise DatasetError(str(err)) from None
        if canon in out:
            raise DatasetError(
                f"{where}: conditions {out[canon]!r} and {name!r} are the same perturbation ({canon!r})"
            )
        out[canon] = name
    return list(out)


def _validate(table: _Table, conditions: list[str], source: str) -> None:
    genes = pd.Index(table.genes)
    if genes.has_duplicates:
        dups = sorted(set(genes[genes.duplicated()]))
        raise DatasetError(f"{source}: genes: duplicate gene names {dups[:5]}")
    if CTRL not in conditions:
        raise DatasetError(
            f"{source}: {table.where}: no {CTRL!r} row; add the control row "
            f"(all zeros for effects relative to control)"
        )
    bad = [table.conditions[i] for i in np.flatnonzero(~np.isfinite(table.x).all(axis=1))]
    if bad:
        raise DatasetError(f"{source}: values: NaN or inf in conditions {bad[:5]}")


def _dataset(table: _Table, *, name: str, source: str, delta_only: bool | None) -> PerturbDataset:
    conditions = _canonical(table.conditions, f"{source}: {table.where}")
    _validate(table, conditions, source)
    ctrl_zero = bool(np.all(table.x[conditions.index(CTRL)] == 0))
    order = [CTRL] + sorted(c for c in conditions if c != CTRL)
    rows = pd.Index(conditions).get_indexer(order)
    n_cells = (
        np.zeros(len(rows), dtype=np.int64) if table.n_cells is None else table.n_cells[rows].astype(np.int64)
    )
    pb = ad.AnnData(
        table.x[rows],
        obs=pd.DataFrame({"n_cells": n_cells}, index=order),
        var=pd.DataFrame(index=table.genes),
    )
    pb.uns.update(table.uns)
    if table.halves is not None:
        for layer, half in zip(REPLICATE_LAYERS, table.halves):
            if not np.all(np.isfinite(half)):
                raise DatasetError(f"{source}: {layer}: NaN or inf in replicate values")
            pb.layers[layer] = half[rows]
    ds = PerturbDataset(name, pb, None, ctrl_zero if delta_only is None else delta_only, source, {})
    ds.meta["targets_missing_from_genes"] = ds.targets_missing_from_genes()
    return annotate_de(ds)


def read_pseudobulk_table(
    path: str | os.PathLike[str], *, name: str, delta_only: bool | None = None
) -> PerturbDataset:
    """Read a pseudobulk table (format: module docstring) into an annotated dataset.

    ``delta_only=None`` detects delta-only tables by their all-zero ``ctrl`` row; ``True`` with a
    non-zero ``ctrl`` row is an error. Raises :class:`DatasetError` naming the file and field.
    """
    path = Path(path)
    source = os.fspath(path)
    return _dataset(_read(path, source), name=name, source=source, delta_only=delta_only)


def norman_npz_to_pseudobulk(npz_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Convert ``norman2019_pseudobulk_lfc.npz`` to a delta-only pseudobulk h5ad at ``out_path``.

    Rows: ``ctrl`` (zeros), then the singles (``lfc_s``/``sing_labels``) and doubles
    (``lfc_d``/``doub_labels``) under canonical names, sorted; columns: ``genes_hvg``.
    Values are the archive's float32 log fold-changes. Written atomically.
    """
    source = os.fspath(npz_path)
    with np.load(npz_path, allow_pickle=False) as archive:
        missing = [k for k in _NPZ_KEYS if k not in archive.files]
        if missing:
            raise DatasetError(f"{source}: missing array(s) {missing} (found {sorted(archive.files)})")
        labels = [str(s) for s in archive["sing_labels"]] + [str(s) for s in archive["doub_labels"]]
        x = np.vstack([archive["lfc_s"], archive["lfc_d"]]).astype(np.float32)
        genes = [str(g) for g in archive["genes_hvg"]]
    if x.shape != (len(labels), len(genes)):
        raise DatasetError(
            f"{source}: lfc_s/lfc_d: shape {x.shape} does not match "
            f"{len(labels)} labels × {len(genes)} genes"
        )
    table = _Table(
        [CTRL] + labels,
        genes,
        np.vstack([np.zeros((1, len(genes)), np.float32), x]),
        "sing_labels/doub_labels",
    )
    conditions = _canonical(table.conditions, f"{source}: {table.where}")
    _validate(table, conditions, source)
    order = [CTRL] + sorted(conditions[1:])
    pb = ad.AnnData(
        table.x[pd.Index(conditions).get_indexer(order)],
        obs=pd.DataFrame({"n_cells": np.zeros(len(order), dtype=np.int64)}, index=order),
        var=pd.DataFrame(index=genes),
    )
    PerturbDataset("norman2019", pb, None, True, source, {})  # validate before writing
    write_h5ad_atomic(pb, out_path)
    return Path(out_path)
