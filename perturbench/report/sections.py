"""Context (plain dicts and lists) for the dataset page's sections 1–3 and the index page.

1. dataset card, 2. split card, 3. results tables per feature set (summary.tsv with CIs, noise
ceiling, paired Wilcoxon tests against the best baseline of each subgroup). Numbers are passed through unrounded;
the templates format them with one filter, so every table shows summary.tsv the same way.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from perturbench.data.conditions import CTRL, targets
from perturbench.evaluate import ALL_SUBGROUP, noise_ceiling, paired_wilcoxon, replicate_noise_ceiling
from perturbench.metrics import METRICS
from perturbench.report.analyses import (
    BASELINES,
    best_model,
    ceiling_by_subgroup,
    paired_differences,
    variance_contribution,
)
from perturbench.report.loaders import DatasetResults
from perturbench.splits import SUBGROUPS

HEADLINE = "pearson_delta"
MAIN_METRICS = ("pearson_delta", "mse_de20", "pearson_delta_de20", "l2_top1000")
TEST_METRICS = ("pearson_delta", "mse_de20")
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


def baselines_in(models) -> list[str]:
    return [m for m in models if m in BASELINES]


# -- 1. dataset card -----------------------------------------------------------------------
def dataset_card(res: DatasetResults) -> dict:
    """Cells, genes, conditions by kind, genes removed per feature set, MT/RPS-RPL variance shares."""
    ds = res.prepared()
    sizes = [len(targets(c)) for c in ds.conditions]
    expression = ds.cells.X if ds.cells is not None else ds.expression([CTRL, *ds.conditions])
    deltas = ds.expression(ds.conditions) - ds.ctrl
    shares = variance_contribution(expression, deltas, ds.genes)
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
    """Per seed: train/val sizes, test conditions per subgroup, manifest checksum."""
    subgroups = subgroup_order({g for sp in res.splits.values() for g in sp.test.values()})
    rows = []
    for seed, sp in sorted(res.splits.items()):
        counts = pd.Series(list(sp.test.values()), dtype=str).value_counts()
        rows.append({"seed": seed, "kind": sp.kind, "train": len(sp.train), "val": len(sp.val),
                     "test": len(sp.test), "counts": [int(counts.get(g, 0)) for g in subgroups],
                     "checksum": res.checksums[seed]})
    return {"subgroups": subgroups, "rows": rows}


# -- 3. results tables ---------------------------------------------------------------------
def metric_table(summary: pd.DataFrame, *, featureset: str, metric: str, models: list[str]) -> dict:
    """Rows = models, columns = subgroups; each cell holds mean, ci_low, ci_high, n and ``best``."""
    rows = summary[(summary["featureset"] == featureset) & (summary["metric"] == metric)]
    subgroups = subgroup_order(rows["subgroup"])
    cell = {(r.model, r.subgroup): r for r in rows.itertuples(index=False)}
    best = {g: best_model(summary, models, featureset=featureset, metric=metric, subgroup=g) for g in subgroups}
    body = []
    for model in models:
        cells = []
        for g in subgroups:
            r = cell.get((model, g))
            cells.append(None if r is None else {"mean": float(r.mean), "ci_low": float(r.ci_low),
                                                 "ci_high": float(r.ci_high), "n": int(r.n),
                                                 "best": best[g] == model, "subgroup": g})
        body.append({"model": model, "baseline": model in BASELINES, "cells": cells})
    return {"metric": metric_info(metric), "subgroups": subgroups, "rows": body}


def ceiling_table(res: DatasetResults, featureset: str) -> dict:
    """Split-half noise ceiling of the test conditions per subgroup, or why it is not available."""
    ds = res.prepared()
    fs_data = res.featureset_data(featureset)
    assignments = pd.DataFrame(
        [(seed, c, g) for seed, sp in res.splits.items() for c, g in sp.test.items()],
        columns=["seed", "condition", "subgroup"],
    )
    tested = sorted(set(assignments["condition"]))
    if ds.cells is None and "replicate1" in fs_data.pseudobulk.layers:
        ceiling = replicate_noise_ceiling(fs_data.pseudobulk, tested, de_genes=fs_data.de_genes("de20"))
    elif ds.cells is None:
        return {"available": False, "reason": "not available: no cells and no split-half replicates "
                                              "(a pseudobulk table's replicate column; see README)"}
    else:
        columns = ds.cells.var_names.get_indexer(fs_data.genes)
        cells = ad.AnnData(X=ds.cells.X[:, columns], obs=ds.cells.obs[["condition"]].copy(),
                           var=pd.DataFrame(index=pd.Index(fs_data.genes)))
        ceiling = noise_ceiling(cells, tested, seed=0, de_genes=fs_data.de_genes("de20"))
    table = ceiling_by_subgroup(ceiling, assignments)
    table["order"] = table["subgroup"].map({g: i for i, g in enumerate(subgroup_order(table["subgroup"]))})
    return {"available": True, "rows": table.sort_values("order").drop(columns="order").to_dict("records")}


def wilcoxon_tables(res: DatasetResults, featureset: str) -> dict:
    """Each model vs the best baseline, per test metric and subgroup.

    The reference of a (metric, subgroup) cell is the baseline with the best mean of that metric in
    that subgroup — "beats the best baseline in every subgroup" is the question asked. (A baseline
    whose correlation is undefined in a subgroup, e.g. ridge on unseen genes, is not chosen there.)
    """
    baselines = baselines_in(res.models)
    table = res.conditions[res.conditions["featureset"] == featureset]
    subgroups = subgroup_order([*table["subgroup"], ALL_SUBGROUP])
    tables = []
    for metric in TEST_METRICS:
        refs = [best_model(res.summary, baselines, featureset=featureset, metric=metric, subgroup=g)
                for g in subgroups]
        if all(r is None for r in refs):
            continue
        rows = [{"model": model, "cells": [_wilcoxon_cell(table, model, ref, metric, g)
                                           for ref, g in zip(refs, subgroups, strict=True)]}
                for model in res.models if model in set(table["model"])]
        tables.append({"metric": metric_info(metric), "subgroups": subgroups, "references": refs, "rows": rows})
    return {"tables": tables}


def _wilcoxon_cell(table: pd.DataFrame, model: str, reference: str | None, metric: str, subgroup: str) -> dict:
    if model == reference:
        return {"reference": True}
    sub = table if subgroup == ALL_SUBGROUP else table[table["subgroup"] == subgroup]
    if reference is None or not (sub["metric"] == metric).any() or not {model, reference} <= set(sub["model"]):
        return {"reference": False, "n": 0, "p": float("nan"), "median_diff": float("nan"), "better": None}
    _, p, n = paired_wilcoxon(sub, model=model, reference=reference, metric=metric)
    diffs = paired_differences(sub, model=model, reference=reference, metric=metric)
    median = float(np.median(diffs)) if diffs.size else float("nan")
    sign = 1.0 if METRICS[metric].direction == "higher" else -1.0
    better = None if not np.isfinite(median) or median == 0 else bool(sign * median > 0)
    return {"reference": False, "n": n, "p": p, "median_diff": median, "better": better}


def results_section(res: DatasetResults) -> list[dict]:
    """Per feature set: main metric tables, other metric tables, noise ceiling, Wilcoxon tests."""
    present = set(res.summary["metric"])
    out = []
    for fs in res.featuresets:
        order = [*MAIN_METRICS, *(m for m in METRICS if m not in MAIN_METRICS)]
        tables = [metric_table(res.summary, featureset=fs, metric=m, models=res.models)
                  for m in order if m in present]
        out.append({
            "featureset": fs,
            "main": [t for t in tables if t["metric"]["name"] in MAIN_METRICS],
            "more": [t for t in tables if t["metric"]["name"] not in MAIN_METRICS],
            "ceiling": ceiling_table(res, fs),
            "wilcoxon": wilcoxon_tables(res, fs),
        })
    return out


# -- index ---------------------------------------------------------------------------------
def _summary_value(summary: pd.DataFrame, fs: str, model: str | None, subgroup: str) -> dict | None:
    if model is None:
        return None
    row = summary[(summary["featureset"] == fs) & (summary["model"] == model)
                  & (summary["subgroup"] == subgroup) & (summary["metric"] == HEADLINE)].iloc[0]
    return {"model": model, "mean": float(row["mean"]), "ci_low": float(row["ci_low"]),
            "ci_high": float(row["ci_high"]), "n": int(row["n"])}


def headline_rows(res: DatasetResults) -> list[dict]:
    """Per subgroup of the primary feature set: best non-baseline model and best baseline on pearson_delta."""
    fs = res.primary
    learned = [m for m in res.models if m not in BASELINES]
    rows = []
    subgroups = subgroup_order(res.summary.loc[res.summary["featureset"] == fs, "subgroup"])
    for g in subgroups:
        model = _summary_value(res.summary, fs, best_model(res.summary, learned, featureset=fs, metric=HEADLINE,
                                                           subgroup=g), g)
        base = _summary_value(res.summary, fs, best_model(res.summary, baselines_in(res.models), featureset=fs,
                                                          metric=HEADLINE, subgroup=g), g)
        diff = model["mean"] - base["mean"] if model and base else float("nan")
        rows.append({"subgroup": g, "model": model, "baseline": base, "diff": diff})
    return rows
