"""Differentially expressed (DE) genes per condition, stored in ``pseudobulk.uns``.

Three rankings, all "condition → genes, most changed first":

- cells: scanpy ``rank_genes_groups`` (Welch t-test of each condition's cells against the
  ``ctrl`` cells, ranked by ``|t|``), the ranking GEARS and most Perturb-seq benchmarks use;
- non-dropout (GEARS ``get_dropout_non_zero_genes``): the cell ranking with *dropout* genes
  removed, where gene g is a dropout for condition c when its mean is zero in c's cells but not
  in the control cells (``mean_c[g] == 0 and mean_ctrl[g] != 0``); genes zero in both stay;
- pseudobulk only: ``|x_c − x_ctrl|`` descending (stable: ties keep gene order).

:func:`annotate_de` writes ``de20`` (top 20), ``de20_nondropout`` (cells only) and
``de_ranking`` (the ranking trimmed to ``keep_ranking`` genes, so feature sets can re-derive
20 DE genes after removing genes without recomputing).
"""

from __future__ import annotations

import dataclasses
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from perturbench.data.conditions import CTRL
from perturbench.data.contract import DatasetError, PerturbDataset


def _dense(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _cell_mean(x: np.ndarray | sp.spmatrix, rows: np.ndarray) -> np.ndarray:
    """Mean over the selected rows, shape (n_genes,), float64 (sparse rows stay sparse)."""
    return np.asarray(x[rows].sum(axis=0, dtype=np.float64)).ravel() / max(len(rows), 1)


def _rows_by_condition(cells: ad.AnnData) -> dict[str, np.ndarray]:
    labels = cells.obs["condition"].astype(str).to_numpy()
    return {str(c): rows for c, rows in pd.Series(labels).groupby(labels).indices.items()}


def _rank_by_abs(delta: np.ndarray, genes: pd.Index) -> list[str]:
    order = np.argsort(-np.abs(delta), kind="stable")
    return [str(g) for g in genes[order]]


def rank_de_cells(cells: ad.AnnData, *, n_genes: int | None = None) -> dict[str, list[str]]:
    """Condition → genes ranked by scanpy's t-test against ``ctrl`` cells (``rankby_abs``).

    ``cells.obs['condition']`` must be canonical and contain ``ctrl`` with at least 2 cells.
    ``n_genes=None`` returns the full ranking. Conditions with a single cell cannot be t-tested;
    they are ranked by ``|x_cell − mean_ctrl|`` instead (a warning names them). ``cells`` is not
    modified: scanpy works on a new AnnData sharing X.
    """
    labels = cells.obs["condition"].astype(str).to_numpy()
    rows = _rows_by_condition(cells)
    n_ctrl = len(rows.get(CTRL, ()))
    if n_ctrl < 2:
        raise DatasetError(f"obs['condition']: need at least 2 {CTRL!r} cells for the t-test, got {n_ctrl}")
    tested = sorted(c for c, r in rows.items() if c != CTRL and len(r) >= 2)
    single = sorted(c for c, r in rows.items() if c != CTRL and len(r) < 2)
    n = cells.n_vars if n_genes is None else n_genes
    out: dict[str, list[str]] = {}
    if tested:
        work = ad.AnnData(
            cells.X,
            obs=pd.DataFrame({"condition": pd.Categorical(labels)}, index=cells.obs_names),
            var=pd.DataFrame(index=cells.var_names),
        )
        work.uns["log1p"] = {"base": None}
        with warnings.catch_warnings():  # scanpy builds its result frame column by column
            warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
            sc.tl.rank_genes_groups(
                work,
                "condition",
                groups=tested,
                reference=CTRL,
                method="t-test",
                rankby_abs=True,
                n_genes=n,
                use_raw=False,
            )
        names = work.uns["rank_genes_groups"]["names"]
        out = {c: [str(g) for g in names[c]] for c in tested}
    if single:
        warnings.warn(
            f"{len(single)} condition(s) have one cell; ranked by |x - ctrl| instead of a t-test: "
            f"{single[:5]}",
            stacklevel=2,
        )
        ctrl = _cell_mean(cells.X, rows[CTRL])
        for c in single:
            out[c] = _rank_by_abs(_cell_mean(cells.X, rows[c]) - ctrl, cells.var_names)[:n]
    return {c: out[c] for c in sorted(out)}


def nondropout_de(cells: ad.AnnData, ranking: dict[str, list[str]], *, n: int = 20) -> dict[str, list[str]]:
    """GEARS non-dropout DE genes: the first ``n`` genes of each ranking that are not dropouts.

    Gene g is a dropout for condition c when ``mean_c[g] == 0`` and ``mean_ctrl[g] != 0`` (means
    over c's cells and over the ``ctrl`` cells, as in GEARS ``get_dropout_non_zero_genes``).
    Conditions of ``ranking`` without cells in ``cells`` (e.g. after ``subset``) are skipped.
    """
    rows = _rows_by_condition(cells)
    ctrl_zero = _cell_mean(cells.X, rows[CTRL]) == 0
    col = {g: i for i, g in enumerate(cells.var_names)}
    out = {}
    for cond, genes in ranking.items():
        if cond not in rows:
            continue
        zero = _cell_mean(cells.X, rows[cond]) == 0
        dropout = zero & ~ctrl_zero
        out[cond] = [g for g in genes if not dropout[col[g]]][:n]
    return out


def rank_de_delta(pb: ad.AnnData) -> dict[str, list[str]]:
    """Condition → all genes ranked by ``|x_cond − x_ctrl|`` descending (ties keep gene order)."""
    x = _dense(pb.X)
    ctrl = x[pb.obs_names.get_loc(CTRL)]
    return {str(c): _rank_by_abs(x[i] - ctrl, pb.var_names) for i, c in enumerate(pb.obs_names) if c != CTRL}


def annotate_de(ds: PerturbDataset, *, n: int = 20, keep_ranking: int = 200) -> PerturbDataset:
    """A copy of ``ds`` whose ``pseudobulk.uns`` has ``de_ranking``, ``de20`` and (with cells)
    ``de20_nondropout``; keys already present (e.g. shipped by GEARS) are kept as they are.

    The ranking comes from :func:`rank_de_cells` when ``ds`` has cells, else :func:`rank_de_delta`;
    it is stored trimmed to ``keep_ranking`` genes per condition.
    """
    uns = ds.pseudobulk.uns
    wanted = {"de_ranking", "de20"} | ({"de20_nondropout"} if ds.cells is not None else set())
    if wanted <= set(uns):
        return ds
    if "de_ranking" in uns:
        ranking = ds.de_genes("de_ranking")
    elif ds.cells is not None:
        ranking = rank_de_cells(ds.cells)
    else:
        ranking = rank_de_delta(ds.pseudobulk)
    pb = ds.pseudobulk.copy()
    pb.uns.setdefault("de_ranking", {c: g[:keep_ranking] for c, g in ranking.items()})
    pb.uns.setdefault("de20", {c: g[:n] for c, g in ranking.items()})
    if ds.cells is not None and "de20_nondropout" not in pb.uns:
        pb.uns["de20_nondropout"] = nondropout_de(ds.cells, ranking, n=n)
    return dataclasses.replace(ds, pseudobulk=pb, meta=dict(ds.meta))
