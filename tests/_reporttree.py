"""A small finished results tree for the report tests, built once per session with the real
pipeline steps (simulate → prepare → featureset → split → GO graph → fit/predict → evaluate →
summarize → verdict → the report's analysis tables), exactly in the workflow's layout.

Two datasets: ``sim`` (simulated cells, feature sets full + no_mt, baselines and two fast Mamba
runs — d_state 16 and the d_state 4 ablation) and ``sim_pb`` (the same data without cells, full
only, baselines only, no GO table), so the report's "not available" paths are exercised too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pytest

from perturbench import analysis_tables, pipeline
from perturbench.data.simulate import SimulationConfig, write_simulated
from perturbench.data.store import load_dataset, save_dataset
from perturbench.workflow import model_runs, primary_featureset

MAMBA_PARAMS = {"epochs": 2, "d_model": 8, "n_tokens": 16, "batch_size": 16, "cells_per_epoch": 16}
CONFIG: dict[str, Any] = {
    "datasets": {
        "sim": {"source": "simulated", "preset": "tiny", "params": {"seed": 0}},
        "sim_pb": {"source": "pseudobulk", "path": "not-read-by-the-report.h5ad"},
    },
    "featuresets": ["full", "no_mt"],
    "seeds": [1],
    "go": {"source": "simulated", "top_k": 20, "min_weight": 0.1},
    "models": {"control": None, "mean": None, "additive": None, "ridge": None,
               "dual_stream_mamba": {"params": MAMBA_PARAMS}},
    "ablation": {"enabled": True, "d_state": [4]},
    "report": {"enabled": True, "highlight_conditions": ["NOT_IN_DATA+OTHER"]},
}
BASELINE_RUNS = ["control", "mean", "additive", "ridge"]
_BUILT: dict[str, Path] = {}


def _fit_and_evaluate(root: Path, featureset: str, seed: int, run: str, go_graph: Path | None) -> Path:
    data, split = root / featureset, root / "splits" / f"seed{seed}.json"
    base = data / f"seed{seed}"
    prediction = base / "predictions" / f"{run}.h5ad"
    spec = model_runs(CONFIG)[run]
    pipeline.fit_predict(data, split, run, dict(spec), prediction, go_graph_path=go_graph, go_table=None,
                         log_dir=base / "models" / run, device="cpu", featureset=featureset)
    metrics = base / "metrics" / f"{run}.tsv"
    pipeline.evaluate(data, split, prediction, metrics, featureset=featureset, model=run, seed=seed)
    return metrics


def add_attribution(path: Path, output_gene: str, values: dict[str, float]) -> None:
    """Store ``uns['attribution']`` in a prediction file, as models that provide attributions do."""
    adata = ad.read_h5ad(path)
    adata.uns["attribution"] = {"output_gene": output_gene, "genes": list(values), "values": list(values.values())}
    adata.write_h5ad(path)


def _build_sim(results: Path) -> None:
    root = results / "sim"
    raw = root / "raw" / "perturb_processed.h5ad"
    write_simulated(SimulationConfig.tiny(seed=0), raw, go_path=root / "raw" / "gene2go.tsv.gz")
    pipeline.prepare("sim", CONFIG["datasets"]["sim"], root / "prepared", inputs=[raw])
    pipeline.split(root / "prepared", 1, root / "splits" / "seed1.json", dataset="sim", params={})
    pipeline.go_graph(root / "prepared", root / "raw" / "gene2go.tsv.gz", root / "go_graph.npz",
                      aliases=None, top_k=20, min_weight=0.1)
    metrics = []
    for fs in CONFIG["featuresets"]:
        pipeline.featureset(root / "prepared", fs, root / fs)
        for run in model_runs(CONFIG):
            metrics.append(_fit_and_evaluate(root, fs, 1, run, root / "go_graph.npz"))
    _summarize(root, metrics, BASELINE_RUNS)
    predictions = [root / "full" / "seed1" / "predictions" / f"{run}.h5ad" for run in model_runs(CONFIG)]
    pipeline.interactions(predictions, [root / "splits" / "seed1.json"], {"top_genes": 20}, root, data_root=root,
                           planted=raw)
    genes = load_dataset(root / "full", with_cells=False).genes
    rng = np.random.default_rng(7)
    shared = rng.normal(size=len(genes))
    for run, noise in (("ridge", 0.3), ("dual_stream_mamba", 0.6)):
        values = dict(zip(genes, (shared + noise * rng.normal(size=len(genes))).tolist(), strict=True))
        add_attribution(root / "full" / "seed1" / "predictions" / f"{run}.h5ad", genes[0], values)
    write_analyses(root, CONFIG["featuresets"], list(model_runs(CONFIG)), root / "raw" / "gene2go.tsv.gz")


def _build_pseudobulk_only(results: Path) -> None:
    root = results / "sim_pb"
    ds = load_dataset(results / "sim" / "prepared")
    pb = ds.pseudobulk.copy()
    pb.uns.pop("de20_nondropout", None)
    save_dataset(dataclasses.replace(ds, name="sim_pb", pseudobulk=pb, cells=None), root / "prepared")
    pipeline.split(root / "prepared", 1, root / "splits" / "seed1.json", dataset="sim_pb", params={})
    pipeline.featureset(root / "prepared", "full", root / "full")
    metrics = [_fit_and_evaluate(root, "full", 1, run, None) for run in BASELINE_RUNS]
    _summarize(root, metrics, BASELINE_RUNS)
    write_analyses(root, ["full"], BASELINE_RUNS, root / "raw" / "gene2go.tsv.gz")  # the GO table is absent


def write_analyses(root: Path, featuresets: list[str], runs: list[str], gene2go: Path | None) -> None:
    """The analysis tables the report reads (rules noise_ceiling … go_enrichment): the noise
    ceiling per feature set, the per-model analyses on the primary one."""
    splits = sorted((root / "splits").glob("seed*.json"))
    for fs in featuresets:
        analysis_tables.noise_ceiling_step(root / fs, splits, root / fs / "noise_ceiling.tsv")
    fs = root / primary_featureset(featuresets)
    predictions = [fs / f"seed{s}" / "predictions" / f"{run}.h5ad" for run in runs for s in CONFIG["seeds"]]
    analysis_tables.recurrent_genes_step(fs, splits, predictions, fs / "recurrent_genes.tsv")
    analysis_tables.attribution_step(predictions, fs / "attribution_agreement.tsv")
    analysis_tables.go_enrichment_step(fs / "recurrent_genes.tsv", fs, fs / "go_enrichment.tsv", gene2go=gene2go)


def _summarize(root: Path, metrics: list[Path], baselines: list[str]) -> None:
    pipeline.summarize(metrics, root / "summary.tsv", root / "conditions.tsv")
    pipeline.verdict(root / "conditions.tsv", baselines, root / "comparisons.tsv", root / "rank_stability.tsv",
                     root / "verdict.tsv")


def results_tree(factory: pytest.TempPathFactory) -> Path:
    """The ``results`` folder of the tree (built on first call, then reused for the session)."""
    if "results" not in _BUILT:
        results = factory.mktemp("report_tree") / "results"
        _build_sim(results)
        _build_pseudobulk_only(results)
        _BUILT["results"] = results
    return _BUILT["results"]


def rendered_report(factory: pytest.TempPathFactory) -> Path:
    """The results folder with the report rendered into ``results/report/`` (once per session)."""
    from perturbench.report import build_report

    results = results_tree(factory)
    if "report" not in _BUILT:
        build_report(results, results / "report" / "index.html", config=CONFIG)
        _BUILT["report"] = results / "report"
    return results
