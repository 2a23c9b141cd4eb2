"""Per-condition metrics: pure functions of numpy arrays, registered once in :data:`METRICS`.

Every metric takes one :class:`ConditionArrays` (the prediction and truth for one held-out
condition plus the context some metrics need) and returns a float. Notation in the formulas:
``p`` = predicted mean expression, ``t`` = true pseudobulk, ``c`` = control pseudobulk,
``r`` = perturbation reference (mean of the training perturbation pseudobulks), ``S`` = a gene
index set, ``corr`` = Pearson correlation (:func:`pearson_r`).

Conventions (they differ from other benchmarks; see each docstring):

- A Pearson correlation of a constant vector is **NaN**, not 0 (GEARS maps NaN to 0; cell-eval
  lets scipy return NaN). The control baseline predicts ``p = c`` and so gets NaN for every
  delta correlation; summaries skip NaN and report how many values they pooled.
- Deltas are taken against the *true* control for prediction and truth alike (cell-eval takes
  the predicted delta against the prediction's own control cells).
- A metric over an empty gene set (a condition without DE genes) is NaN.

This module imports nothing of perturbench but :mod:`perturbench.metric_inputs` (the validated
input, re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perturbench.metric_inputs import ConditionArrays, MetricInputError

NAN = float("nan")


def top_expressed(ctrl: np.ndarray, k: int = 1000) -> np.ndarray:
    """Sorted indices of the ``k`` genes with the highest control expression.

    All genes when there are at most ``k`` genes or ``ctrl`` is all zero (delta-only data,
    where control expression is unknown). Ties at the cut-off go to the earlier gene.
    """
    ctrl = np.asarray(ctrl, dtype=np.float64)
    if ctrl.size <= k or not np.any(ctrl):
        return np.arange(ctrl.size)
    return np.sort(np.argsort(-ctrl, kind="stable")[:k])


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """corr(a, b) = Σ(aᵢ−ā)(bᵢ−b̄) / √(Σ(aᵢ−ā)² · Σ(bᵢ−b̄)²).

    NaN when there are fewer than 2 values or either vector is constant (checked exactly, so a
    prediction equal to control gives NaN rather than a correlation of rounding noise).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return NAN
    ac, bc = a - a.mean(), b - b.mean()
    return float(np.clip(ac @ bc / np.sqrt((ac @ ac) * (bc @ bc)), -1.0, 1.0))


def _mse_on(x: ConditionArrays, genes: np.ndarray | None) -> float:
    if genes is None or genes.size == 0:
        return NAN
    return float(np.mean((x.pred[genes] - x.truth[genes]) ** 2))


# Predictions and truths are stored as float32: a delta whose spread is within a few float32 steps
# of the reference's magnitude is rounding, not a predicted change.
STORED_EPS = 8 * float(np.finfo(np.float32).eps)


def delta_corr(p: np.ndarray, t: np.ndarray, ref: np.ndarray) -> float:
    """corr(p − ref, t − ref) (:func:`pearson_r`), NaN when either delta is constant up to storage
    rounding: max(d) − min(d) ≤ ε·max(1, max|ref|), ε = 8 × float32 machine epsilon (≈ 9.5e-7).

    So a prediction equal to the reference (control for the control baseline, the perturbation
    reference for the mean baseline) gives NaN even when it was computed in float64 and stored in
    float32, instead of a correlation of rounding noise.
    """
    dp, dt = np.asarray(p, dtype=np.float64) - ref, np.asarray(t, dtype=np.float64) - ref
    tol = STORED_EPS * max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    if dp.size < 2 or np.ptp(dp) <= tol or np.ptp(dt) <= tol:
        return NAN
    return pearson_r(dp, dt)


def _delta_corr_on(x: ConditionArrays, genes: np.ndarray, ref: np.ndarray) -> float:
    return delta_corr(x.pred[genes], x.truth[genes], ref[genes])


def mse(x: ConditionArrays) -> float:
    """(1/G) Σ_g (p_g − t_g)², all genes."""
    return float(np.mean((x.pred - x.truth) ** 2))


def rmse(x: ConditionArrays) -> float:
    """√((1/G) Σ_g (p_g − t_g)²), all genes."""
    return float(np.sqrt(mse(x)))


