"""Section 4 of a dataset page: figures, each with a sentence saying how to read it.

Every builder returns a block ``{id, title, caption, png, missing, table}``: ``png`` is the
base64 PNG or None, and then ``missing`` says why the figure could not be drawn (a run that was
not part of the config, a dataset without the needed output). Per-model figures use the primary
feature set (``full`` when run) and pool seeds unless the caption says otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from perturbench.data.conditions import canonical_condition, targets
from perturbench.report import figures
from perturbench.report.analyses import (
    calibration,
    interval_coverage,
    per_gene_sd,
    relative_error,
)
from perturbench.report.loaders import DatasetResults
from perturbench.report.sections import metric_info, subgroup_order

_COVERAGE_LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)
_N_FALLBACK_HIGHLIGHTS = 3
_DE_GENES_SHOWN = 20
_NAV = {
    "fig-mse": "Error by category", "fig-loss": "Training curves", "fig-dstate": "d_state ablation",
    "fig-uncertainty": "Uncertainty", "fig-highlight": "Selected combos", "fig-l2": "L2 distance",
    "fig-relative": "Relative to mean", "fig-spread": "Prediction spread", "fig-featuresets": "Feature sets",
}


def block(key: str, title: str, caption: str, fig: Figure | None = None, *, missing: str | None = None,
          table: dict | None = None) -> dict:
    """A figure block; ``table`` is {columns: [{key, label, num}], rows: [dict]} shown under the caption."""
    png = None if fig is None else figures.png_base64(fig)
    return {"id": key, "nav": _NAV[key], "title": title, "caption": caption, "png": png, "missing": missing,
            "table": table}


def _col(key: str, label: str, *, num: bool = True) -> dict:
    return {"key": key, "label": label, "num": num}


def _metric_rows(res: DatasetResults, metric: str) -> pd.DataFrame:
    table = res.conditions
    return table[(table["featureset"] == res.primary) & (table["metric"] == metric)].dropna(subset=["value"])


def mse_by_subgroup(res: DatasetResults) -> dict:
    rows = _metric_rows(res, "mse_de20")
    caption = ("Each box is one model's per-condition mse_de20 (squared error on the condition's top-20 DE "
               "genes, lower is better) in one unseen-perturbation category; dots are single "
               "(seed, condition) values. Boxes lower than the mean and additive baselines mean real skill.")
    title = f"Error on the top-20 DE genes by unseen category ({res.primary})"
    if rows.empty:
        return block("fig-mse", title, caption, missing="no mse_de20 values (no condition has DE genes)")
    fig = figures.grouped_boxplot(rows, x="subgroup", order=subgroup_order(rows["subgroup"]), models=res.models,
                                  ylabel=metric_info("mse_de20")["axis"])
    return block("fig-mse", title, caption, fig)


def loss_curves(res: DatasetResults) -> dict:
    title = "Training curves of the dual-stream Mamba runs"
    caption = ("Loss per epoch for each Mamba run (first seed); solid lines are training batches, dashed lines "
               "the validation conditions. Validation mse is what early stopping and the learning-rate schedule "
               "follow; a validation curve that rises while training falls means over-fitting.")
    seed = res.seeds[0]
    curves = {run: c for run in res.models if (c := res.loss_curves(res.primary, seed, run)) is not None and not c.empty}  # prior_only: no epochs
    if not curves:
        return block("fig-loss", title, caption, missing="not available: no Mamba run wrote loss_curves.tsv")
    terms = list(dict.fromkeys(t for c in curves.values() for t in c["term"]))
    return block("fig-loss", title, caption, figures.loss_curves(curves, terms=terms))


def dstate_ablation(res: DatasetResults) -> dict:
    title = "State-size ablation of the Mamba model"
    caption = ("Mean (95% CI) of each metric against the SSM state size d_state, one line per unseen category "
               "(thick: all categories). Flat lines mean the state size does not matter for this data.")
    runs = res.dstate_runs()
    if not runs:
        return block("fig-dstate", title, caption,
                     missing="not available: fewer than two d_state values were run (config: ablation)")
    metrics = ["pearson_delta", "mse_de20"]
    rows = res.summary[(res.summary["featureset"] == res.primary) & res.summary["model"].isin(runs)
                       & res.summary["metric"].isin(metrics)].copy()
    rows["d_state"] = rows["model"].map(runs)
    labels = {m: metric_info(m)["axis"] for m in metrics}
    return block("fig-dstate", title, caption, figures.dstate_ablation(rows, metrics=metrics, labels=labels))


def uncertainty(res: DatasetResults) -> dict:
    title = "Uncertainty scores and their calibration"
    caption = ("Left: distribution of the predicted standard deviation σ = exp(logvar/2) over genes and test "
               "conditions. Right: share of true values inside μ ± zσ against the share a calibrated model "
               "would cover; points above the dotted line mean σ is too large, below it too small.")
    fs_data = res.featureset_data(res.primary)
    log_sigma, coverage, table = {}, {}, []
    for run in res.models:
        preds = [p for s in res.seeds if (p := res.prediction(res.primary, s, run)) is not None
                 and p.logvar is not None]
        if not preds:
            continue
        mu = np.vstack([p.mean for p in preds])
        logvar = np.vstack([p.logvar for p in preds])
        truth = np.vstack([fs_data.expression(p.conditions) for p in preds])
        log_sigma[run] = (logvar / 2).ravel() / np.log(10)
        coverage[run] = (_COVERAGE_LEVELS, np.array([interval_coverage(mu, logvar, truth, lv)
                                                     for lv in _COVERAGE_LEVELS]))
        table.append({"model": run, **calibration(mu, logvar, truth)})
    if not table:
        return block("fig-uncertainty", title, caption,
                     missing="not available: no model wrote uncertainty scores (layers['logvar'])")
    columns = [_col("model", "model", num=False), _col("nll", "Gaussian NLL ↓"),
               _col("coverage50", "coverage of 50% interval (target 0.50)"),
               _col("coverage90", "coverage of 90% interval (target 0.90)"),
               _col("spearman_sigma_abs_error", "Spearman ρ(σ, |error|) ↑"), _col("n", "values")]
    return block("fig-uncertainty", title, caption, figures.uncertainty(log_sigma, coverage),
                 table={"columns": columns, "rows": table})


def _highlight_choice(res: DatasetResults) -> list[tuple[str, int]]:
    """(condition, seed) pairs: configured highlights found in a test set, else the first test combos."""
    wanted = [canonical_condition(c, where="config report.highlight_conditions")
              for c in (res.config.get("report") or {}).get("highlight_conditions", [])]
    chosen = [(c, next(s for s in res.seeds if c in res.splits[s].test)) for c in wanted
              if any(c in res.splits[s].test for s in res.seeds)]
    if chosen:
        return chosen
    first = res.seeds[0]
    combos = [c for c in sorted(res.splits[first].test) if len(targets(c)) == 2]
    return [(c, first) for c in combos[:_N_FALLBACK_HIGHLIGHTS]]


def highlighted_conditions(res: DatasetResults) -> dict:
    title = "Predicted vs true expression of the top DE genes, selected two-gene perturbations"
    caption = ("Bars: true pseudobulk expression of the condition's top-20 DE genes; black ticks: control; "
               "dots: each model's prediction. A good model puts its dots on the bar tops, especially where "
               "the bar differs from the control tick.")
    chosen = _highlight_choice(res)
    if not chosen:
        return block("fig-highlight", title, caption, missing="not available: no two-gene test condition")
    fs_data = res.featureset_data(res.primary)
    ablations = set(list(res.dstate_runs())[1:])  # the ablation's variants; its base run stays
    panels = []
    for cond, seed in chosen:
        truth, ctrl = fs_data.expression([cond])[0], fs_data.ctrl
        de = fs_data.de_genes("de20").get(cond) or []
        idx = [fs_data.genes.index(g) for g in de][:_DE_GENES_SHOWN]
        if not idx:
            idx = list(np.argsort(-np.abs(truth - ctrl), kind="stable")[:_DE_GENES_SHOWN])
        preds = {}
        for model in (m for m in res.models if m not in ablations):
            pred = res.prediction(res.primary, seed, model)
            if pred is not None and cond in pred.conditions:
                preds[model] = pred.mean[pred.conditions.index(cond), idx]
        panels.append({"condition": f"{cond} (seed {seed})", "genes": [fs_data.genes[i] for i in idx],
                       "truth": truth[idx], "ctrl": ctrl[idx], "preds": preds})
    ylabel = "change vs control (log-expr)" if fs_data.delta_only else "expression (log-expr)"
    return block("fig-highlight", title, caption, figures.highlighted_conditions(panels, models=res.models,
                                                                                  ylabel=ylabel))


def l2_and_relative(res: DatasetResults) -> list[dict]:
    rows = _metric_rows(res, "l2_top1000")
    order = subgroup_order(rows["subgroup"])
    l2 = block("fig-l2", f"L2 distance on the 1,000 most expressed genes ({res.primary})",
               "Per-condition L2 distance between predicted and true expression over the control's 1,000 most "
               "expressed genes (all genes for delta-only data); lower is better.",
               figures.grouped_boxplot(rows, x="subgroup", order=order, models=res.models,
                                       ylabel=metric_info("l2_top1000")["axis"]))
    title = "Error relative to the mean baseline"
    caption = ("Per condition, the model's l2_top1000 divided by the mean baseline's on the same condition and "
               "seed (log scale). Below the dashed line at 1 the model beats predicting the average training "
               "perturbation.")
    if "mean" not in set(rows["model"]):
        return [l2, block("fig-relative", title, caption, missing="not available: the mean baseline was not run")]
    ratio = relative_error(rows, reference="mean", metric="l2_top1000").rename(columns={"ratio": "value"})
    ratio = ratio[np.isfinite(ratio["value"]) & (ratio["value"] > 0)]
    fig = figures.grouped_boxplot(ratio, x="subgroup", order=order, models=[m for m in res.models if m != "mean"],
                                  ylabel="l2_top1000 / mean baseline ↓", log=True, reference=1.0)
    return [l2, block("fig-relative", title, caption, fig)]


def spread(res: DatasetResults) -> dict:
    title = "Per-gene variability of predictions vs truth"
    caption = ("Each dot is a gene: its standard deviation across the test conditions (first seed) in the truth "
               "(x) and in the model's predictions (y). Dots under the diagonal mean the model predicts too "
               "little variation between perturbations (a collapse towards one average response).")
    seed = res.seeds[0]
    preds = {m: p for m in res.models if (p := res.prediction(res.primary, seed, m)) is not None}
    shared = sorted(set.intersection(*(set(p.conditions) for p in preds.values()))) if preds else []
    if len(shared) < 2:
        return block("fig-spread", title, caption, missing="not available: fewer than two shared test conditions")
    fs_data = res.featureset_data(res.primary)
    truth_sd = per_gene_sd(fs_data.expression(shared))
    pred_sd = {m: per_gene_sd(p.mean[[p.conditions.index(c) for c in shared]]) for m, p in preds.items()}
    varying = truth_sd > 0
    table = [{"model": m, "median_ratio": float(np.median(v[varying] / truth_sd[varying])) if varying.any()
              else float("nan")} for m, v in pred_sd.items()]
    columns = [_col("model", "model", num=False),
               _col("median_ratio", "median over genes of sd(prediction) / sd(truth) (1 = as variable as truth)")]
    return block("fig-spread", title, caption, figures.spread_scatter(truth_sd, pred_sd),
                 table={"columns": columns, "rows": table})


def featureset_comparison(res: DatasetResults) -> dict:
    title = f"Feature sets side by side: {' vs '.join(res.featuresets)}"
    caption = ("Mean (95% CI) of the headline metrics over all test conditions for each feature set. Removing "
               "MT- and ribosomal genes changes the bars when those genes carry much of the signal a model "
               "(or metric) relies on.")
    if len(res.featuresets) < 2:
        return block("fig-featuresets", title, caption, missing="not available: only one feature set was run")
    metrics = ["pearson_delta", "mse_de20", "l2_top1000"]
    rows = res.summary[(res.summary["subgroup"] == "all") & res.summary["metric"].isin(metrics)]
    fig = figures.featureset_bars(rows, metrics=metrics, featuresets=res.featuresets, models=res.models,
                                  labels={m: metric_info(m)["axis"] for m in metrics})
    return block("fig-featuresets", title, caption, fig)


def figures_section(res: DatasetResults) -> list[dict]:
    return [mse_by_subgroup(res), loss_curves(res), dstate_ablation(res), uncertainty(res),
            highlighted_conditions(res), *l2_and_relative(res), spread(res), featureset_comparison(res)]
