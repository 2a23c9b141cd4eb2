"""Context (plain dicts and lists) for the dataset page's sections 1–3 and the index page.

1. dataset card, 2. split card, 3. results tables per feature set (summary.tsv with CIs, noise
ceiling, paired tests against the best baseline of each subgroup from comparisons.tsv). Numbers are passed through unrounded;
the templates format them with one filter, so every table shows summary.tsv the same way.
"""

from __future__ import annotations

import pandas as pd

from perturbench.data.conditions import CTRL, targets
from perturbench.evaluate import ALL_SUBGROUP
from perturbench.metrics import METRICS
from perturbench.report.analyses import ceiling_by_subgroup, top_up_shares, variance_contribution
from perturbench.report.loaders import DatasetResults
from perturbench.report.verdict_sections import comparison_tables
from perturbench.splits import SUBGROUPS
from perturbench.verdict import best_of, in_subgroup

HEADLINE = "pearson_delta"
MAIN_METRICS = ("pearson_delta", "mse_de20", "pearson_delta_de20", "l2_top1000")
UNITS = {
    "mse": "(log-expr)²", "mse_de20": "(log-expr)²", "mse_de20_nondropout": "(log-expr)²",
    "rmse": "log-expr", "l2_top1000": "log-expr", "direction_de20": "fraction", "rank_score": "fraction",
}


def metric_info(name: str) -> dict:
    """Header facts of a registered metric: arrow (↑ higher is better / ↓ lower), unit, description."""
    metric = METRICS[name]
    arrow = "↑" if metric.direction == "higher" else "↓"
    unit = UNITS.get(name, "Pearson r")
    return {"name": name, "arrow": arrow, "direction": metric.direction, "unit": unit,
            "description": metric.description, "axis": f"{name} [{unit}] {arrow}"}


def subgroup_order(values) -> list[str]:
    """Known test subgroups in split order, others sorted, ``all`` last."""
    present = set(values)
    known = [s for s in SUBGROUPS if s in present]
    others = sorted(present - set(SUBGROUPS) - {ALL_SUBGROUP})
    return known + others + ([ALL_SUBGROUP] if ALL_SUBGROUP in present else [])


TOP_UP = 50  # up-regulated genes per condition in the dataset card's MT-/ribosomal shares


# -- 1. dataset card -----------------------------------------------------------------------
def dataset_card(res: DatasetResults) -> dict:
    """Cells, genes, conditions by kind, genes removed per feature set, MT/RPS-RPL variance shares."""
    ds = res.prepared()
    sizes = [len(targets(c)) for c in ds.conditions]
    expression = ds.cells.X if ds.cells is not None else ds.expression([CTRL, *ds.conditions])
    deltas = ds.expression(ds.conditions) - ds.ctrl
    shares = variance_contribution(expression, deltas, ds.genes)
    shares["top_up"] = pd.Series(top_up_shares(deltas, ds.genes, top=TOP_UP))
    return {
        "n_cells": 0 if ds.cells is None else int(ds.cells.n_obs),
        "n_genes": len(ds.genes),
        "n_singles": sizes.count(1),
        "n_combos": sizes.count(2),
        "n_other": sum(s > 2 for s in sizes),
        "delta_only": ds.delta_only,
        "variance_over": "cells" if ds.cells is not None else "condition pseudobulks",
        "featuresets": [res.record(fs) or {"featureset": fs} for fs in res.featuresets],
        "variance": shares.reset_index().to_dict("records"),
    }


# -- 2. split card -------------------------------------------------------------------------
def split_card(res: DatasetResults) -> dict:
    """Per seed: train/val sizes, test conditions per subgroup, relabelled conditions (GEARS's
    label → ours, :func:`perturbench.splits.relabelled`), manifest checksum."""
    subgroups = subgroup_order({g for sp in res.splits.values() for g in sp.test.values()})
    rows = []
    for seed, sp in sorted(res.splits.items()):
        counts = pd.Series(list(sp.test.values()), dtype=str).value_counts()
        moved = sp.relabelled()
        rows.append({"seed": seed, "kind": sp.kind, "train": len(sp.train), "val": len(sp.val),
                     "test": len(sp.test), "cells": sp.cell_counts(), "counts": [int(counts.get(g, 0)) for g in subgroups],
                     "relabelled": sum(moved.values()), "moves": [f"{k}: {v}" for k, v in moved.items()],
                     "checksum": res.checksums[seed]})
    return {"subgroups": subgroups, "rows": rows}


