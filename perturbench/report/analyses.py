"""Pure analysis functions behind the report: arrays and tables in, numbers and tables out.

Nothing here reads files or draws; :mod:`perturbench.report.sections` and the workflow steps of
:mod:`perturbench.analysis_tables` feed these functions from the results tree. Notation: ``μ`` predicted mean, ``s`` predicted log-variance
(σ = exp(s/2)), ``y`` truth, ``c`` control pseudobulk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import hypergeom, norm, spearmanr

from perturbench.data.features import removed_genes
from perturbench.errors import PerturbenchError
from perturbench.metrics import METRICS
from perturbench.models.registry import registered

# the registered models of kind control / baseline (their registry traits), in registry order
BASELINES = tuple(name for name, spec in registered().items() if spec.kind in ("control", "baseline"))


class AnalysisError(PerturbenchError, ValueError):
    """Inputs to a report analysis do not fit together; the message names the argument."""


# -- dataset card ----------------------------------------------------------------------------
def gene_groups(genes: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean masks over ``genes``: ``MT-`` (what feature set ``no_mt`` removes) and ``RPS/RPL``
    (what ``no_mt_ribo`` removes besides them)."""
    genes = list(genes)
    mt = set(removed_genes(genes, "no_mt"))
    ribo = set(removed_genes(genes, "no_mt_ribo")) - mt
    return {
        "MT-": np.array([g in mt for g in genes], dtype=bool),
        "RPS/RPL": np.array([g in ribo for g in genes], dtype=bool),
    }


def column_variance(x: np.ndarray | sp.spmatrix, *, block_rows: int = 8192) -> np.ndarray:
    """v_g = (1/n) Σ_i (x_ig − x̄_g)², population variance of each column (dense or sparse).

    Sparse input is read in blocks of ``block_rows`` rows (v_g = E[x²] − E[x]², clipped at 0),
    so a large cell matrix is never copied whole.
    """
    n = x.shape[0]
    if n == 0:
        raise AnalysisError("column_variance: no rows")
    if not sp.issparse(x):
        return np.asarray(x, dtype=np.float64).var(axis=0)
    x = sp.csr_matrix(x)
    total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, n, block_rows):
        block = x[start : start + block_rows].astype(np.float64)
        total += np.asarray(block.sum(axis=0)).ravel()
        total_sq += np.asarray(block.multiply(block).sum(axis=0)).ravel()
    return np.maximum(total_sq / n - (total / n) ** 2, 0.0)


def group_shares(per_gene: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, float]:
    """share(S) = Σ_{g∈S} v_g / Σ_g v_g for each group mask S; NaN when Σ_g v_g = 0."""
    per_gene = np.asarray(per_gene, dtype=np.float64)
    total = float(per_gene.sum())
    out = {}
    for name, mask in groups.items():
        if mask.shape != per_gene.shape:
            raise AnalysisError(f"group_shares: mask {name!r} has shape {mask.shape}, values {per_gene.shape}")
        out[name] = float(per_gene[mask].sum() / total) if total > 0 else float("nan")
    return out


