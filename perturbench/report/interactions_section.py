"""Section 6 of a dataset page: genetic interactions of the two-gene test conditions.

Reads ``results/{dataset}/interactions.tsv``, ``interaction_params.tsv`` and
``interaction_curve.tsv`` (written by ``perturbench interactions``; method in
:mod:`perturbench.interaction_analysis`) and returns blocks in the figure-block format of
:mod:`perturbench.report.figure_sections`: a true-vs-predicted magnitude scatter per model with
the metrics table, and the interaction-detection curve with the truth's planted-type recall.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from perturbench.evaluate import ALL_SUBGROUP
from perturbench.report import figures
from perturbench.report.loaders import DatasetResults

TRUTH = "truth"
_METRICS = (("n_doubles", "test doubles"), ("magnitude_spearman", "Spearman magnitude ↑"),
            ("precision_at_k_synergy", "precision@k synergy ↑"),
            ("precision_at_k_suppression", "precision@k suppression ↑"),
            ("tpr_at_fdp20", "TPR at FDP ≤ 0.2 ↑"), ("class_agreement", "GI class agreement ↑"))


def interactions_section(res: DatasetResults) -> dict:
    """{available, reason, featureset, blocks} for the page; unavailable without interactions.tsv."""
    path = res.root / "interactions.tsv"
    if not path.exists():
        return {"available": False, "reason": f"not available: {path} was not produced (interactions disabled or "
                                              "no two-gene conditions)", "featureset": res.primary, "blocks": []}
    metrics = pd.read_csv(path, sep="\t")
    params = pd.read_csv(res.root / "interaction_params.tsv", sep="\t")
    curve = pd.read_csv(res.root / "interaction_curve.tsv", sep="\t")
    fs = res.primary if (metrics["featureset"] == res.primary).any() else str(metrics["featureset"].iloc[0])
    metrics, params, curve = (t[t["featureset"] == fs] for t in (metrics, params, curve))
    models = [m for m in res.models if (metrics["model"] == m).any()]
    blocks = [_scatter_block(params, metrics, models), _curve_block(curve, metrics, models)]
    return {"available": True, "reason": "", "featureset": fs, "blocks": blocks}


def _model_means(metrics: pd.DataFrame, models: list[str]) -> list[dict]:
    """Per model: each metric's mean over seeds, subgroup ``all``."""
    rows = []
    for model in models:
        sub = metrics[(metrics["model"] == model) & (metrics["subgroup"] == ALL_SUBGROUP)]
        means = sub.groupby("metric")["value"].mean()
        rows.append({"model": model, **{k: float(means.get(k, math.nan)) for k, _ in _METRICS}})
    return rows


def _scatter_block(params: pd.DataFrame, metrics: pd.DataFrame, models: list[str]) -> dict:
    truth = params[params["model"] == TRUTH].set_index("condition")["magnitude"]
    ncols = min(4, max(1, len(models)))
    nrows = max(1, math.ceil(len(models) / ncols))
    fig = Figure(figsize=(2.6 * ncols, 2.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, model in zip(axes, models):
        sub = params[(params["model"] == model) & params["condition"].isin(truth.index)]
        ax.scatter(truth.loc[sub["condition"]], sub["magnitude"], s=8, alpha=0.6)
        ax.axhline(np.sqrt(2), color="grey", lw=0.6, ls=":")
        ax.axvline(np.sqrt(2), color="grey", lw=0.6, ls=":")
        ax.set_title(model, fontsize=8)
        ax.set_xlabel("true magnitude", fontsize=7)
        ax.set_ylabel("predicted magnitude", fontsize=7)
    for ax in axes[len(models):]:
        ax.set_visible(False)
    columns = [{"key": "model", "label": "model", "num": False}]
    columns += [{"key": k, "label": label, "num": True} for k, label in _METRICS]
    return {
        "id": "gi-magnitude", "nav": "GI magnitude", "title": "Interaction magnitude: truth vs prediction",
        "caption": ("Each dot is one test double (all seeds): magnitude √(c1²+c2²) of the Theil–Sen fit of the "
                    "double's change on the two measured single changes, truth (x) vs the model's predicted double "
                    "(y); dotted lines mark the additive value √2. Table: means over seeds of the metrics over all "
                    "test doubles — Spearman of predicted vs true magnitude, precision@k of the k most synergistic "
                    "(largest) and most suppressive (smallest) true magnitudes, TPR of the detection curve at "
                    "FDP ≤ 0.2, and the fraction of doubles given their true GI class."),
        "png": figures.png_base64(fig) if models else None, "missing": "no model run has two-gene predictions",
        "table": {"columns": columns, "rows": _model_means(metrics, models)},
    }


def _curve_block(curve: pd.DataFrame, metrics: pd.DataFrame, models: list[str]) -> dict:
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    colors = figures.model_colors(models)
    for model in models:
        color = colors[model]
        for i, (_, c) in enumerate(curve[curve["model"] == model].groupby("seed")):
            ax.plot(c["fdp"], c["tpr"], marker=".", ms=3, lw=1, color=color, alpha=0.8, label=model if i == 0 else None)
    ax.set_xlabel("false discovery proportion")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    truth = metrics[metrics["model"] == TRUTH].set_index("metric")["value"]
    rows = [{"quantity": k, "value": float(v)} for k, v in truth.items()]
    return {
        "id": "gi-detection", "nav": "GI detection", "title": "Detecting interacting pairs (Ahlmann-Eltze et al.)",
        "caption": ("A double interacts when its measured deviation from additivity (RMS over genes of "
                    "Δ_AB − Δ_A − Δ_B) exceeds noise_factor × its noise level (split halves of the cells; the median "
                    "deviation without cells). Doubles are called in decreasing predicted deviation; each line is one "
                    "seed. The additive baseline predicts no deviation and sits at a single point. Table: the truth's "
                    "GI classes and, for simulated data, the recall of each planted interaction type."),
        "png": figures.png_base64(fig) if models else None, "missing": "no model run has two-gene predictions",
        "table": {"columns": [{"key": "quantity", "label": "truth", "num": False},
                              {"key": "value", "label": "value", "num": True}], "rows": rows},
    }

