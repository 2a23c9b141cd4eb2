"""One function per workflow step; the CLI (and so every Snakemake rule) calls exactly one of these.

Each step reads its inputs, calls the library, and writes its outputs atomically, so an
interrupted job never leaves a file Snakemake would take as finished.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perturbench.data.contract import PerturbDataset
from perturbench.data.io import atomic_path, write_text_atomic
from perturbench.data.store import load_dataset, save_dataset

_METRICS_PATH = re.compile(r"(?P<featureset>[^/]+)/seed(?P<seed>\d+)/metrics/(?P<model>[^/]+)\.tsv$")
_PREDICTION_PATH = re.compile(r"(?P<featureset>[^/]+)/seed(?P<seed>\d+)/predictions/(?P<model>[^/]+)\.h5ad$")


def log(msg: str) -> None:
    print(f"[perturbench] {msg}", file=sys.stderr, flush=True)


def load_source(name: str, spec: dict[str, Any], *, inputs: list[Path], workdir: Path) -> PerturbDataset:
    """Build the dataset ``name`` from its config ``spec`` (``spec['source']`` picks the loader)."""
    source = spec["source"]
    if source == "gears":
        from perturbench.data.download import safe_extract
        from perturbench.data.gears_source import find_gears_h5ad, load_gears_dataset

        target = workdir / "extracted"
        if not target.exists():
            safe_extract(inputs[0], target)
        return load_gears_dataset(find_gears_h5ad(target), name=name)
    if source == "simulated":
        from perturbench.data.gears_source import load_gears_dataset

        return load_gears_dataset(inputs[0], name=name)
    if source == "cells":
        from perturbench.data.cells import read_cells_h5ad

        return read_cells_h5ad(
            Path(spec["path"]),
            name=name,
            condition_key=spec.get("condition_key", "condition"),
            control_label=spec.get("control_label", "ctrl"),
            keep=spec.get("keep"),
        )
    if source == "pseudobulk":
        from perturbench.data.tables import read_pseudobulk_table

        return read_pseudobulk_table(Path(spec["path"]), name=name, delta_only=spec.get("delta_only"))
    if source == "norman_npz":
        from perturbench.data.tables import norman_npz_to_pseudobulk, read_pseudobulk_table

        converted = norman_npz_to_pseudobulk(Path(spec["path"]), workdir / "norman_npz.h5ad")
        return read_pseudobulk_table(converted, name=name, delta_only=True)
    raise ValueError(f"dataset {name!r}: unknown source {source!r}")


def simulate(preset: str, params: dict[str, Any], out: Path, *, go_out: Path | None = None) -> None:
    """Write a simulated GEARS-format dataset (``perturb_processed.h5ad`` layout)."""
    import dataclasses

    from perturbench.data.simulate import SIMULATION_PRESETS, write_simulated

    if preset not in SIMULATION_PRESETS:
        raise ValueError(f"unknown simulation preset {preset!r}; known: {', '.join(SIMULATION_PRESETS)}")
    write_simulated(dataclasses.replace(SIMULATION_PRESETS[preset], **params), out, go_path=go_out)


def prepare(name: str, spec: dict[str, Any], out_dir: Path, *, inputs: list[Path]) -> None:
    """Load dataset ``name``, annotate DE genes, and save it to ``out_dir``."""
    from perturbench.data.de import annotate_de

    ds = annotate_de(load_source(name, spec, inputs=inputs, workdir=out_dir / "work"))
    missing = ds.targets_missing_from_genes()
    log(f"{name}: {ds.pseudobulk.n_vars} genes, {len(ds.conditions)} conditions, "
        f"{0 if ds.cells is None else ds.cells.n_obs} cells; "
        f"{len(missing)} conditions target genes that are not measured")
    save_dataset(ds, out_dir)


def featureset(in_dir: Path, name: str, out_dir: Path) -> None:
    """Restrict a prepared dataset to feature set ``name``; record what was removed."""
    from perturbench.data.features import apply_feature_set

    ds, record = apply_feature_set(load_dataset(in_dir), name)
    save_dataset(ds, out_dir)
    write_text_atomic(out_dir / "featureset.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"{name}: kept {record['n_genes']} genes, removed {record['n_removed']}")


def split(data_dir: Path, seed: int, out: Path, *, dataset: str, params: dict[str, Any]) -> None:
    """Write the split manifest for ``seed`` (depends only on condition names)."""
    from perturbench.splits import make_split, write_manifest

    ds = load_dataset(data_dir, with_cells=False)
    write_manifest(make_split(ds.conditions, seed=seed, **params), out, dataset=dataset)


def go_graph(data_dir: Path, gene2go: Path, out: Path, *, aliases: Path | None, top_k: int, min_weight: float) -> None:
    """GO Jaccard graph over the dataset's genes and target genes, saved as ``.npz``."""
    from perturbench.data.conditions import perturbed_genes
    from perturbench.graphs import go_similarity_graph, read_gene2go

    ds = load_dataset(data_dir, with_cells=False)
    genes = sorted(set(ds.genes) | set(perturbed_genes(ds.conditions)))
    graph = go_similarity_graph(read_gene2go(gene2go, aliases=aliases), genes, top_k=top_k, min_weight=min_weight)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, genes=np.array(graph.genes, dtype=str), src=graph.src, dst=graph.dst, weight=graph.weight)
    log(f"GO graph: {len(graph.genes)} genes, {len(graph.src)} edges")


def read_go_graph(path: Path):
    from perturbench.graphs import GeneGraph

    with np.load(path) as z:
        return GeneGraph(tuple(str(g) for g in z["genes"]), z["src"], z["dst"], z["weight"])