def variance_contribution(
    expression: np.ndarray | sp.spmatrix, deltas: np.ndarray, genes: Sequence[str]
) -> pd.DataFrame:
    """Share of expression variance and of perturbation effects carried by MT- and RPS/RPL genes.

    Rows: gene group (:func:`gene_groups`); columns:

    - ``expression_variance``: share of Σ_g Var_i(x_ig) over the rows of ``expression``
      (cells when the dataset has them, else the condition pseudobulks);
    - ``effect_variance``: share of Σ_g Var_k(δ_kg), δ_k = pseudobulk_k − c over perturbation
      conditions k (``deltas``; the variance is shift-invariant, so c does not change it);
    - ``effect_mean_square``: share of Σ_g (1/K) Σ_k δ_kg², which also counts a change every
      perturbation shares (e.g. a generic stress response);
    - ``n_genes``: genes in the group.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    if expression.shape[1] != len(genes) or deltas.shape[1] != len(genes):
        raise AnalysisError(
            f"variance_contribution: {len(genes)} genes but expression {expression.shape}, deltas {deltas.shape}"
        )
    groups = gene_groups(genes)
    columns = {
        "expression_variance": group_shares(column_variance(expression), groups),
        "effect_variance": group_shares(column_variance(deltas), groups),
        "effect_mean_square": group_shares((deltas**2).mean(axis=0), groups),
    }
    table = pd.DataFrame(columns)
    table["n_genes"] = [int(m.sum()) for m in groups.values()]
    return table.rename_axis("group")


def top_up_shares(deltas: np.ndarray, genes: Sequence[str], *, top: int = 50) -> dict[str, float]:
    """Share of each condition's top up-regulated genes that are MT- / RPS/RPL (:func:`gene_groups`).

    For condition k, U_k = the ``top`` genes with the largest δ_kg > 0 (δ_k = pseudobulk_k − c;
    fewer when fewer genes rise). share(S) = Σ_k |U_k ∩ S| / Σ_k |U_k|, pooled over conditions
    (the Replogle-2022 signature figures: ~14% RPS/RPL and ~9% MT- in K562). NaN when no gene rises.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    if deltas.ndim != 2 or deltas.shape[1] != len(genes):
        raise AnalysisError(f"top_up_shares: deltas {deltas.shape} do not match {len(genes)} genes")
    if top < 1:
        raise AnalysisError(f"top_up_shares: top must be >= 1, got {top!r}")
    k = min(top, deltas.shape[1])
    order = np.argsort(-deltas, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(deltas, order, axis=1) > 0
    n_up = int(chosen.sum())
    out = {}
    for name, mask in gene_groups(genes).items():
        hits = int((mask[order] & chosen).sum())
        out[name] = hits / n_up if n_up else float("nan")
    return out


# -- uncertainty ------------------------------------------------------------------------------
def _checked_triplet(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in (mean, logvar, truth)]
    shapes = {np.shape(a) for a in (mean, logvar, truth)}
    if len(shapes) != 1:
        raise AnalysisError(f"calibration: mean, logvar and truth shapes differ: {sorted(shapes)}")
    if arrays[0].size == 0:
        raise AnalysisError("calibration: no values")
    return tuple(arrays)


def gaussian_nll(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> float:
    """(1/N) Σ ½ [log 2π + s + (y − μ)² e^{−s}] over all entries."""
    mu, s, y = _checked_triplet(mean, logvar, truth)
    return float(np.mean(0.5 * (np.log(2 * np.pi) + s + (y - mu) ** 2 * np.exp(-s))))


def interval_coverage(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray, level: float) -> float:
    """(1/N) Σ 1[|y − μ| ≤ z σ], z = Φ⁻¹((1 + level)/2): how often the central ``level`` interval holds y."""
    if not 0.0 < level < 1.0:
        raise AnalysisError(f"interval_coverage: level must lie in (0, 1), got {level!r}")
    mu, s, y = _checked_triplet(mean, logvar, truth)
    z = norm.ppf(0.5 + level / 2)
    return float(np.mean(np.abs(y - mu) <= z * np.exp(s / 2)))


def condition_spearman(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> float:
    """Spearman ρ over conditions (rows, (C, G) arrays) of σ̄_c = √(mean_g σ²_cg) and
    e_c = √(mean_g (y_cg − μ_cg)²): does σ say which conditions are predicted worse.

    NaN with fewer than 3 conditions or when either side is constant.
    """
    _checked_triplet(mean, logvar, truth)
    mu, s, y = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (mean, logvar, truth))
    sigma, err = np.sqrt(np.exp(s).mean(axis=1)), np.sqrt(((y - mu) ** 2).mean(axis=1))  # (C,), (C,)
    if len(sigma) < 3 or np.all(sigma == sigma[0]) or np.all(err == err[0]):
        return float("nan")
    return float(spearmanr(sigma, err).statistic)


def calibration(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Gaussian NLL, coverage of the 50% and 90% central intervals, Spearman ρ(σ, |y − μ|) pooled
    over every (condition, gene) value, and :func:`condition_spearman` (per-condition scale).

    The pooled ρ is NaN when σ or |y − μ| is constant (a model without real uncertainty scores).
    Even a perfect Gaussian σ keeps it well below 1: |y − μ| = σ·|z| with z ~ N(0, 1), and
    var(log|z|) = π²/8 ≈ 1.23 swamps the spread of log σ across values.
    """
    mu, s, y = _checked_triplet(mean, logvar, truth)
    err, sigma = np.abs(y - mu), np.exp(s / 2)
    constant = np.all(sigma == sigma[0]) or np.all(err == err[0])
    rho = float("nan") if constant else float(spearmanr(sigma, err).statistic)
    return {
        "nll": gaussian_nll(mu, s, y),
        "coverage50": interval_coverage(mu, s, y, 0.5),
        "coverage90": interval_coverage(mu, s, y, 0.9),
        "spearman_sigma_abs_error": rho,
        "spearman_condition": condition_spearman(mean, logvar, truth),
        "n": int(mu.size),
    }


# -- what the models learned ------------------------------------------------------------------
def top_changed_genes(
    pred: np.ndarray, ctrl: np.ndarray, genes: Sequence[str], *, top: int = 5, min_change: float = 1e-5
) -> list[list[str]]:
    """Per row of ``pred``, the ``top`` genes with the largest |p_g − c_g| > ``min_change``.

    Ties go to the earlier gene. ``min_change`` keeps float32 rounding of stored predictions
    (a model predicting control) from counting as a change, so such rows give shorter lists.
    """
    pred = np.atleast_2d(np.asarray(pred, dtype=np.float64))
    if pred.shape[1] != len(genes) or np.shape(ctrl) != (len(genes),):
        raise AnalysisError(f"top_changed_genes: pred {pred.shape}, ctrl {np.shape(ctrl)} vs {len(genes)} genes")
    if top < 1:
        raise AnalysisError(f"top_changed_genes: top must be >= 1, got {top!r}")
    change = np.abs(pred - ctrl)
    order = np.argsort(-change, axis=1, kind="stable")[:, :top]
    return [[genes[j] for j in row if change[i, j] > min_change] for i, row in enumerate(order)]


def recurrent_genes(top_lists: Sequence[Sequence[str]]) -> pd.DataFrame:
    """How often each gene appears among the per-perturbation top lists.

    Columns ``gene, count, n, fraction`` (count = k lists of n containing the gene, fraction = k/n),
    sorted by count (descending), then gene.
    """
    n = len(top_lists)
    counts = pd.Series([g for lst in top_lists for g in dict.fromkeys(lst)], dtype=str).value_counts()
    table = pd.DataFrame({"gene": counts.index.astype(str), "count": counts.to_numpy(dtype=int)})
    table["n"] = n
    table["fraction"] = table["count"] / n if n else np.nan
    return table.sort_values(["count", "gene"], ascending=[False, True], ignore_index=True)


def attribution_agreement(attributions: Mapping[str, Mapping[str, float]], *, k: int = 20) -> pd.DataFrame:
    """Agreement of gene attributions between every pair of models.

    For models a, b over their shared genes G_ab: ``spearman`` = Spearman ρ of the signed values
    (NaN when fewer than 3 shared genes or a constant vector); ``overlap`` = |T_a ∩ T_b| where
    T_m is the set of model m's ``k`` genes with the largest |value| over G_ab (ties: gene name).
    Columns ``model_a, model_b, spearman, overlap, k, n_shared``; both orders and the diagonal.
    """
    if k < 1:
        raise AnalysisError(f"attribution_agreement: k must be >= 1, got {k!r}")
    rows = []
    for a, va in attributions.items():
        for b, vb in attributions.items():
            shared = sorted(set(va) & set(vb))
            xa = np.array([va[g] for g in shared], dtype=np.float64)
            xb = np.array([vb[g] for g in shared], dtype=np.float64)
            rows.append((a, b, _spearman(xa, xb), len(_top_abs(shared, xa, k) & _top_abs(shared, xb, k)),
                         min(k, len(shared)), len(shared)))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "spearman", "overlap", "k", "n_shared"])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _top_abs(genes: Sequence[str], values: np.ndarray, k: int) -> set[str]:
    order = sorted(range(len(genes)), key=lambda i: (-abs(values[i]), genes[i]))
    return {genes[i] for i in order[:k]}


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """q_(i) = min_{j ≥ i} min(1, m · p_(j) / j) over the ascending p-values p_(1) ≤ … ≤ p_(m)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise AnalysisError("benjamini_hochberg: p-values must lie in [0, 1] (no NaN)")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    q = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty_like(q)
    out[order] = q
    return out


def go_enrichment(
    query: Sequence[str], background: Sequence[str], gene2go: Mapping[str, frozenset[str]]
) -> pd.DataFrame:
    """Hypergeometric over-representation of GO terms among ``query`` genes.

    Universe: the ``background`` genes with ≥ 1 GO term (N of them); n = query genes in it;
    per term t, K = universe genes annotated with t, k = query genes annotated with t;
    p = P[X ≥ k], X ~ Hypergeometric(N, K, n); q = Benjamini–Hochberg over every term with K ≥ 1.
    Columns ``term, k, n, K, N, p, q``; rows with k ≥ 1, sorted by p, then term.
    """
    universe = sorted({g for g in background if gene2go.get(g)})
    chosen = sorted(set(query) & set(universe))
    columns = ["term", "k", "n", "K", "N", "p", "q"]
    if not chosen:
        return pd.DataFrame(columns=columns)
    term_size: dict[str, int] = {}
    for g in universe:
        for t in gene2go[g]:
            term_size[t] = term_size.get(t, 0) + 1
    hits: dict[str, int] = {}
    for g in chosen:
        for t in gene2go[g]:
            hits[t] = hits.get(t, 0) + 1
    terms = sorted(term_size)
    k = np.array([hits.get(t, 0) for t in terms])
    big_k = np.array([term_size[t] for t in terms])
    p = hypergeom.sf(k - 1, len(universe), big_k, len(chosen))
    table = pd.DataFrame({"term": terms, "k": k, "n": len(chosen), "K": big_k, "N": len(universe),
                          "p": np.clip(p, 0.0, 1.0)})
    table["q"] = benjamini_hochberg(table["p"].to_numpy())
    table = table[table["k"] >= 1]
    return table.sort_values(["p", "term"], ignore_index=True)


# -- results ----------------------------------------------------------------------------------
def relative_error(table: pd.DataFrame, *, reference: str = "mean", metric: str = "l2_top1000") -> pd.DataFrame:
    """Per condition, ``ratio`` = metric(model) / metric(reference) on the same featureset, seed and
    condition (< 1: the model errs less than the reference). NaN where the reference is 0 or NaN.

    ``table``: the long per-condition table (columns featureset, model, seed, condition, subgroup,
    metric, value). Returns its keys plus ``model, ratio`` for every model but the reference.
    """
    need = {"featureset", "model", "seed", "condition", "subgroup", "metric", "value"}
    if not need <= set(table.columns):
        raise AnalysisError(f"relative_error: table lacks columns {sorted(need - set(table.columns))}")
    sub = table[table["metric"] == metric]
    if not (sub["model"] == reference).any():
        raise AnalysisError(f"relative_error: reference model {reference!r} has no {metric!r} values")
    keys = ["featureset", "seed", "condition", "subgroup"]
    ref = sub[sub["model"] == reference][keys + ["value"]].rename(columns={"value": "reference"})
    out = sub[sub["model"] != reference].merge(ref, on=keys, how="inner")
    denom = out["reference"].where(out["reference"] != 0)
    out = out.assign(ratio=out["value"] / denom)
    return out[keys + ["model", "ratio"]].reset_index(drop=True)


def per_gene_sd(x: np.ndarray) -> np.ndarray:
    """sd_g = √((1/n) Σ_k (x_kg − x̄_g)²) across the rows (test conditions) of ``x``."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[0] == 0:
        raise AnalysisError("per_gene_sd: no rows")
    return x.std(axis=0)


def ceiling_by_subgroup(ceiling: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """Mean noise ceiling per test subgroup, pooled over seeds like the metric summaries.

    ``ceiling``: :func:`perturbench.evaluate.noise_ceiling` output; ``assignments``: columns
    ``seed, condition, subgroup``. Output columns ``subgroup, n, r_half, r_full, mse_de20_floor``
    (NaN-skipping means over (seed, condition) pairs; n counts pairs with a finite r_full), with a
    final ``all`` row.
    """
    joined = assignments.merge(ceiling, on="condition", how="inner")
    pooled = pd.concat([joined, joined.assign(subgroup="all")], ignore_index=True)
    stats = ["r_half", "r_full", "mse_de20_floor"]
    out = pooled.groupby("subgroup", sort=False)[stats].mean()
    out.insert(0, "n", pooled.groupby("subgroup", sort=False)["r_full"].count())
    return out.reset_index()