def l2_top1000(x: ConditionArrays) -> float:
    """‖p_S − t_S‖₂ = √(Σ_{g∈S} (p_g − t_g)²), S = ``top1000`` (all genes for delta-only data)."""
    d = x.pred[x.top1000] - x.truth[x.top1000]
    return float(np.sqrt(d @ d))


def pearson(x: ConditionArrays) -> float:
    """corr(p, t) on expression (not deltas), all genes; NaN when p or t is constant."""
    return pearson_r(x.pred, x.truth)


def pearson_delta(x: ConditionArrays) -> float:
    """corr(p − c, t − c), all genes; NaN when either delta is constant up to storage rounding
    (e.g. p = c; :func:`delta_corr`).

    GEARS ``deeper_analysis`` 'pearson_delta' is the same formula with NaN mapped to 0.
    """
    return delta_corr(x.pred, x.truth, x.ctrl)


def pearson_delta_top1000(x: ConditionArrays) -> float:
    """corr(p_S − c_S, t_S − c_S), S = ``top1000``."""
    return _delta_corr_on(x, x.top1000, x.ctrl)


def pearson_delta_de20(x: ConditionArrays) -> float:
    """corr(p_S − c_S, t_S − c_S), S = the condition's top-20 DE genes; NaN when S is empty.

    GEARS 'pearson_delta_de' is the same formula with NaN mapped to 0.
    """
    return _delta_corr_on(x, x.de20, x.ctrl)


def mse_de20(x: ConditionArrays) -> float:
    """(1/|S|) Σ_{g∈S} (p_g − t_g)², S = top-20 DE genes; NaN when S is empty (GEARS 'mse_de')."""
    return _mse_on(x, x.de20)


def mse_de20_nondropout(x: ConditionArrays) -> float:
    """(1/|S|) Σ_{g∈S} (p_g − t_g)², S = GEARS non-dropout top-20 DE genes.

    NaN when the dataset has no non-dropout DE genes (pseudobulk-only data) or S is empty.
    Equals GEARS 'mse_top20_de_non_dropout' (computed there on deltas; c cancels).
    """
    return _mse_on(x, x.de20_nondropout)


def direction_de20(x: ConditionArrays) -> float:
    """(1/|S|) Σ_{g∈S} 1[sign(p_g − c_g) = sign(t_g − c_g)], S = top-20 DE genes; NaN when empty.

    sign(0) = 0, so "no change" agrees only with "no change" (as GEARS
    'frac_correct_direction_20', which divides by 20 rather than |S|).
    """
    if x.de20.size == 0:
        return NAN
    g = x.de20
    return float(np.mean(np.sign(x.pred[g] - x.ctrl[g]) == np.sign(x.truth[g] - x.ctrl[g])))


def pearson_delta_pertref(x: ConditionArrays) -> float:
    """corr(p − r, t − r), all genes, r = mean of the training perturbation pseudobulks.

    Systema's convention: deltas against the average perturbed state remove the generic
    perturbation response that every perturbation shares. NaN when p = r up to storage rounding
    (the mean baseline; :func:`delta_corr`).
    """
    return delta_corr(x.pred, x.truth, x.pert_ref)


def _l2_to_rows(rows: np.ndarray, p: np.ndarray) -> np.ndarray:
    """‖rows_j − p‖₂ for every row j (the reference for :func:`truth_distances`)."""
    return np.sqrt(np.sum((rows - p) ** 2, axis=1))


