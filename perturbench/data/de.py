"""Differentially expressed (DE) genes per condition, stored in ``pseudobulk.uns``.

Three rankings, all "condition → genes, most changed first":

- cells: Welch t-test of each condition's cells against the ``ctrl`` cells, ranked by ``|t|``
  (scanpy ``rank_genes_groups(method='t-test', reference='ctrl', rankby_abs=True)``, the ranking
  GEARS and most Perturb-seq benchmarks use). The fast path (``method='welch'``) computes every
  condition's t statistics at once from per-condition sums (:func:`group_sums`,
  :func:`welch_t`); ``method='scanpy'`` calls scanpy itself and is the slow reference;
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
import itertools
import warnings
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.data.conditions import CTRL
from perturbench.data.contract import DatasetError, PerturbDataset

DeMethod = Literal["welch", "scanpy"]
BLOCK_ROWS = 16384  # cells per block of group_sums: bounds the float64 working copy of X


def _dense(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _row_block(x: np.ndarray | sp.spmatrix, start: int, stop: int) -> np.ndarray | sp.spmatrix:
    """Rows ``start:stop`` of ``x``; for CSR a matrix on views of X's arrays (scipy's row
    slicing copies them entry by entry)."""
    if not (sp.issparse(x) and x.format == "csr"):
        return x[start:stop]
    lo, hi = x.indptr[start], x.indptr[stop]
    return sp.csr_matrix(
        (x.data[lo:hi], x.indices[lo:hi], x.indptr[start : stop + 1] - lo), shape=(stop - start, x.shape[1])
    )


def _squared(block: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Element-wise square in the block's own dtype (sparsity kept)."""
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        return sp.csr_matrix((block.data * block.data, block.indices, block.indptr), shape=block.shape)
    block = np.asarray(block)
    return block * block


