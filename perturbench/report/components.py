"""Report section "Which component carries the gain": the dual-stream model's component ablations.

Context for ``components.html.j2``:

1. ``ablation``: per variant run ``dual_stream_mamba_<variant>`` (:data:`perturbench.workflow.COMPONENTS`)
   × subgroup × headline metric, the mean paired difference ``d̄ = mean(variant − full)`` over the
   shared (seed, condition) pairs of the primary feature set, the two-sided Wilcoxon signed-rank p
   (:func:`perturbench.verdict.paired_test`) and its Holm adjustment over every test of the
   table (:func:`perturbench.stats.holm`); one extra row compares ``prior_only`` with the ridge baseline;
2. ``cost``: ``results/bench/sequence_cost.tsv`` (Mamba vs attention per token resolution, measured
   side by side) and the measured fit time / peak RSS of each variant's workflow jobs;
3. ``calibration``: σ coverage before / after calibration on validation conditions;
4. ``verdict``: one sentence derived from the ``all`` rows of the headline metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from perturbench.evaluate import ALL_SUBGROUP
from perturbench.metrics import METRICS
from perturbench.report import figures
from perturbench.report.analyses import calibration, interval_coverage
from perturbench.report.loaders import DatasetResults
from perturbench.report.sections import HEADLINE, subgroup_order
from perturbench.stats import holm
from perturbench.verdict import ALPHA, in_subgroup, paired_test
from perturbench.workflow import COMPONENTS, MAMBA

TEST_METRICS = ("pearson_delta", "mse_de20")
REMOVED = {  # what each variant takes away, for the verdict sentence
    "attention": "replacing Mamba by attention", "no_encoder": "removing the sequence encoder",
    "no_data_stream": "removing the VAE data stream", "no_graphs": "removing the graph convolutions",
    "no_prior": "removing the ridge prior", "prior_only": "removing the network (prior only)",
    "tokens16": "16 tokens instead of 64", "tokens256": "256 tokens instead of 64",
    "tokens_per_gene": "one token per gene instead of 64 tokens",
}
_LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)


def variant_runs(res: DatasetResults) -> dict[str, str]:
    """Variant → run name, for the component runs with results."""
    return {v: f"{MAMBA}_{v}" for v in COMPONENTS if f"{MAMBA}_{v}" in res.models}


def _test_row(table: pd.DataFrame, label: str, model: str, reference: str, subgroup: str, metric: str) -> dict:
    sub = in_subgroup(table, subgroup)
    have = set(sub.loc[sub["metric"] == metric, "model"])
    if not {model, reference} <= have:
        return {"variant": label, "subgroup": subgroup, "metric": metric, "diff": np.nan, "p": np.nan, "n": 0}
    test = paired_test(sub, model, reference, metric)
    diff = test["mean_diff"]
    better = np.nan if not test["n"] else bool((diff > 0) == (METRICS[metric].direction == "higher"))
    return {"variant": label, "subgroup": subgroup, "metric": metric, "diff": diff, "p": test["p"], "n": test["n"],
            "better": better}


def ablation_table(table: pd.DataFrame, variants: dict[str, str], *, metrics=TEST_METRICS) -> pd.DataFrame:
    """Rows (variant, subgroup, metric, diff = mean(variant − full), p, p_holm, n, better) on the
    per-condition ``table`` of one feature set; plus ``prior_only − ridge`` when both ran."""
    subgroups = [*subgroup_order(table["subgroup"]), ALL_SUBGROUP]
    rows = [_test_row(table, v, run, MAMBA, g, m) for v, run in variants.items() for g in subgroups for m in metrics]
    if "prior_only" in variants and "ridge" in set(table["model"]):
        rows += [_test_row(table, "prior_only vs ridge", variants["prior_only"], "ridge", g, m)
                 for g in subgroups for m in metrics]
    out = pd.DataFrame(rows, columns=["variant", "subgroup", "metric", "diff", "p", "n", "better"])
    out["p_holm"] = holm(out["p"].to_numpy(dtype=np.float64)) if len(out) else []
    out["better"] = pd.Series([None if pd.isna(b) else bool(b) for b in out["better"]], index=out.index, dtype=object)
    return out


def verdict(ablation: pd.DataFrame, dataset: str, *, metrics=TEST_METRICS) -> str:
    """One sentence from the ``all`` rows: per variant, the headline metrics it significantly worsens
    (the component it removes matters) or improves (Holm-adjusted p < ALPHA), the rest no difference."""
    rows = ablation[(ablation["subgroup"] == ALL_SUBGROUP) & ablation["metric"].isin(metrics)
                    & ablation["variant"].isin(list(REMOVED))].dropna(subset=["diff"])
    if rows.empty:
        return f"No component ablation of {', '.join(metrics)} on {dataset} was run."
    worse, better, neutral = [], [], []
    for variant, group in rows.groupby("variant", sort=False):
        signif = group[group["p_holm"] < ALPHA]
        effects = {flag: ", ".join(f"{r.metric} (Δ {r.diff:+.3g})" for r in signif.itertuples() if r.better is flag)
                   for flag in (False, True)}
        if effects[False]:
            worse.append(f"{REMOVED[variant]} worsens {effects[False]}")
        if effects[True]:
            better.append(f"{REMOVED[variant]} improves {effects[True]}")
        if not effects[False] and not effects[True]:
            neutral.append(REMOVED[variant])
    parts = []
    if worse:
        parts.append("; ".join(worse) + " — so these components matter")
    if better:
        parts.append("; ".join(better))
    if neutral:
        parts.append("no significant difference from " + ", ".join(neutral))
    return (f"On {dataset} (all test conditions vs the full model, Holm-adjusted p < {ALPHA}, "
            f"{int(rows['n'].max())} paired values): " + "; ".join(parts) + ".")


def fit_costs(res: DatasetResults, runs: list[str]) -> pd.DataFrame:
    """Mean wall seconds and peak RSS (MiB) of each run's fit jobs over seeds (Snakemake benchmark files)."""
    rows = []
    for run in runs:
        paths = [res.root.parent / "benchmarks" / res.name / res.primary / f"seed{s}" / f"fit_{run}.tsv"
                 for s in res.seeds]
        found = [pd.read_csv(p, sep="\t").iloc[-1] for p in paths if p.exists()]
        if found:
            rows.append({"model": run, "fit_s": float(np.mean([f["s"] for f in found])),
                         "peak_rss_mib": float(np.mean([f["max_rss"] for f in found])), "n": len(found)})
    return pd.DataFrame(rows, columns=["model", "fit_s", "peak_rss_mib", "n"])