# -- 3. results tables ---------------------------------------------------------------------
def metric_table(res: DatasetResults, *, featureset: str, metric: str) -> dict:
    """Rows = models, columns = subgroups; each cell holds mean, ci_low, ci_high, n and ``best``
    (the best model by the ranking rule of :mod:`perturbench.verdict`: shared pairs, an undefined
    correlation counting as 0)."""
    summary, models = res.summary, res.models
    rows = summary[(summary["featureset"] == featureset) & (summary["metric"] == metric)]
    subgroups = subgroup_order(rows["subgroup"])
    cell = {(r.model, r.subgroup): r for r in rows.itertuples(index=False)}
    table = res.conditions[res.conditions["featureset"] == featureset]
    best = {g: best_of(in_subgroup(table, g), models, metric) for g in subgroups}
    body = []
    for model in models:
        cells = []
        for g in subgroups:
            r = cell.get((model, g))
            cells.append(None if r is None else {"mean": float(r.mean), "ci_low": float(r.ci_low),
                                                 "ci_high": float(r.ci_high), "n": int(r.n),
                                                 "best": best[g] == model, "subgroup": g})
        body.append({"model": model, "baseline": model in res.baselines, "cells": cells})
    return {"metric": metric_info(metric), "subgroups": subgroups, "rows": body}


def ceiling_table(res: DatasetResults, featureset: str) -> dict:
    """Split-half noise ceiling of the test conditions per subgroup (the feature set's
    ``noise_ceiling.tsv``, :func:`perturbench.analysis_tables.noise_ceiling_step`), or why it is
    not available."""
    ceiling, meta = res.analysis(featureset, "noise_ceiling")
    if not meta["available"]:
        return {"available": False, "reason": meta["reason"]}
    assignments = pd.DataFrame(
        [(seed, c, g) for seed, sp in res.splits.items() for c, g in sp.test.items()],
        columns=["seed", "condition", "subgroup"],
    )
    table = ceiling_by_subgroup(ceiling, assignments)
    table["order"] = table["subgroup"].map({g: i for i, g in enumerate(subgroup_order(table["subgroup"]))})
    return {"available": True, "rows": table.sort_values("order").drop(columns="order").to_dict("records")}


def results_section(res: DatasetResults) -> list[dict]:
    """Per feature set: main metric tables, other metric tables, noise ceiling, Wilcoxon tests."""
    present = set(res.summary["metric"])
    subgroups = subgroup_order([*res.summary["subgroup"]])
    out = []
    for fs in res.featuresets:
        order = [*MAIN_METRICS, *(m for m in METRICS if m not in MAIN_METRICS)]
        tables = [metric_table(res, featureset=fs, metric=m) for m in order if m in present]
        out.append({
            "featureset": fs,
            "main": [t for t in tables if t["metric"]["name"] in MAIN_METRICS],
            "more": [t for t in tables if t["metric"]["name"] not in MAIN_METRICS],
            "ceiling": ceiling_table(res, fs),
            "comparisons": _with_metric_info(comparison_tables(res, fs, subgroups)),
        })
    return out


def _with_metric_info(comparisons: dict) -> dict:
    for t in comparisons["tables"]:
        t["metric"] = metric_info(t["metric"])
    return comparisons


# -- index ---------------------------------------------------------------------------------
def _summary_value(summary: pd.DataFrame, fs: str, model: str | None, subgroup: str) -> dict | None:
    if model is None:
        return None
    row = summary[(summary["featureset"] == fs) & (summary["model"] == model)
                  & (summary["subgroup"] == subgroup) & (summary["metric"] == HEADLINE)].iloc[0]
    return {"model": model, "mean": float(row["mean"]), "ci_low": float(row["ci_low"]),
            "ci_high": float(row["ci_high"]), "n": int(row["n"])}


def headline_rows(res: DatasetResults) -> list[dict]:
    """Per subgroup of the primary feature set: best non-baseline model and best baseline on
    pearson_delta, each chosen by the ranking rule of :mod:`perturbench.verdict`."""
    fs = res.primary
    learned = [m for m in res.models if m not in res.baselines]
    rows = []
    subgroups = subgroup_order(res.summary.loc[res.summary["featureset"] == fs, "subgroup"])
    table = res.conditions[res.conditions["featureset"] == fs]
    for g in subgroups:
        sub = in_subgroup(table, g)
        model = _summary_value(res.summary, fs, best_of(sub, learned, HEADLINE) if learned else None, g)
        base = _summary_value(res.summary, fs, best_of(sub, res.baselines, HEADLINE), g)
        diff = model["mean"] - base["mean"] if model and base else float("nan")
        rows.append({"subgroup": g, "model": model, "baseline": base, "diff": diff})
    return rows
