"""Context for the verdict parts of a dataset page, read from the workflow's verdict outputs.

- :func:`verdict_table`: ``verdict.tsv`` — better / tie / worse than the best baseline per model,
  headline metric and subgroup, and whether it holds on ``no_mt_ribo``;
- :func:`comparison_tables`: ``comparisons.tsv`` of one feature set — paired tests against the
  best baseline, significance on Holm-adjusted p;
- :func:`stability_tables`: ``rank_stability.tsv`` — Kendall τ between model rankings.

The rules (ranking, pairing, correction) are stated in :mod:`perturbench.verdict`; the page
quotes them as :data:`RULE`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perturbench.report.loaders import DatasetResults
from perturbench.verdict import ALPHA, HEADLINE_METRICS, MIN_PAIRS, decide

RULE = (
    "Reference = the baseline with the best mean of the metric in that subgroup, ranked on the (seed, condition) pairs "
    "every baseline has, an undefined correlation (constant predicted change) counting as 0 (GEARS's convention); the "
    "tables keep showing such values as — with their n. Tests: two-sided Wilcoxon signed-rank over the pairs both models "
    f"define; p_holm = Holm's step-down correction over all model × subgroup tests of one metric and feature set. "
    f"Better / worse = p_holm < {ALPHA} and the better / worse mean paired difference; otherwise tie. With fewer than "
    f"{MIN_PAIRS} pairs the test cannot reach p < {ALPHA}."
)


def _order(values, subgroups: list[str]) -> list[str]:
    present = set(values)
    return [g for g in subgroups if g in present] + sorted(present - set(subgroups))


def verdict_table(res: DatasetResults, subgroups: list[str]) -> dict:
    """Rows = model × metric, columns = subgroups; each cell the verdict and its no_mt_ribo check."""
    table = res.verdict
    if table.empty:
        return {"available": False, "reason": "no non-baseline model was run"}
    cols = _order(table["subgroup"], subgroups)
    cell = {(r.model, r.metric, r.subgroup): r._asdict() for r in table.itertuples(index=False)}
    rows = []
    for model in [m for m in res.models if m in set(table["model"])]:
        for metric in [m for m in HEADLINE_METRICS if (table["metric"] == m).any()]:
            rows.append({"model": model, "metric": metric,
                         "cells": [cell.get((model, metric, g)) for g in cols]})
    return {"available": True, "subgroups": cols, "rows": rows, "rule": RULE}


def comparison_tables(res: DatasetResults, featureset: str, subgroups: list[str]) -> dict:
    """Per metric: the reference row and per model the paired test cells of ``featureset``."""
    comp = res.comparisons[res.comparisons["featureset"] == featureset]
    tables = []
    for metric in [m for m in HEADLINE_METRICS if (comp["metric"] == m).any()]:
        sub = comp[comp["metric"] == metric]
        cols = _order(sub["subgroup"], subgroups)
        refs = [_reference(sub, g) for g in cols]
        rows = [{"model": model, "cells": [_cell(sub, model, g) for g in cols]}
                for model in res.models if model in set(sub["model"])]
        tables.append({"metric": metric, "subgroups": cols, "references": refs, "rows": rows})
    return {"tables": tables, "rule": RULE}


def _reference(sub: pd.DataFrame, subgroup: str) -> str | None:
    refs = sub.loc[sub["subgroup"] == subgroup, "reference"].dropna()
    return str(refs.iloc[0]) if len(refs) else None


def _cell(sub: pd.DataFrame, model: str, subgroup: str) -> dict | None:
    rows = sub[(sub["model"] == model) & (sub["subgroup"] == subgroup)]
    if rows.empty:
        return None
    r = rows.iloc[0].to_dict()
    n = int(r["n"])
    return {"n": n, "median_diff": float(r["median_diff"]), "mean_diff": float(r["mean_diff"]),
            "p": float(r["p"]), "p_holm": float(r["p_holm"]), "verdict": decide(r),
            "testable": n >= MIN_PAIRS, "significant": bool(np.isfinite(r["p_holm"]) and r["p_holm"] < ALPHA)}


def stability_tables(res: DatasetResults, subgroups: list[str]) -> dict:
    """Kendall τ rows grouped by kind, columns = subgroups."""
    table = res.stability
    if table.empty:
        return {"available": False, "reason": "fewer than two rankings to compare"}
    cols = _order(table["subgroup"], subgroups)
    cell = {(r.kind, r.a, r.b, r.subgroup): (float(r.tau), int(r.n)) for r in table.itertuples(index=False)}
    groups = []
    for kind, title in (("featureset", "feature sets"), ("metric", "headline metrics"),
                        ("reference", "control vs perturbation-mean reference")):
        pairs = table.loc[table["kind"] == kind, ["a", "b"]].drop_duplicates()
        rows = [{"a": a, "b": b, "cells": [cell.get((kind, a, b, g)) for g in cols]}
                for a, b in pairs.itertuples(index=False)]
        if rows:
            groups.append({"kind": kind, "title": title, "rows": rows})
    return {"available": True, "subgroups": cols, "groups": groups}