def sequence_costs(results: Path, dataset: str) -> pd.DataFrame | None:
    """Rows of ``results/bench/sequence_cost.tsv`` for ``dataset``'s scale (all rows for another name)."""
    path = results / "bench" / "sequence_cost.tsv"
    if not path.exists():
        return None
    table = pd.read_csv(path, sep="\t")
    table["n_tokens"] = table["n_tokens"].fillna("—").astype(str)
    mine = table[table["scale"] == dataset]
    return mine if len(mine) else table


def calibration_block(res: DatasetResults) -> dict:
    """Per calibrated run (seeds pooled): coverage curves and scores before / after calibration."""
    fs = res.featureset_data(res.primary)
    curves, rows = {}, []
    for run in res.uncertainty_runs():
        preds = [p for s in res.seeds if (p := res.prediction(res.primary, s, run)) is not None
                 and p.logvar_raw is not None]
        if not preds:
            continue
        mu, truth = np.vstack([p.mean for p in preds]), np.vstack([fs.expression(p.conditions) for p in preds])
        for flag, logvar in (("no", np.vstack([p.logvar_raw for p in preds])),
                             ("yes", np.vstack([p.logvar for p in preds]))):
            rows.append({"model": run, "calibrated": flag, **calibration(mu, logvar, truth)})
            if run == MAMBA:
                curves[flag] = _coverage_curve(mu, logvar, truth)
    fig = figures.calibration_before_after(_LEVELS, curves) if curves else None
    return {"rows": rows, "png": None if fig is None else figures.png_base64(fig)}


def _coverage_curve(mu: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([interval_coverage(mu, logvar, truth, lv) for lv in _LEVELS])


def components_section(res: DatasetResults) -> dict:
    """Context of the section (module docstring); ``available`` False when no component run exists."""
    variants = variant_runs(res)
    table = res.conditions[res.conditions["featureset"] == res.primary]
    ablation = ablation_table(table, variants) if variants and MAMBA in res.models else None
    seq = sequence_costs(res.root.parent, res.name)
    return {
        "available": ablation is not None,
        "featureset": res.primary,
        "rows": [] if ablation is None else ablation.to_dict("records"),
        "verdict": "" if ablation is None else verdict(ablation, res.name),
        "fit_costs": fit_costs(res, [MAMBA, *variants.values()]).to_dict("records"),
        "sequence_costs": None if seq is None else seq.to_dict("records"),
        "calibration": calibration_block(res),
        "alpha": ALPHA,
    }
