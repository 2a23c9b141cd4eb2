"""Evaluation above the metrics: per-condition tables, pooled summaries, noise ceilings, tests.

- :func:`evaluate_prediction` (arrays), :func:`evaluate` (a :class:`Prediction`),
  :func:`evaluate_prediction_file` (a prediction file): one long table (``condition,
  subgroup, metric, value``) per model run, every metric of :data:`perturbench.metrics.METRICS`.
- :func:`summarize`: mean and percentile-bootstrap 95% CI per (featureset, model, subgroup,
  metric), pooled over seeds and conditions, plus the subgroup ``all``.
- :func:`noise_ceiling`: split-half reproducibility of each condition's measured response
  (:func:`replicate_noise_ceiling`: the same from a pseudobulk table's replicate layers).
- :func:`paired_wilcoxon`: paired test of two models on the conditions/seeds they share.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import wilcoxon

from perturbench.errors import PerturbenchError
from perturbench.data.conditions import CTRL
from perturbench.data.contract import PerturbDataset
from perturbench.metrics import ConditionArrays, compute_metrics, pearson_r, top_expressed, truth_distances
from perturbench.models.base import Prediction

TABLE_COLUMNS = ["condition", "subgroup", "metric", "value"]
RUN_COLUMNS = ["featureset", "model", "seed", "condition", "subgroup", "metric", "value"]
SUMMARY_COLUMNS = ["featureset", "model", "subgroup", "metric", "mean", "ci_low", "ci_high", "n"]
ALL_SUBGROUP = "all"


class EvaluationError(PerturbenchError, ValueError):
    """Inputs to an evaluation step do not fit together; the message names what and where."""


def _gene_positions(
    de: Mapping[str, Sequence[str]], conditions: Sequence[str], genes: Sequence[str]
) -> list[np.ndarray]:
    """Per condition, positions in ``genes`` of its DE genes (genes not in the list are ignored)."""
    pos = {g: i for i, g in enumerate(genes)}
    return [np.array([pos[g] for g in de.get(c, []) if g in pos], dtype=np.int64) for c in conditions]


def evaluate_prediction(
    pred_mean: np.ndarray,
    conditions: list[str],
    data: PerturbDataset,
    *,
    subgroups: dict[str, str],
    train_conditions: list[str],
    pert_ref: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every registered metric for every predicted condition, as a long table.

    ``pred_mean`` is (len(conditions), len(data.genes)), rows in ``conditions`` order. Truth is
    ``data.expression(conditions)``, control ``data.ctrl``, the perturbation reference the mean
    of ``data.expression(train_conditions)`` (``ctrl`` excluded) unless ``pert_ref`` is given
    (a cell split: the mean of the *training* cells' pseudobulks), ``top1000``
    :func:`~perturbench.metrics.top_expressed` of control, DE genes from
    ``data.de_genes('de20')`` and ``('de20_nondropout')`` (None for every condition when the
    dataset has no non-dropout lists). Rows are sorted by condition, then metric.
    """
    pred_mean = np.asarray(pred_mean, dtype=np.float64)
    expected = (len(conditions), len(data.genes))
    if pred_mean.shape != expected:
        raise EvaluationError(f"{data.name}: prediction shape {pred_mean.shape} != {expected} (conditions × genes)")
    if len(set(conditions)) != len(conditions):
        raise EvaluationError(f"{data.name}: repeated conditions in the prediction")
    unassigned = [c for c in conditions if c not in subgroups]
    if unassigned:
        raise EvaluationError(f"{data.name}: conditions without a subgroup: {unassigned[:5]}")
    refs = [c for c in train_conditions if c != CTRL]
    if not refs:
        raise EvaluationError(f"{data.name}: no training perturbations for the perturbation reference")
    truths = data.expression(conditions)
    ctrl = data.ctrl
    pert_ref = data.expression(refs).mean(axis=0) if pert_ref is None else np.asarray(pert_ref, dtype=np.float64)
    top1000 = top_expressed(ctrl)
    de20 = _gene_positions(data.de_genes("de20"), conditions, data.genes)
    nondrop_lists = data.de_genes("de20_nondropout")
    nondrop = _gene_positions(nondrop_lists, conditions, data.genes) if nondrop_lists else None
    distances = truth_distances(pred_mean, truths)
    rows = []
    for i, cond in enumerate(conditions):
        x = ConditionArrays(
            pred=pred_mean[i], truth=truths[i], ctrl=ctrl, pert_ref=pert_ref, top1000=top1000, de20=de20[i],
            de20_nondropout=None if nondrop is None else nondrop[i], all_truths=truths, index=i,
            truth_distances=distances[i],
        )
        rows += [(cond, subgroups[cond], name, value) for name, value in compute_metrics(x).items()]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(["condition", "metric"], kind="stable", ignore_index=True)