def group_sums(
    x: np.ndarray | sp.spmatrix, codes: np.ndarray, n_groups: int, *, squares: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-group sums ``S1 = Iᵀ·X`` and (``squares``) ``S2 = Iᵀ·(X∘X)``, float64 (n_groups, n_genes).

    ``I`` is the (cells × groups) indicator of ``codes`` (cell i belongs to group ``codes[i]``).
    The product runs over blocks of :data:`BLOCK_ROWS` cells, so only one block of X is ever
    upcast; each group's cells are summed in row order. The squares are taken in X's dtype
    (as scanpy's mean/variance does) and summed in float64.
    """
    n_cells, n_genes = x.shape
    s1 = np.zeros((n_groups, n_genes))
    s2 = np.zeros((n_groups, n_genes)) if squares else None
    for start in range(0, n_cells, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_cells)
        block = _row_block(x, start, stop)
        indicator = sp.csr_matrix(
            (np.ones(stop - start), (codes[start:stop], np.arange(stop - start))), shape=(n_groups, stop - start)
        )
        s1 += _dense(indicator @ block)
        if s2 is not None:
            s2 += _dense(indicator @ _squared(block))
    return s1, s2


def welch_t(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, ref: int) -> np.ndarray:
    """Welch t statistic of every group against group ``ref``, shape (n_groups, n_genes).

    With ``m = S1/n`` and the unbiased variance ``v = (S2/n − m²)·n/(n−1)``:
    ``t_k = (m_k − m_ref) / sqrt(v_k/n_k + v_ref/n_ref)``. As in scanpy (which hands
    ``std = sqrt(v)`` to scipy's ``ttest_ind_from_stats``), ``v`` goes through ``sqrt(v)²``, so a
    variance rounded below zero gives NaN, and NaN scores (equal means, zero variances) become 0;
    a mean difference over zero variances stays ±inf. Rows of groups with ``n < 2`` are meaningless.
    """
    n = np.asarray(n, dtype=np.float64)[:, None]
    mean = s1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 / n - mean**2) * (n / (n - 1))
        var = np.sqrt(var) ** 2
        t = (mean - mean[ref]) / np.sqrt(var / n + var[ref] / n[ref])
    t[np.isnan(t)] = 0.0
    return t


def top_by_abs(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``|scores|``, largest first, ties in scanpy's order.

    scanpy's ``rank_genes_groups`` partitions the top ``n`` with ``argpartition``, sorts them with
    the default ``argsort`` and reverses; doing the same keeps tied genes (e.g. the score-0 genes
    unexpressed in both groups) in the same order.
    """
    key = np.abs(scores)
    top = np.argpartition(key, -n)[-n:]
    return top[np.argsort(key[top])[::-1]]


def _group_codes(cells: ad.AnnData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Conditions (sorted), each cell's index into them, and the cells per condition."""
    labels = cells.obs["condition"].astype(str).to_numpy()
    names, codes = np.unique(labels, return_inverse=True)
    return [str(c) for c in names], codes, np.bincount(codes, minlength=len(names))


def _rank_by_abs(delta: np.ndarray, genes: pd.Index) -> list[str]:
    order = np.argsort(-np.abs(delta), kind="stable")
    return [str(g) for g in genes[order]]


def _rank_scanpy(cells: ad.AnnData, tested: list[str], n: int) -> dict[str, list[str]]:
    """The reference: scanpy's ``rank_genes_groups`` t-test (imported here: scanpy is heavy)."""
    import scanpy as sc

    labels = cells.obs["condition"].astype(str).to_numpy()
    work = ad.AnnData(
        cells.X,
        obs=pd.DataFrame({"condition": pd.Categorical(labels)}, index=cells.obs_names),
        var=pd.DataFrame(index=cells.var_names),
    )
    work.uns["log1p"] = {"base": None}
    with warnings.catch_warnings():  # scanpy builds its result frame column by column
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        sc.tl.rank_genes_groups(
            work, "condition", groups=tested, reference=CTRL, method="t-test", rankby_abs=True, n_genes=n,
            use_raw=False,
        )
    names = work.uns["rank_genes_groups"]["names"]
    return {c: [str(g) for g in names[c]] for c in tested}


def rank_de_cells(
    cells: ad.AnnData, *, n_genes: int | None = None, method: DeMethod = "welch"
) -> dict[str, list[str]]:
    """Condition → genes ranked by the Welch t-test against ``ctrl`` cells, by ``|t|``.

    ``cells.obs['condition']`` must be canonical and contain ``ctrl`` with at least 2 cells.
    ``n_genes=None`` returns the full ranking. ``method='welch'`` (:func:`welch_t` on
    :func:`group_sums`, ties ordered by :func:`top_by_abs`) gives scanpy's rankings without
    scanpy; ``method='scanpy'`` runs ``sc.tl.rank_genes_groups`` (the slow reference). Conditions
    with a single cell cannot be t-tested; they are ranked by ``|x_cell − mean_ctrl|`` instead
    (a warning names them). ``cells`` is not modified.
    """
    if method not in ("welch", "scanpy"):
        raise ValueError(f"method must be 'welch' or 'scanpy', got {method!r}")
    if n_genes is not None and n_genes < 1:
        raise ValueError(f"n_genes must be at least 1, got {n_genes!r}")
    names, codes, counts = _group_codes(cells)
    row = {c: i for i, c in enumerate(names)}
    n_ctrl = int(counts[row[CTRL]]) if CTRL in row else 0
    if n_ctrl < 2:
        raise DatasetError(f"obs['condition']: need at least 2 {CTRL!r} cells for the t-test, got {n_ctrl}")
    tested = [c for c, k in zip(names, counts, strict=True) if c != CTRL and k >= 2]
    single = [c for c, k in zip(names, counts, strict=True) if c != CTRL and k < 2]
    n = cells.n_vars if n_genes is None else min(n_genes, cells.n_vars)
    s1, s2 = group_sums(cells.X, codes, len(names), squares=method == "welch")
    if method == "scanpy":
        out = _rank_scanpy(cells, tested, n) if tested else {}
    else:
        scores = welch_t(s1, s2, counts, row[CTRL])
        genes = np.asarray(cells.var_names.astype(str), dtype=object)
        out = {c: genes[top_by_abs(scores[row[c]], n)].tolist() for c in tested}
    if single:
        warnings.warn(
            f"{len(single)} condition(s) have one cell; ranked by |x - ctrl| instead of a t-test: "
            f"{single[:5]}",
            stacklevel=2,
        )
        ctrl = s1[row[CTRL]] / n_ctrl
        for c in single:
            out[c] = _rank_by_abs(s1[row[c]] - ctrl, cells.var_names)[:n]
    return {c: out[c] for c in sorted(out)}


def nondropout_de(cells: ad.AnnData, ranking: dict[str, list[str]], *, n: int = 20) -> dict[str, list[str]]:
    """GEARS non-dropout DE genes: the first ``n`` genes of each ranking that are not dropouts.

    Gene g is a dropout for condition c when ``mean_c[g] == 0`` and ``mean_ctrl[g] != 0`` (means
    over c's cells and over the ``ctrl`` cells, as in GEARS ``get_dropout_non_zero_genes``; a
    mean is zero exactly when the sum is, from :func:`group_sums`). Conditions of ``ranking``
    without cells in ``cells`` (e.g. after ``subset``) are skipped.
    """
    names, codes, _ = _group_codes(cells)
    zero = group_sums(cells.X, codes, len(names))[0] == 0
    dropout = zero & ~zero[names.index(CTRL)]
    row = {c: i for i, c in enumerate(names)}
    col = {g: i for i, g in enumerate(cells.var_names)}
    out = {}
    for cond, genes in ranking.items():
        if cond not in row:
            continue
        drop = dropout[row[cond]]
        out[cond] = list(itertools.islice((g for g in genes if not drop[col[g]]), n))
    return out


def nondropout_from_pseudobulk(pb: ad.AnnData, ranking: dict[str, list[str]], *, n: int = 20) -> dict[str, list[str]]:
    """:func:`nondropout_de` from the pseudobulk of non-negative cells: a condition's mean of gene
    g is zero exactly when its pseudobulk entry is, so the dropout rule needs no cells."""
    x = _dense(pb.X)
    zero = x == 0
    dropout = zero & ~zero[pb.obs_names.get_loc(CTRL)]
    row = {str(c): i for i, c in enumerate(pb.obs_names)}
    col = {g: i for i, g in enumerate(pb.var_names)}
    return {cond: list(itertools.islice((g for g in genes if not dropout[row[cond], col[g]]), n))
            for cond, genes in ranking.items() if cond in row}


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