def truth_distances(preds: np.ndarray, truths: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per prediction row i, (‖T_j − p_i‖₂, ‖T_j − p_i‖₁) over every truth row j.

    The same values :func:`rank_score` and :func:`discrimination_l1` compute one condition at a
    time (up to summation order), from scipy's ``cdist`` (a compiled loop over pairs, no
    (n, G) temporaries): the n² G work of a 2,000-condition test set takes seconds, not minutes.
    """
    from scipy.spatial.distance import cdist

    preds, truths = np.asarray(preds, dtype=np.float64), np.asarray(truths, dtype=np.float64)
    l2, l1 = cdist(preds, truths, "euclidean"), cdist(preds, truths, "cityblock")
    return list(zip(l2, l1, strict=True))


def rank_score(x: ConditionArrays) -> float:
    """#{j ≠ i : ‖T_j − p‖₂ ≤ ‖T_i − p‖₂} / (n − 1), T = ``all_truths``, i = ``index``.

    The rank of the true condition among all test truths ordered by distance to the
    prediction: 0 when the truth is the nearest, ≈0.5 for a random prediction, 1 when it is the
    farthest. Ties count against the prediction (a prediction equally close to every truth
    scores 1). Defined as 0 when n = 1 (nothing to confuse it with). cell-eval's
    'discrimination_score' is 1 − rank/n on control-subtracted L1 distances (higher is better).
    """
    n_test = x.all_truths.shape[0]
    if n_test == 1:
        return 0.0
    dist = x.truth_distances[0] if x.truth_distances is not None else _l2_to_rows(x.all_truths, x.pred)
    others = np.delete(dist, x.index)
    return float(np.sum(others <= dist[x.index]) / (n_test - 1))


# -- DE-set metrics as cell-eval computes them -------------------------------------------------
# DE genes here are ranked by |Δ|, Δ = t − c (true) and Δ̂ = p − c (predicted): for pseudobulk
# sources that *is* the dataset's DE ranking; for cell sources it ranks the pseudobulk change, not
# scanpy's t-test (``de20`` keeps the t-test genes). Top-N takes the N largest (N capped at G,
# ties to the earlier gene).


def _top_abs(v: np.ndarray, n: int) -> np.ndarray:
    """Indices of the min(n, G) largest |v|, largest first, ties to the earlier gene: the first n of
    ``argsort(-|v|, kind="stable")``, found by partition (O(G), not a full sort of every gene)."""
    a = np.abs(v)
    k = min(n, a.size)
    if k == a.size:
        return np.argsort(-a, kind="stable")
    kth = np.partition(a, a.size - k)[a.size - k]  # the k-th largest |v|
    above = np.flatnonzero(a > kth)
    chosen = np.concatenate([above, np.flatnonzero(a == kth)[: k - above.size]])  # ties: earliest genes
    return chosen[np.argsort(-a[chosen], kind="stable")]


def _overlap_at(x: ConditionArrays, n: int) -> float:
    """|T_N ∩ P_N| / N, T_N = top-N genes by |t − c|, P_N = top-N by |p − c|."""
    true, pred = _top_abs(x.truth - x.ctrl, n), _top_abs(x.pred - x.ctrl, n)
    return float(np.intersect1d(true, pred).size / true.size)


def _precision_at(x: ConditionArrays, n: int) -> float:
    """|P_N ∩ S| / N, P_N = top-N by |p − c|, S = the condition's DE genes (``de20``); NaN when S is empty."""
    if x.de20.size == 0:
        return NAN
    pred = _top_abs(x.pred - x.ctrl, n)
    return float(np.intersect1d(pred, x.de20).size / pred.size)


def overlap_at_20(x: ConditionArrays) -> float:
    """|T_20 ∩ P_20| / 20: T_20 the 20 genes with the largest |t − c|, P_20 those with the largest |p − c|.

    cell-eval ``overlap_at_N`` with every gene significant, ranked by |log fold-change|.
    """
    return _overlap_at(x, 20)


def overlap_at_100(x: ConditionArrays) -> float:
    """|T_100 ∩ P_100| / 100 (as :func:`overlap_at_20` with N = 100)."""
    return _overlap_at(x, 100)


def precision_at_20(x: ConditionArrays) -> float:
    """|P_20 ∩ S| / 20: P_20 the 20 genes with the largest |p − c|, S the condition's DE genes (de20).

    cell-eval ``precision_at_N`` with S as the true significant genes and every predicted gene
    significant; NaN when S is empty.
    """
    return _precision_at(x, 20)


def precision_at_100(x: ConditionArrays) -> float:
    """|P_100 ∩ S| / 100 (as :func:`precision_at_20`; at most |S|/100 = 0.2 with 20 DE genes)."""
    return _precision_at(x, 100)


def de_direction_match(x: ConditionArrays) -> float:
    """(1/20) Σ_{g∈T_20} 1[sign(p_g − c_g) = sign(t_g − c_g)], T_20 = top-20 genes by |t − c|.

    cell-eval ``de_direction_match`` with T_20 as the significant genes. Equals
    :func:`direction_de20` when de20 is the top-|Δ| set (pseudobulk sources).
    """
    g = _top_abs(x.truth - x.ctrl, 20)
    return float(np.mean(np.sign(x.pred[g] - x.ctrl[g]) == np.sign(x.truth[g] - x.ctrl[g])))