def fit_predict(
    data_dir: Path,
    split_path: Path,
    model: str,
    params: dict[str, Any],
    out: Path,
    *,
    go_graph_path: Path | None,
    go_table: Path | None,
    log_dir: Path,
    device: str,
) -> None:
    """Fit ``model`` on the training conditions of the split and predict its test conditions."""
    from perturbench.models.base import FitContext, attribution_record
    from perturbench.models.registry import get_model
    from perturbench.splits import read_manifest

    ds = load_dataset(data_dir)
    sp = read_manifest(split_path)
    train = ds.subset(list(sp.train))
    val = ds.subset(list(sp.val)) if sp.val else None
    graph = read_go_graph(go_graph_path) if go_graph_path else None
    log_dir.mkdir(parents=True, exist_ok=True)
    context = FitContext(seed=sp.seed, val=val, go_graph=graph, go_table=go_table,
                         workdir=log_dir / "work", device=device, log_dir=log_dir)
    name = params.pop("model", model)
    fitted = get_model(name, **params.get("params", {})).fit(train, context=context)
    prediction = fitted.predict(sorted(sp.test))
    prediction.model = model
    prediction.attribution = attribution_record(fitted, train)
    prediction.write(out)
    log(f"{model}: predicted {len(prediction.conditions)} conditions, skipped {len(prediction.skipped)}")


def evaluate(data_dir: Path, split_path: Path, prediction_path: Path, out: Path) -> None:
    """Per-condition metrics of one prediction file (long TSV: condition, subgroup, metric, value)."""
    from perturbench.evaluate import evaluate_prediction_file
    from perturbench.splits import read_manifest

    ds = load_dataset(data_dir, with_cells=False)
    sp = read_manifest(split_path)
    table = evaluate_prediction_file(prediction_path, ds, subgroups=dict(sp.test), train_conditions=list(sp.train))
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


def collect_metrics(paths: list[Path]) -> pd.DataFrame:
    """Concatenate metric tables, taking featureset / seed / model from the output layout."""
    frames = []
    for path in paths:
        match = _METRICS_PATH.search(Path(path).as_posix())
        if match is None:
            raise ValueError(f"{path}: not a metrics path .../{{featureset}}/seed{{seed}}/metrics/{{model}}.tsv")
        frame = pd.read_csv(path, sep="\t")
        frame.insert(0, "featureset", match["featureset"])
        frame.insert(1, "model", match["model"])
        frame.insert(2, "seed", int(match["seed"]))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def summarize(paths: list[Path], out: Path, conditions_out: Path) -> None:
    """Subgroup summary (mean, bootstrap 95% CI, n) over seeds and conditions."""
    from perturbench.evaluate import summarize as summarize_table

    table = collect_metrics(paths)
    with atomic_path(conditions_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
    with atomic_path(out) as tmp:
        summarize_table(table).to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _write_tsv(frame: pd.DataFrame, out: Path) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.8g")


def interactions(
    predictions: list[Path], splits: list[Path], params: dict[str, Any], out_dir: Path, *, planted: Path | None
) -> None:
    """Genetic-interaction tables of every prediction file (layout ``{featureset}/seed{seed}/predictions/``).

    Writes ``out_dir/interactions.tsv`` (featureset, model, seed, subgroup, metric, value; model
    ``truth`` = the measured doubles, seed 0), ``interaction_params.tsv`` (per double and run) and
    ``interaction_curve.tsv`` (detection curves). Method: :mod:`perturbench.interaction_analysis`.
    """
    from perturbench import interaction_analysis as gi
    from perturbench.interactions import gi_config
    from perturbench.models.base import Prediction
    from perturbench.splits import read_manifest

    cfg = gi_config(params)
    tests = {m.seed: m.test for m in map(read_manifest, splits)}
    planted_types = gi.read_planted(planted) if planted else None
    metrics, tables, curves, truths = [], [], [], {}
    for path in predictions:
        match = _PREDICTION_PATH.search(Path(path).as_posix())
        if match is None:
            raise ValueError(f"{path}: not a prediction path .../{{featureset}}/seed{{seed}}/predictions/{{model}}.h5ad")
        fs, seed, model = match["featureset"], int(match["seed"]), match["model"]
        if fs not in truths:
            ds = load_dataset(Path(path).parents[2])
            truths[fs] = (ds, gi.truth_table(ds, cfg))
            metrics += [(fs, gi.TRUTH, 0, *row) for row in gi.truth_rows(truths[fs][1], planted_types)]
            tables.append(truths[fs][1].reset_index().assign(featureset=fs, model=gi.TRUTH, seed=0))
        ds, truth = truths[fs]
        pred = gi.model_table(ds, Prediction.read(path), cfg)
        rows = gi.run_metrics(truth, pred, tests[seed], cfg=cfg, planted=planted_types)
        metrics += [(fs, model, seed, *row) for row in rows]
        tables.append(pred.reset_index().assign(featureset=fs, model=model, seed=seed))
        curves.append(gi.run_curve(truth, pred, list(tests[seed])).assign(featureset=fs, model=model, seed=seed))
        log(f"interactions {fs}/seed{seed}/{model}: {len(pred)} doubles")
    _write_interaction_outputs(metrics, tables, curves, out_dir)


def _write_interaction_outputs(metrics: list, tables: list, curves: list, out_dir: Path) -> None:
    columns = ["featureset", "model", "seed", "subgroup", "metric", "value"]
    _write_tsv(pd.DataFrame(metrics, columns=columns), out_dir / "interactions.tsv")
    lead = ["featureset", "model", "seed", "condition"]
    params = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=lead)
    _write_tsv(params[lead + [c for c in params.columns if c not in lead]], out_dir / "interaction_params.tsv")
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["n_called", "tpr", "fdp"])
    _write_tsv(curve, out_dir / "interaction_curve.tsv")