def evaluate(
    prediction: Prediction,
    data: PerturbDataset,
    *,
    subgroups: dict[str, str],
    train_conditions: list[str],
    pert_ref: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`evaluate_prediction` on a model's :class:`Prediction` after checking it fits ``data``.

    Conditions the model skipped (``prediction.skipped``) have no rows; report them separately.
    """
    if list(prediction.genes) != list(data.genes):
        raise EvaluationError(
            f"model {prediction.model!r}: predicted genes differ from dataset {data.name!r} genes "
            f"({len(prediction.genes)} vs {len(data.genes)}; order matters)"
        )
    extra = [c for c in prediction.conditions if c not in subgroups]
    if extra:
        raise EvaluationError(
            f"model {prediction.model!r}: predicted conditions not in the test subgroups: {extra[:5]}"
        )
    return evaluate_prediction(
        prediction.mean, list(prediction.conditions), data, subgroups=subgroups, train_conditions=train_conditions,
        pert_ref=pert_ref,
    )


def evaluate_prediction_file(
    path: str | Path,
    data: PerturbDataset,
    *,
    subgroups: dict[str, str],
    train_conditions: list[str],
    pert_ref: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`evaluate` on the prediction file at ``path`` (format: :mod:`perturbench.models.base`)."""
    return evaluate(Prediction.read(path), data, subgroups=subgroups, train_conditions=train_conditions,
                    pert_ref=pert_ref)


def _bootstrap_ci(values: np.ndarray, *, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean: 2.5th/97.5th percentiles of ``n_boot`` resample means."""
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarize(table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean and 95% CI of each metric per (featureset, model, subgroup, metric).

    Rows of ``table`` (columns :data:`RUN_COLUMNS`) are pooled over seeds and conditions and
    treated as exchangeable; NaN values are dropped and ``n`` counts the rest. The CI is the
    percentile bootstrap of the mean: ``n_boot`` resamples (with replacement) of the group's
    sorted values, drawn from ``np.random.default_rng(seed)`` afresh for each group, so a
    group's CI depends neither on the other groups nor on the input row order. The extra
    subgroup ``all`` pools every subgroup. Output rows are sorted by featureset, model,
    subgroup, metric.
    """
    missing = [c for c in RUN_COLUMNS if c not in table.columns]
    if missing:
        raise EvaluationError(f"summarize: table lacks columns {missing}")
    if n_boot < 1:
        raise EvaluationError(f"summarize: n_boot must be >= 1, got {n_boot}")
    if (table["subgroup"] == ALL_SUBGROUP).any():
        raise EvaluationError(f"summarize: subgroup name {ALL_SUBGROUP!r} is reserved for the pooled summary")
    pooled = pd.concat([table, table.assign(subgroup=ALL_SUBGROUP)], ignore_index=True)
    keys = ["featureset", "model", "subgroup", "metric"]
    rows = []
    for key, group in pooled.groupby(keys, sort=True):
        values = group["value"].to_numpy(dtype=np.float64)
        values = np.sort(values[~np.isnan(values)])
        low, high = _bootstrap_ci(values, n_boot=n_boot, seed=seed)
        mean = float(values.mean()) if values.size else float("nan")
        rows.append((*key, mean, low, high, int(values.size)))
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return out.sort_values(keys, kind="stable", ignore_index=True)


def _row_mean(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(x.mean(axis=0), dtype=np.float64).ravel()


def noise_ceiling(
    cells: ad.AnnData,
    conditions: Sequence[str],
    *,
    ctrl_label: str = CTRL,
    seed: int,
    de_genes: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Split-half reproducibility of each condition's measured response.

    For condition k with n ≥ 2 cells, a random split into halves A (⌊n/2⌋ cells) and B (the
    rest) gives pseudobulks a, b; with c the mean of all control cells:

    - ``r_half`` = corr(a − c, b − c) (Pearson, all genes; NaN when a delta is constant);
    - ``r_full`` = 2·r_half / (1 + r_half), the Spearman–Brown estimate for the full-size
      pseudobulk (NaN when r_half ≤ −1);
    - ``mse_de20_half`` = (1/|S|) Σ_{g∈S} (a_g − b_g)² over the condition's DE genes S (from
      ``de_genes``; NaN without them). For halves of size n/2 it estimates 4σ²/n, so
      ``mse_de20_floor`` = mse_de20_half / 4 estimates σ²/n, the expected ``mse_de20`` of a
      prediction equal to the true population mean.

    The split of condition k uses ``default_rng([seed, crc32(k)])``: it does not depend on the
    other conditions asked for. Conditions with fewer than 2 cells give NaN rows.
    Output columns: condition, n_cells, r_half, r_full, mse_de20_half, mse_de20_floor.
    """
    if "condition" not in cells.obs:
        raise EvaluationError("noise_ceiling: cells.obs lacks column 'condition'")
    labels = cells.obs["condition"].astype(str).to_numpy()
    if not (labels == ctrl_label).any():
        raise EvaluationError(f"noise_ceiling: no control cells labelled {ctrl_label!r}")
    absent = [c for c in conditions if not (labels == c).any()]
    if absent:
        raise EvaluationError(f"noise_ceiling: conditions with no cells: {list(absent)[:5]}")
    ctrl = _row_mean(cells.X[labels == ctrl_label])
    pos = {g: i for i, g in enumerate(cells.var_names)}
    rows = []
    for cond in conditions:
        idx = np.flatnonzero(labels == cond)
        de = np.array([pos[g] for g in (de_genes or {}).get(cond, []) if g in pos], dtype=np.int64)
        rows.append((cond, idx.size, *_split_half(cells.X, idx, ctrl, de, seed=seed, key=cond)))
    columns = ["condition", "n_cells", "r_half", "r_full", "mse_de20_half", "mse_de20_floor"]
    return pd.DataFrame(rows, columns=columns)


def split_half_means(
    x: np.ndarray | sp.spmatrix, idx: np.ndarray, *, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Mean rows of ``x`` over the two halves of cells ``idx`` (⌊n/2⌋ and the rest, n ≥ 2), split by
    ``default_rng([seed, crc32(key)])`` as :func:`noise_ceiling` does."""
    perm = np.random.default_rng([seed, zlib.crc32(key.encode())]).permutation(idx)
    half = idx.size // 2
    return _row_mean(x[np.sort(perm[:half])]), _row_mean(x[np.sort(perm[half:])])


def _split_half(
    x: np.ndarray | sp.spmatrix, idx: np.ndarray, ctrl: np.ndarray, de: np.ndarray, *, seed: int, key: str
) -> tuple[float, float, float, float]:
    """(r_half, r_full, mse_de20_half, mse_de20_floor) for one condition's cells ``idx``."""
    nan = float("nan")
    if idx.size < 2:
        return nan, nan, nan, nan
    a, b = split_half_means(x, idx, seed=seed, key=key)
    return _half_stats(a, b, ctrl, de)


def _half_stats(a: np.ndarray, b: np.ndarray, ctrl: np.ndarray, de: np.ndarray) -> tuple[float, float, float, float]:
    """(r_half, r_full, mse_de20_half, mse_de20_floor) of two half pseudobulks (:func:`noise_ceiling`)."""
    nan = float("nan")
    r = pearson_r(a - ctrl, b - ctrl)
    r_full = 2 * r / (1 + r) if r > -1 else nan
    mse_half = float(np.mean((a[de] - b[de]) ** 2)) if de.size else nan
    return r, float(r_full), mse_half, mse_half / 4


def replicate_noise_ceiling(
    pseudobulk: ad.AnnData, conditions: Sequence[str], *, de_genes: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """:func:`noise_ceiling` from split-half replicate means stored in a pseudobulk table.

    Layers ``replicate1`` and ``replicate2`` (conditions × genes, :mod:`perturbench.data.tables`)
    are the halves a, b; c is the pseudobulk ``ctrl`` row (the mean of its halves). Same formulas
    and columns as :func:`noise_ceiling`; ``n_cells`` is ``obs['n_cells']`` (0 = unknown).
    """
    missing = [k for k in ("replicate1", "replicate2") if k not in pseudobulk.layers]
    if missing:
        raise EvaluationError(f"replicate_noise_ceiling: pseudobulk lacks layers {missing}")
    absent = [c for c in conditions if c not in pseudobulk.obs_names]
    if absent:
        raise EvaluationError(f"replicate_noise_ceiling: conditions not in the pseudobulk: {list(absent)[:5]}")
    rows_of = {c: i for i, c in enumerate(pseudobulk.obs_names)}
    x = np.asarray(pseudobulk.X.toarray() if sp.issparse(pseudobulk.X) else pseudobulk.X, dtype=np.float64)
    a, b = (np.asarray(pseudobulk.layers[k], dtype=np.float64) for k in ("replicate1", "replicate2"))
    ctrl = x[rows_of[CTRL]]
    pos = {g: i for i, g in enumerate(pseudobulk.var_names)}
    n_cells = pseudobulk.obs["n_cells"] if "n_cells" in pseudobulk.obs else pd.Series(0, index=pseudobulk.obs_names)
    rows = []
    for cond in conditions:
        de = np.array([pos[g] for g in (de_genes or {}).get(cond, []) if g in pos], dtype=np.int64)
        i = rows_of[cond]
        rows.append((cond, int(n_cells.iloc[i]), *_half_stats(a[i], b[i], ctrl, de)))
    columns = ["condition", "n_cells", "r_half", "r_full", "mse_de20_half", "mse_de20_floor"]
    return pd.DataFrame(rows, columns=columns)


def paired_wilcoxon(table: pd.DataFrame, *, model: str, reference: str, metric: str) -> tuple[float, float, int]:
    """Two-sided Wilcoxon signed-rank test of ``model`` vs ``reference`` on one metric.

    Pairs are the (featureset, seed, condition) entries — whichever of those columns ``table``
    has — where both models have a non-NaN value. Returns (statistic, p-value, n pairs), with
    NaN statistic and p-value when there are no pairs or every difference is zero.
    """
    need = ["model", "condition", "metric", "value"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise EvaluationError(f"paired_wilcoxon: table lacks columns {missing}")
    known = set(table["model"])
    for name in (model, reference):
        if name not in known:
            raise EvaluationError(f"paired_wilcoxon: model {name!r} not in table (models: {sorted(known)})")
    if not (table["metric"] == metric).any():
        raise EvaluationError(f"paired_wilcoxon: metric {metric!r} not in table")
    keys = [c for c in ("featureset", "seed", "condition") if c in table.columns]
    sub = table[(table["metric"] == metric) & table["model"].isin([model, reference])]
    if sub.duplicated(keys + ["model"]).any():
        raise EvaluationError(f"paired_wilcoxon: repeated {keys} rows for metric {metric!r}")
    wide = sub.pivot(index=keys, columns="model", values="value").dropna()
    if wide.empty or model not in wide or reference not in wide:
        return float("nan"), float("nan"), 0
    diff = wide[model].to_numpy(dtype=np.float64) - wide[reference].to_numpy(dtype=np.float64)
    if not np.any(diff):
        return float("nan"), float("nan"), int(diff.size)
    res = wilcoxon(diff)
    return float(res.statistic), float(res.pvalue), int(diff.size)