def de_spearman_lfc(x: ConditionArrays) -> float:
    """Spearman ρ of (p_g − c_g) vs (t_g − c_g) over g ∈ T_20 (top-20 by |t − c|); average ranks.

    cell-eval ``de_spearman_lfc_sig`` with T_20 as the significant genes; NaN when the predicted
    change is constant on T_20 (e.g. the control baseline).
    """
    g = _top_abs(x.truth - x.ctrl, 20)
    return pearson_r(_ranks(x.pred[g] - x.ctrl[g]), _ranks(x.truth[g] - x.ctrl[g]))


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; ties share their mean rank)."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(1, v.size + 1)
    _, inverse = np.unique(v, return_inverse=True)
    return np.bincount(inverse, weights=ranks)[inverse] / np.bincount(inverse)[inverse]


def discrimination_l1(x: ConditionArrays) -> float:
    """1 − #{j ≠ i : ‖T_j − p‖₁ ≤ ‖T_i − p‖₁} / n, T = ``all_truths``, i = ``index``, n test conditions.

    cell-eval's ``discrimination_score_l1`` (1 best, ≈0.5 random): L1 distances between effects,
    (T_j − c) − (p − c) = T_j − p. Relation to :func:`rank_score` (L2, rank / (n − 1), lower is
    better): with the same distance and no ties, discrimination = 1 − rank_score·(n − 1)/n.
    cell-eval also drops the target gene's column for single perturbations; here every gene
    counts, and ties count against the prediction.
    """
    dist = x.truth_distances[1] if x.truth_distances is not None else np.abs(x.all_truths - x.pred).sum(axis=1)
    others = np.delete(dist, x.index)
    return float(1.0 - np.sum(others <= dist[x.index]) / x.all_truths.shape[0])


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn`` maps one :class:`ConditionArrays` to a float."""

    name: str
    description: str
    direction: Literal["higher", "lower"]
    fn: Callable[[ConditionArrays], float]


_REGISTERED = (
    Metric("l2_top1000", "L2 distance to truth, 1,000 genes most expressed in control", "lower", l2_top1000),
    Metric("rmse", "root mean squared error, all genes", "lower", rmse),
    Metric("mse", "mean squared error, all genes", "lower", mse),
    Metric("pearson", "Pearson r of predicted and true expression, all genes", "higher", pearson),
    Metric("pearson_delta", "Pearson r of delta vs control, all genes", "higher", pearson_delta),
    Metric("pearson_delta_top1000", "Pearson r of delta vs control, top-1000 genes", "higher", pearson_delta_top1000),
    Metric("pearson_delta_de20", "Pearson r of delta vs control, top-20 DE genes", "higher", pearson_delta_de20),
    Metric("mse_de20", "mean squared error, top-20 DE genes", "lower", mse_de20),
    Metric("mse_de20_nondropout", "mean squared error, non-dropout top-20 DE genes", "lower", mse_de20_nondropout),
    Metric("direction_de20", "fraction of top-20 DE genes moved the true way", "higher", direction_de20),
    Metric("pearson_delta_pertref", "Pearson r of delta vs mean train perturbation", "higher", pearson_delta_pertref),
    Metric("rank_score", "rank of the truth among test truths by distance, / (n-1)", "lower", rank_score),
    Metric("overlap_at_20", "overlap of top-20 true and predicted genes by |delta|", "higher", overlap_at_20),
    Metric("overlap_at_100", "overlap of top-100 true and predicted genes by |delta|", "higher", overlap_at_100),
    Metric("precision_at_20", "fraction of top-20 predicted genes by |delta| that are DE", "higher", precision_at_20),
    Metric("precision_at_100", "fraction of top-100 predicted genes by |delta| that are DE", "higher", precision_at_100),
    Metric("de_direction_match", "sign agreement of delta on the true top-20 genes", "higher", de_direction_match),
    Metric("de_spearman_lfc", "Spearman of predicted vs true delta, true top-20 genes", "higher", de_spearman_lfc),
    Metric("discrimination_l1", "1 - rank of the truth among test truths by L1 distance / n", "higher",
           discrimination_l1),
)
METRICS: dict[str, Metric] = {m.name: m for m in _REGISTERED}


def compute_metrics(x: ConditionArrays, names: list[str] | None = None) -> dict[str, float]:
    """Metric name → value for ``names`` (all registered metrics when None)."""
    names = list(METRICS) if names is None else names
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; registered: {sorted(METRICS)}")
    return {n: METRICS[n].fn(x) for n in names}
