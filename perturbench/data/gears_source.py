"""GEARS-archive datasets (``perturb_processed.h5ad``) → a validated :class:`PerturbDataset`.

The GEARS layout (cell-gears 0.1.2, ``PertData``; e.g. ``norman/perturb_processed.h5ad``):

- ``obs['condition']``: ``ctrl``, ``A+ctrl``/``ctrl+A`` (single), ``A+B`` (double), mapped to
  canonical names with :func:`canonical_condition`; ``obs['cell_type']`` (one value),
  ``obs['control']`` and ``obs['condition_name']`` = ``<cell_type>_<condition>_<dose>`` with
  dose ``1+1`` for two-part conditions and ``1`` for ``ctrl`` (e.g. ``K562_AHR+ctrl_1+1``);
- ``var_names``: Ensembl ids, ``var['gene_name']``: symbols (the genes of the contract);
- X: log-normalized expression (made CSR float32 here);
- ``uns['rank_genes_groups_cov_all']``: condition_name → all genes ranked by scanpy's t-test
  against control (``rankby_abs``), as gene ids; ``uns['top_non_dropout_de_20']``: the GEARS
  non-dropout top 20, as gene ids.

The GEARS rankings become ``pseudobulk.uns['de_ranking']`` (first 200), ``['de20']`` (first 20)
and ``['de20_nondropout']``, with ids mapped to symbols; whatever the file lacks is computed by
:func:`perturbench.data.de.annotate_de`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.data.cells import pseudobulk_from_cells
from perturbench.data.conditions import CTRL, ConditionError, canonical_condition
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.de import annotate_de

H5AD_NAME = "perturb_processed.h5ad"
RANKING_KEY = "rank_genes_groups_cov_all"
NONDROPOUT_KEY = "top_non_dropout_de_20"
KEEP_RANKING = 200  # genes of the GEARS ranking kept in uns['de_ranking'] (as annotate_de does)
_GENE_COLUMNS = ("gene_name", "feature_name")


def find_gears_h5ad(folder: Path) -> Path:
    """The single ``perturb_processed.h5ad`` below ``folder`` (hidden folders are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (expected an extracted GEARS dataset archive)")
    hits = sorted(
        p for p in folder.rglob(H5AD_NAME) if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not hits:
        raise DatasetError(f"{folder}: no {H5AD_NAME} inside (a GEARS archive holds e.g. norman/{H5AD_NAME})")
    if len(hits) > 1:
        raise DatasetError(f"{folder}: several {H5AD_NAME} files {[str(p) for p in hits]}; pass the one to use")
    return hits[0]


def _gene_symbols(adata: ad.AnnData, source: Path) -> tuple[pd.Index, str]:
    """Gene symbols of ``adata`` and the field they came from."""
    field = next((c for c in _GENE_COLUMNS if c in adata.var), None)
    symbols = pd.Index(adata.var[field].astype(str) if field else adata.var_names.astype(str))
    where = f"var[{field!r}]" if field else "var_names"
    empty = [i for i, g in enumerate(symbols) if g.strip() in ("", "nan")]
    if empty:
        raise DatasetError(f"{source}: {where}: {len(empty)} empty gene names (first at position {empty[0]})")
    if symbols.has_duplicates:
        raise DatasetError(f"{source}: {where}: duplicate gene names {sorted(set(symbols[symbols.duplicated()]))[:5]}")
    return symbols, where


def _canonical_map(raw: pd.Series, source: Path) -> dict[str, str]:
    """GEARS condition label → canonical condition, for every label present."""
    mapping = {}
    for label in sorted(set(raw.astype(str))):
        try:
            mapping[label] = canonical_condition(label, where=f"{source}: obs['condition']")
        except ConditionError as err:
            raise DatasetError(str(err)) from None
    if CTRL not in mapping.values():
        raise DatasetError(f"{source}: obs['condition']: no control cells ({CTRL!r}; found e.g. {sorted(mapping)[:5]})")
    return mapping


def _check_obs(obs: pd.DataFrame, source: Path) -> None:
    if "condition" not in obs:
        raise DatasetError(f"{source}: obs: missing column 'condition' (columns: {list(obs.columns)})")
    if obs["condition"].isna().any():
        raise DatasetError(
            f"{source}: obs['condition']: {int(obs['condition'].isna().sum())} cells have no condition (NaN)"
        )
    if "cell_type" in obs and obs["cell_type"].nunique() > 1:
        kinds = sorted({str(k) for k in obs["cell_type"].unique()})
        raise DatasetError(f"{source}: obs['cell_type']: several cell types {kinds[:5]}; the contract holds one")


def _cells(raw: ad.AnnData, mapping: Mapping[str, str], symbols: pd.Index) -> ad.AnnData:
    """Contract cells: canonical ``obs['condition']``, symbols as var_names, X CSR float32."""
    x = raw.X if sp.issparse(raw.X) else np.asarray(raw.X)
    x = sp.csr_matrix(x, dtype=np.float32)
    labels = raw.obs["condition"].astype(str)
    obs = pd.DataFrame(
        {"condition": pd.Categorical(labels.map(mapping).to_numpy()), "gears_condition": labels.to_numpy()},
        index=raw.obs_names.copy(),
    )
    var = pd.DataFrame({"gene_id": raw.var_names.astype(str).to_numpy()}, index=symbols.copy())
    return ad.AnnData(x, obs=obs, var=var)


def _condition_name_map(obs: pd.DataFrame, mapping: Mapping[str, str], source: Path) -> dict[str, str]:
    """GEARS ``condition_name`` → canonical condition (rebuilt from cell_type when absent)."""
    labels = obs["condition"].astype(str)
    if "condition_name" in obs:
        names = obs["condition_name"].astype(str)
    elif "cell_type" in obs:
        dose = labels.map(lambda c: "1+1" if len(c.split("+")) == 2 else "1")
        names = obs["cell_type"].astype(str) + "_" + labels + "_" + dose
    else:
        raise DatasetError(
            f"{source}: obs: neither 'condition_name' nor 'cell_type', so the keys of "
            f"uns[{RANKING_KEY!r}] cannot be matched to conditions"
        )
    return {name: mapping[label] for name, label in zip(names, labels, strict=True)}


def _to_symbols(genes: object, id2symbol: Mapping[str, str], where: str) -> list[str]:
    ids = [str(g) for g in np.asarray(genes).ravel()]
    unknown = [g for g in ids if g not in id2symbol]
    if unknown:
        raise DatasetError(f"{where}: gene ids {unknown[:5]} are not in var_names")
    return [id2symbol[g] for g in ids]


def _mapped_de(
    raw: ad.AnnData, key: str, names: Mapping[str, str], id2symbol: Mapping[str, str], source: Path
) -> dict[str, list[str]]:
    """``raw.uns[key]`` (condition_name → gene ids) as canonical condition → symbols.

    When two GEARS names map to one condition (``A+B`` and ``B+A``), the first in key order wins.
    """
    out: dict[str, list[str]] = {}
    for name in sorted(raw.uns[key]):
        if name not in names:
            raise DatasetError(
                f"{source}: uns[{key!r}]: key {name!r} matches no obs['condition_name'] (e.g. {sorted(names)[:3]})"
            )
        cond = names[name]
        if cond != CTRL and cond not in out:
            out[cond] = _to_symbols(raw.uns[key][name], id2symbol, f"{source}: uns[{key!r}][{name!r}]")
    return out


def _merged(mapping: Mapping[str, str]) -> dict[str, list[str]]:
    """Canonical conditions that several GEARS labels map to (``A+B`` and ``B+A``)."""
    groups: dict[str, list[str]] = {}
    for label, cond in sorted(mapping.items()):
        groups.setdefault(cond, []).append(label)
    return {c: labels for c, labels in groups.items() if len(labels) > 1}


def _gears_de(raw: ad.AnnData, mapping: Mapping[str, str], symbols: pd.Index, source: Path) -> dict[str, dict]:
    """The DE annotations the file ships, in the contract's ``pseudobulk.uns`` keys."""
    present = [k for k in (RANKING_KEY, NONDROPOUT_KEY) if k in raw.uns]
    if not present:
        return {}
    names = _condition_name_map(raw.obs, mapping, source)
    id2symbol = dict(zip(raw.var_names.astype(str), symbols, strict=True)) | {s: s for s in symbols}
    uns: dict[str, dict] = {}
    if RANKING_KEY in raw.uns:
        ranking = _mapped_de(raw, RANKING_KEY, names, id2symbol, source)
        uns["de_ranking"] = {c: g[:KEEP_RANKING] for c, g in ranking.items()}
        uns["de20"] = {c: g[:20] for c, g in ranking.items()}
    if NONDROPOUT_KEY in raw.uns:
        uns["de20_nondropout"] = _mapped_de(raw, NONDROPOUT_KEY, names, id2symbol, source)
    return uns


def load_gears_dataset(path: Path, *, name: str) -> PerturbDataset:
    """Load a GEARS dataset: the extracted archive folder or its ``perturb_processed.h5ad``.

    Pseudobulk = mean log-normalized expression per canonical condition
    (:func:`perturbench.data.cells.pseudobulk_from_cells`); DE genes from the file's GEARS
    rankings when present, else computed by :func:`perturbench.data.de.annotate_de`.
    """
    path = Path(path)
    h5ad = path if path.is_file() else find_gears_h5ad(path)
    raw = ad.read_h5ad(h5ad)
    _check_obs(raw.obs, h5ad)
    symbols, gene_field = _gene_symbols(raw, h5ad)
    mapping = _canonical_map(raw.obs["condition"], h5ad)
    cells = _cells(raw, mapping, symbols)
    pb = pseudobulk_from_cells(cells)
    de = _gears_de(raw, mapping, symbols, h5ad)
    pb.uns.update(de)
    meta = {
        "gears_file": str(h5ad),
        "gene_field": gene_field,
        "cell_type": str(raw.obs["cell_type"].iloc[0]) if "cell_type" in raw.obs and raw.n_obs else None,
        "de_from_gears": sorted(de),
        "merged_conditions": _merged(mapping),
    }
    ds = PerturbDataset(name=name, pseudobulk=pb, cells=cells, delta_only=False, source=str(h5ad), meta=meta)
    return annotate_de(ds)
