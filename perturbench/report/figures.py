"""Report figures: each function takes ready-made tables/arrays and returns a matplotlib Figure.

Figures use the object-oriented API (``matplotlib.figure.Figure``, rendered by the Agg canvas),
so importing this module never touches a display or the global pyplot state.
:func:`png_base64` turns a figure into the text of an inline ``data:`` URI.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

_DPI = 96
_WIDTH = 10.5  # inches; ~1000 px at _DPI, the width of the page's content column


def model_colors(models: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per model, in the given order (the same on every figure of a page)."""
    palette = sns.color_palette("tab10" if len(models) <= 10 else "tab20", n_colors=max(len(models), 1))
    return {m: palette[i] for i, m in enumerate(models)}


def png_base64(fig: Figure) -> str:
    """The figure as base64-encoded PNG (for ``<img src="data:image/png;base64,...">``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(height: float, ncols: int = 1, nrows: int = 1, width: float = _WIDTH, **kwargs):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def grouped_boxplot(
    table: pd.DataFrame, *, x: str, order: Sequence[str], models: Sequence[str], ylabel: str,
    log: bool = False, reference: float | None = None,
) -> Figure:
    """Boxes of ``table['value']`` per ``x`` category, one colour per model, points overlaid."""
    fig, axes = _figure(4.2)
    ax = axes[0, 0]
    colors = model_colors(models)
    hue_order = [m for m in models if m in set(table["model"])]
    palette = {m: colors[m] for m in hue_order}
    common = {"data": table, "x": x, "y": "value", "hue": "model", "order": list(order), "hue_order": hue_order,
              "ax": ax}
    sns.boxplot(**common, palette=palette, fliersize=0, linewidth=0.8, boxprops={"alpha": 0.6})
    sns.stripplot(**common, palette=palette, dodge=True, size=2.5, alpha=0.8, legend=False)
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.legend(title="model", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def loss_curves(curves: Mapping[str, pd.DataFrame], *, terms: Sequence[str]) -> Figure:
    """One panel per loss term; colour = run, solid = train, dashed = validation."""
    ncols = min(len(terms), 3)
    nrows = -(-len(terms) // ncols)
    fig, axes = _figure(2.8 * nrows, ncols=ncols, nrows=nrows)
    colors = model_colors(list(curves))
    for ax, term in zip(axes.ravel(), terms, strict=False):
        for run, frame in curves.items():
            for split, style in (("train", "-"), ("val", "--")):
                rows = frame[(frame["term"] == term) & (frame["split"] == split)]
                if not rows.empty:
                    ax.plot(rows["epoch"], rows["value"], style, color=colors[run], marker=".",
                            label=f"{run} ({split})")
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(terms):]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    return fig


def dstate_ablation(rows: pd.DataFrame, *, metrics: Sequence[str], labels: Mapping[str, str]) -> Figure:
    """Per metric, mean ± 95% CI against d_state (log₂ axis), one line per subgroup.

    ``rows``: columns d_state, subgroup, metric, mean, ci_low, ci_high.
    """
    fig, axes = _figure(3.6, ncols=len(metrics))
    subgroups = list(dict.fromkeys(rows["subgroup"]))
    palette = dict(zip(subgroups, sns.color_palette("colorblind", len(subgroups)), strict=True))
    for ax, metric in zip(axes.ravel(), metrics, strict=True):
        for subgroup in subgroups:
            sub = rows[(rows["metric"] == metric) & (rows["subgroup"] == subgroup)].sort_values("d_state")
            err = np.vstack([sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]])
            ax.errorbar(sub["d_state"], sub["mean"], yerr=np.nan_to_num(err), marker="o", capsize=3,
                        color=palette[subgroup], label=subgroup,
                        linewidth=2.2 if subgroup == "all" else 1.2)
        ax.set_xscale("log", base=2)
        ticks = sorted(set(rows["d_state"]))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("d_state (SSM state size N)")
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def uncertainty(
    log_sigma: Mapping[str, np.ndarray], coverage: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> Figure:
    """Left: histogram of log₁₀ σ per run. Right: empirical vs nominal central-interval coverage."""
    fig, axes = _figure(3.8, ncols=2)
    colors = model_colors(list(log_sigma))
    for run, values in log_sigma.items():
        axes[0, 0].hist(values, bins=40, histtype="step", linewidth=1.5, color=colors[run], label=run, density=True)
    axes[0, 0].set_xlabel("log₁₀ σ (predicted sd, log-expression units)")
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="perfect calibration")
    for run, (nominal, empirical) in coverage.items():
        ax.plot(nominal, empirical, marker="o", color=colors[run], label=run)
    ax.set_xlabel("nominal coverage of μ ± zσ")
    ax.set_ylabel("empirical coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    for a in axes.ravel():
        a.grid(alpha=0.3)
    return fig


def highlighted_conditions(panels: Sequence[dict], *, models: Sequence[str], ylabel: str) -> Figure:
    """Per condition, true vs predicted expression of its top DE genes.

    Each panel: ``condition, genes, truth, ctrl`` and ``preds`` (model → values over ``genes``).
    """
    fig, axes = _figure(3.0 * len(panels), nrows=len(panels))
    colors = model_colors(models)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        x = np.arange(len(panel["genes"]))
        ax.bar(x, panel["truth"], color="0.82", edgecolor="0.4", width=0.8, label="truth")
        ax.scatter(x, panel["ctrl"], marker="_", s=200, color="black", label="control pseudobulk", zorder=3)
        offsets = np.linspace(-0.3, 0.3, max(len(panel["preds"]), 1))
        for off, (model, values) in zip(offsets, panel["preds"].items(), strict=False):
            ax.scatter(x + off, values, s=14, color=colors[model], label=model, zorder=4)
        ax.set_xticks(x, panel["genes"], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(panel["condition"], fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def spread_scatter(truth_sd: np.ndarray, pred_sd: Mapping[str, np.ndarray]) -> Figure:
    """One small panel per model: per-gene sd of predictions vs of truth across test conditions."""
    ncols = min(len(pred_sd), 4)
    nrows = -(-len(pred_sd) // ncols)
    fig, axes = _figure(2.6 * nrows + 0.4, ncols=ncols, nrows=nrows, sharex=True, sharey=True)
    colors = model_colors(list(pred_sd))
    top = max(float(np.max(truth_sd, initial=0.0)), *(float(np.max(v, initial=0.0)) for v in pred_sd.values()))
    for ax, (model, values) in zip(axes.ravel(), pred_sd.items(), strict=False):
        ax.scatter(truth_sd, values, s=6, alpha=0.6, color=colors[model])
        ax.plot([0, top], [0, top], color="0.4", linestyle=":", linewidth=1)
        ax.set_title(model, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(pred_sd):]:
        ax.set_visible(False)
    fig.supxlabel("sd of true expression across test conditions", fontsize=9)
    fig.supylabel("sd of predicted expression", fontsize=9)
    return fig


def featureset_bars(rows: pd.DataFrame, *, metrics: Sequence[str], featuresets: Sequence[str],
                    models: Sequence[str], labels: Mapping[str, str]) -> Figure:
    """Per metric, grouped bars (model × feature set) of the mean with its 95% CI.

    ``rows``: columns featureset, model, metric, mean, ci_low, ci_high.
    """
    fig, axes = _figure(3.8, ncols=len(metrics))
    palette = dict(zip(featuresets, sns.color_palette("Set2", len(featuresets)), strict=True))
    width = 0.8 / len(featuresets)
    x = np.arange(len(models))
    for ax, metric in zip(axes.ravel(), metrics, strict=True):
        for i, fs in enumerate(featuresets):
            sub = rows[(rows["metric"] == metric) & (rows["featureset"] == fs)].set_index("model").reindex(models)
            err = np.vstack([sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]])
            ax.bar(x + (i - (len(featuresets) - 1) / 2) * width, sub["mean"], width, yerr=np.nan_to_num(err),
                   color=palette[fs], label=fs, capsize=2, error_kw={"linewidth": 0.8})
        ax.set_xticks(x, models, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(labels[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0, -1].legend(title="feature set", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def calibration_before_after(nominal: np.ndarray, empirical: Mapping[str, np.ndarray]) -> Figure:
    """Empirical vs nominal central-interval coverage; ``empirical``: {"no": before, "yes": after}."""
    fig, axes = _figure(3.6, width=5.0)
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", label="perfect calibration")
    styles = {"no": ("before calibration (network σ)", "--"), "yes": ("after calibration on validation", "-")}
    for flag, values in empirical.items():
        label, line = styles[flag]
        ax.plot(nominal, values, marker="o", linestyle=line, color="C0", label=label)
    ax.set_xlabel("nominal coverage of μ ± zσ")
    ax.set_ylabel("empirical coverage (test conditions)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
