"""The verdict: each model against the best baseline, corrected for multiplicity, and whether the
ranking survives the choices the reference studies argue about.

Input is the per-condition table (``conditions.tsv``: featureset, model, seed, condition,
subgroup, metric, value). Three tables come out, one row per decision:

- :func:`comparisons` — per feature set × metric × subgroup × non-baseline model: the reference
  (best baseline), n shared (seed, condition) pairs, mean and median paired difference
  (model − reference), the two-sided Wilcoxon signed-rank p and ``p_holm``, Holm-adjusted over
  the family of every model × subgroup test of one metric and feature set.
- :func:`rank_stability` — Kendall τ-b between model rankings under two feature sets, two
  headline metrics, or the control vs the perturbation-mean reference, per subgroup.
- :func:`verdicts` — **better** (p_holm < 0.05 and a better mean paired difference), **worse**
  (p_holm < 0.05, worse), else **tie**, on ``full``, and whether it holds on ``no_mt_ribo``.

Ranking rule (undefined values must not pick the winner). A constant predicted change has an
undefined correlation (NaN). For *ranking* — choosing the best baseline, ordering models for
τ — an undefined correlation counts as 0 (GEARS's convention), and the mean is taken over the
(seed, condition) pairs every candidate has, so every candidate is ranked on the same pairs.
Tables elsewhere keep showing NaN and n. Paired tests use the pairs both models define.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from perturbench.errors import PerturbenchError
from perturbench.evaluate import ALL_SUBGROUP
from perturbench.metrics import METRICS
from perturbench.stats import holm, kendall_tau

HEADLINE_METRICS: tuple[str, ...] = ("pearson_delta", "mse_de20", "l2_top1000", "pearson_delta_pertref", "rank_score")
REFERENCE_PAIR = ("pearson_delta", "pearson_delta_pertref")  # control vs perturbation-mean reference
ALPHA = 0.05
MIN_PAIRS = 6  # with n ≤ 5 pairs the two-sided exact signed-rank test cannot reach p < 0.05
COMPARISON_COLUMNS = ["featureset", "metric", "subgroup", "model", "reference", "n", "mean_diff", "median_diff",
                      "p", "p_holm"]
STABILITY_COLUMNS = ["kind", "subgroup", "a", "b", "tau", "n"]
VERDICT_COLUMNS = ["model", "subgroup", "metric", "reference", "n", "mean_diff", "p_holm", "verdict",
                   "verdict_no_mt_ribo", "holds_no_mt_ribo"]
_KEYS = ["seed", "condition"]


class VerdictError(PerturbenchError, ValueError):
    """The per-condition table cannot be compared; the message names the column or value."""


def is_correlation(metric: str) -> bool:
    """Metrics that are undefined (NaN) for a constant predicted change: correlations."""
    return "pearson" in metric or "spearman" in metric


def sign(metric: str) -> float:
    """+1 when higher is better, −1 when lower is better (the metric registry's direction)."""
    if metric not in METRICS:
        raise VerdictError(f"unknown metric {metric!r}; registered: {sorted(METRICS)}")
    return 1.0 if METRICS[metric].direction == "higher" else -1.0


def in_subgroup(table: pd.DataFrame, subgroup: str) -> pd.DataFrame:
    """Rows of ``subgroup`` (``all``: every row)."""
    return table if subgroup == ALL_SUBGROUP else table[table["subgroup"] == subgroup]


def wide(table: pd.DataFrame, metric: str, models: Sequence[str]) -> pd.DataFrame:
    """(seed, condition) × model values of ``metric`` (one feature set and subgroup)."""
    sub = table[(table["metric"] == metric) & table["model"].isin(list(models))]
    if sub.duplicated([*_KEYS, "model"]).any():
        raise VerdictError(f"repeated (seed, condition, model) rows for metric {metric!r}; pass one feature set")
    return sub.pivot(index=_KEYS, columns="model", values="value").reindex(columns=list(models))


def ranking_scores(table: pd.DataFrame, models: Sequence[str], metric: str) -> tuple[pd.Series, int]:
    """(mean per model on the shared pairs, n pairs) by the ranking rule (module docstring).

    Models without a single value are NaN and do not restrict the shared pairs.
    """
    values = wide(table, metric, models)
    present = [m for m in models if values[m].notna().any()]
    if is_correlation(metric):
        values[present] = values[present].fillna(0.0)
    shared = values[present].dropna()
    return shared.mean().reindex(list(models)), int(len(shared))


def best_of(table: pd.DataFrame, candidates: Sequence[str], metric: str) -> str | None:
    """The candidate with the best ranking score; None when none has a value. Ties: first listed."""
    scores, n = ranking_scores(table, candidates, metric)
    scores = (sign(metric) * scores).dropna()
    if scores.empty or n == 0:
        return None
    return str(scores.idxmax())


def paired_test(table: pd.DataFrame, model: str, reference: str, metric: str) -> dict:
    """n, mean / median of (model − reference) and the two-sided Wilcoxon p over the pairs both define."""
    values = wide(table, metric, [model, reference]).dropna()
    diff = (values[model] - values[reference]).to_numpy(dtype=np.float64)
    out = {"n": int(diff.size), "mean_diff": float("nan"), "median_diff": float("nan"), "p": float("nan")}
    if diff.size:
        out.update(mean_diff=float(diff.mean()), median_diff=float(np.median(diff)))
    if diff.size and np.any(diff):
        out["p"] = float(wilcoxon(diff).pvalue)
    return out


def subgroups_of(table: pd.DataFrame) -> list[str]:
    """The table's subgroups, sorted, then ``all``."""
    return [*sorted(set(table["subgroup"]) - {ALL_SUBGROUP}), ALL_SUBGROUP]


def comparisons(table: pd.DataFrame, *, baselines: Sequence[str], metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Every non-baseline model vs the best baseline of each feature set × metric × subgroup."""
    _check(table)
    rows = []
    for fs, fs_table in table.groupby("featureset", sort=True):
        present = set(fs_table["model"])
        refs_pool = [b for b in baselines if b in present]
        learned = sorted(present - set(baselines))
        for metric in [m for m in metrics if (fs_table["metric"] == m).any()]:
            family = []
            for g in subgroups_of(fs_table):
                sub = in_subgroup(fs_table, g)
                ref = best_of(sub, refs_pool, metric) if refs_pool else None
                for model in learned:
                    test = paired_test(sub, model, ref, metric) if ref else {"n": 0, "mean_diff": np.nan,
                                                                             "median_diff": np.nan, "p": np.nan}
                    family.append({"featureset": fs, "metric": metric, "subgroup": g, "model": model,
                                   "reference": ref, **test})
            adjusted = holm([r["p"] for r in family])
            rows.extend({**r, "p_holm": float(q)} for r, q in zip(family, adjusted, strict=True))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _check(table: pd.DataFrame) -> None:
    missing = [c for c in ("featureset", "model", "seed", "condition", "subgroup", "metric", "value")
               if c not in table.columns]
    if missing:
        raise VerdictError(f"per-condition table lacks column(s) {missing}")


def decide(row: pd.Series | dict) -> str:
    """better / worse (p_holm < ALPHA, by the sign of the mean paired difference) or tie."""
    p, diff = row["p_holm"], row["mean_diff"]
    if not np.isfinite(p) or p >= ALPHA or not np.isfinite(diff) or diff == 0:
        return "tie"
    return "better" if sign(row["metric"]) * diff > 0 else "worse"


def verdicts(comp: pd.DataFrame, *, primary: str = "full", check: str = "no_mt_ribo") -> pd.DataFrame:
    """Verdict per model × subgroup × metric on ``primary`` and whether the ``check`` feature set agrees."""
    main = comp[comp["featureset"] == primary]
    other = {(r.model, r.subgroup, r.metric): decide(r._asdict())
             for r in comp[comp["featureset"] == check].itertuples(index=False)}
    rows = []
    for r in main.itertuples(index=False):
        verdict = decide(r._asdict())
        again = other.get((r.model, r.subgroup, r.metric))
        holds = "—" if again is None else ("yes" if again == verdict else "no")
        rows.append({"model": r.model, "subgroup": r.subgroup, "metric": r.metric, "reference": r.reference,
                     "n": r.n, "mean_diff": r.mean_diff, "p_holm": r.p_holm, "verdict": verdict,
                     "verdict_no_mt_ribo": again or "—", "holds_no_mt_ribo": holds})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _oriented(table: pd.DataFrame, models: Sequence[str], metric: str) -> pd.Series:
    """Ranking scores with higher = better."""
    return sign(metric) * ranking_scores(table, models, metric)[0]


def _tau_row(kind: str, subgroup: str, a: str, b: str, sa: pd.Series, sb: pd.Series) -> dict:
    tau, n = kendall_tau(sa.to_numpy(), sb.reindex(sa.index).to_numpy())
    return {"kind": kind, "subgroup": subgroup, "a": a, "b": b, "tau": tau, "n": n}


def rank_stability(table: pd.DataFrame, *, metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Kendall τ-b (n models) between rankings of every model, per subgroup and ``all``.

    kind ``featureset``: the same metric on two feature sets (a, b = ``fs_a:metric``, ``fs_b:metric``);
    ``metric``: two headline metrics on one feature set; ``reference``: pearson_delta vs
    pearson_delta_pertref (control vs perturbation-mean reference) on one feature set.
    """
    _check(table)
    models = sorted(set(table["model"]))
    featuresets = sorted(set(table["featureset"]))
    metrics = [m for m in metrics if (table["metric"] == m).any()]
    rows = []
    for g in subgroups_of(table):
        sub = in_subgroup(table, g)
        score = {(fs, m): _oriented(sub[sub["featureset"] == fs], models, m) for fs in featuresets for m in metrics}
        for m in metrics:
            for fa, fb in combinations(featuresets, 2):
                rows.append(_tau_row("featureset", g, f"{fa}:{m}", f"{fb}:{m}", score[fa, m], score[fb, m]))
        for fs in featuresets:
            for ma, mb in combinations(metrics, 2):
                kind = "reference" if {ma, mb} == set(REFERENCE_PAIR) else "metric"
                rows.append(_tau_row(kind, g, f"{fs}:{ma}", f"{fs}:{mb}", score[fs, ma], score[fs, mb]))
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)
