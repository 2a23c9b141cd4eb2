"""One function per workflow step; the CLI (and so every Snakemake rule) calls exactly one of these.

Each step reads its inputs, calls the library, and writes its outputs atomically, so an
interrupted job never leaves a file Snakemake would take as finished.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from perturbench.data.io import atomic_path, write_text_atomic
from perturbench.data.store import dataset_folder, load_dataset, save_dataset
from perturbench.errors import ConfigError


def log(msg: str) -> None:
    print(f"[perturbench] {msg}", file=sys.stderr, flush=True)


def simulate(preset: str, params: dict[str, Any], out: Path, *, go_out: Path | None = None) -> None:
    """Write a simulated GEARS-format dataset (``perturb_processed.h5ad`` layout)."""
    import dataclasses

    from perturbench.data.simulate import SIMULATION_PRESETS, write_simulated

    if preset not in SIMULATION_PRESETS:
        raise ConfigError(f"preset: unknown simulation preset {preset!r}; known: {', '.join(SIMULATION_PRESETS)}")
    write_simulated(dataclasses.replace(SIMULATION_PRESETS[preset], **params), out, go_path=go_out)


def prepare(name: str, spec: dict[str, Any], out_dir: Path, *, inputs: list[Path]) -> None:
    """Load dataset ``name``, annotate DE genes, and save it to ``out_dir``."""
    from perturbench.data.de import annotate_de
    from perturbench.data.sources import load_source

    out_dir = dataset_folder(out_dir)
    ds = annotate_de(load_source(name, spec, inputs=inputs, workdir=out_dir / "work"))
    missing = ds.targets_missing_from_genes()
    log(f"{name}: {ds.pseudobulk.n_vars} genes, {len(ds.conditions)} conditions, "
        f"{0 if ds.cells is None else ds.cells.n_obs} cells; "
        f"{len(missing)} conditions target genes that are not measured")
    save_dataset(ds, out_dir)


def featureset(in_dir: Path, name: str, out_dir: Path) -> None:
    """Restrict a prepared dataset to feature set ``name``; record what was removed.

    Reads only the pseudobulk: the folder references the prepared cells (a gene mask,
    :func:`perturbench.data.store.save_featureset`); non-dropout DE lists are re-derived from
    the pseudobulk (:func:`perturbench.data.de.nondropout_from_pseudobulk`).
    """
    from perturbench.data.de import nondropout_from_pseudobulk
    from perturbench.data.features import apply_feature_set
    from perturbench.data.store import CELLS, save_featureset

    out_dir = dataset_folder(out_dir)
    prepared = load_dataset(in_dir, with_cells=False)
    ds, record = apply_feature_set(prepared, name)
    ranking = ds.de_genes("de_ranking")
    if record["n_removed"] and ranking and "de20_nondropout" in prepared.pseudobulk.uns:
        ds.pseudobulk.uns["de20_nondropout"] = nondropout_from_pseudobulk(ds.pseudobulk, ranking)
    save_featureset(ds, out_dir, cells_from=dataset_folder(in_dir) / CELLS)
    write_text_atomic(out_dir / "featureset.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"{name}: kept {record['n_genes']} genes, removed {record['n_removed']}")


def split(data_dir: Path, seed: int, out: Path, *, dataset: str, params: dict[str, Any]) -> None:
    """Write the split manifest for ``seed`` (depends only on condition names)."""
    from perturbench.splits import make_split, write_manifest

    if params.get("kind") == "cells":
        from perturbench.cell_split import make_cell_split, split_obs, write_cell_manifest

        names, conditions = split_obs(dataset_folder(data_dir) / "cells.h5ad")
        cell_split = make_cell_split(names, conditions, seed=seed, fractions=params.get("fractions", (0.8, 0.1, 0.1)),
                                     zscore=bool(params.get("zscore", False)))
        write_cell_manifest(cell_split, out, dataset=dataset)
        return
    ds = load_dataset(data_dir, with_cells=False)
    condition_params = {k: v for k, v in params.items() if k not in ("fractions", "zscore")}
    write_manifest(make_split(ds.conditions, seed=seed, **condition_params), out, dataset=dataset)


def cell_split_data(data_dir: Path, split_path: Path, out_dir: Path) -> None:
    """Train / val / truth pseudobulks of a cell split (:func:`perturbench.cell_split.write_cell_split_data`)."""
    from perturbench.cell_split import CellSplit, read_any_manifest, write_cell_split_data

    sp = read_any_manifest(split_path)
    if not isinstance(sp, CellSplit):
        raise ValueError(f"{split_path}: field 'kind' is {sp.kind!r}, not a cell split")
    write_cell_split_data(data_dir, sp, out_dir)
    log(f"cell split seed {sp.seed}: {len(sp.conditions)} conditions, "
        + ", ".join(f"{len(sp.cells[p])} {p} cells" for p in ("train", "val", "test")))


def go_graph(data_dir: Path, gene2go: Path, out: Path, *, aliases: Path | None, top_k: int, min_weight: float) -> None:
    """GO Jaccard graph over the dataset's genes and target genes, saved as ``.npz``."""
    from perturbench.data.conditions import perturbed_genes
    from perturbench.graphs import go_similarity_graph, read_gene2go, save_graph

    ds = load_dataset(data_dir, with_cells=False)
    genes = sorted(set(ds.genes) | set(perturbed_genes(ds.conditions)))
    graph = go_similarity_graph(read_gene2go(gene2go, aliases=aliases), genes, top_k=top_k, min_weight=min_weight)
    save_graph(graph, out)
    log(f"GO graph: {len(graph.genes)} genes, {len(graph.src)} edges")


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
    featureset: str = "",
) -> None:
    """Fit run ``model`` (``params`` = {"model": registered name, "params": hyper-parameters}) on
    the training conditions of the split, predict its test conditions, and store the run record
    (:mod:`perturbench.provenance`) in the prediction file. Only models with the ``reads_cells``
    trait load the cells; a cell split's parts come from :func:`perturbench.cell_split.cell_split_parts`."""
    from perturbench.graphs import load_graph
    from perturbench.models.base import FitContext, attribution_record
    from perturbench.models.registry import get_model, model_spec, resolved_params
    from perturbench.provenance import dataset_fingerprint, measured, run_record

    name, hyper = params.get("model", model), params.get("params", {})
    instance = get_model(name, **hyper)  # bad hyper-parameters fail before any loading
    sp, ds, train, val = _fit_data(data_dir, split_path, cells=model_spec(name).reads_cells)
    graph = load_graph(go_graph_path) if go_graph_path else None
    log_dir.mkdir(parents=True, exist_ok=True)
    context = FitContext(seed=sp.seed, val=val, go_graph=graph, go_table=go_table,
                         workdir=log_dir / "work", device=device, log_dir=log_dir, dataset=ds.name,
                         featureset=featureset)
    with measured() as cost:
        fitted = instance.fit(train, context=context)
        prediction = fitted.predict(sorted(sp.test))
    prediction.model = model
    prediction.attribution = attribution_record(fitted, train)
    prediction.run = run_record(
        run=model, model=name, params=resolved_params(name, hyper), featureset=featureset, seed=sp.seed,
        split_checksum=str(json.loads(Path(split_path).read_text())["checksum"]),
        dataset_fingerprint=dataset_fingerprint(ds), device=device, cost=cost)
    prediction.write(out)
    log(f"{model}: predicted {len(prediction.conditions)} conditions, skipped {len(prediction.skipped)}")


def _fit_data(data_dir: Path, split_path: Path, *, cells: bool) -> tuple:
    """(split, truth dataset, training part, validation part or None) of a split, as models see them;
    a cell split's parts come from :func:`perturbench.cell_split.cell_split_parts`."""
    from perturbench.cell_split import CellSplit, cell_split_parts, read_any_manifest

    sp = read_any_manifest(split_path)
    if isinstance(sp, CellSplit):
        parts = cell_split_parts(data_dir, sp, with_cells=cells)
        return sp, parts.truth, parts.train, parts.val
    ds = load_dataset(data_dir, with_cells=cells)
    return sp, ds, ds.subset(list(sp.train)), ds.subset(list(sp.val)) if sp.val else None


def recalibrate(data_dir: Path, split_path: Path, prediction_path: Path, checkpoint: Path, out: Path, *,
                go_graph_path: Path | None, device: str) -> None:
    """Refit the σ calibration of a prediction file on its split's validation conditions without
    retraining: the model is restored from ``checkpoint`` (its ``restore``; the run record names
    the model and its hyper-parameters), its test means must reproduce the file's (|Δ| ≤ 1e-4),
    and ``out`` gets the file with the new ``layers['logvar']`` / ``layers['logvar_raw']``."""
    import numpy as np

    from perturbench.graphs import load_graph
    from perturbench.models.base import FitContext, Prediction
    from perturbench.models.registry import get_model, model_spec
    from perturbench.provenance import run_labels

    pred = Prediction.read(prediction_path)
    run_labels(pred.run, prediction_path)
    name = pred.run["model"]
    instance = get_model(name, **pred.run["params"])
    if not hasattr(instance, "restore"):
        raise ConfigError(f"{prediction_path}: uns['run']['model']: {name!r} cannot be restored from a checkpoint")
    sp, _, train, val = _fit_data(data_dir, split_path, cells=model_spec(name).reads_cells)
    graph = load_graph(go_graph_path) if go_graph_path else None
    context = FitContext(seed=sp.seed, val=val, go_graph=graph, device=device)
    new = instance.restore(train, context=context, checkpoint=checkpoint).predict(pred.conditions)
    if new.conditions != pred.conditions or not np.allclose(new.mean, pred.mean, rtol=0.0, atol=1e-4):
        raise ConfigError(f"{checkpoint}: the restored model does not reproduce the means of {prediction_path}")
    pred.logvar, pred.logvar_raw = new.logvar, new.logvar_raw
    pred.write(out)
    log(f"recalibrated {prediction_path} -> {out}")


def evaluate(data_dir: Path, split_path: Path, prediction_path: Path, out: Path, *,
             featureset: str, model: str, seed: int) -> None:
    """Per-condition metrics of one prediction file: a long TSV (featureset, model, seed,
    condition, subgroup, metric, value); the first three are the rule's wildcards."""
    from perturbench.cell_split import CellSplit, cell_split_parts, read_any_manifest
    from perturbench.evaluate import evaluate_prediction_file

    sp = read_any_manifest(split_path)
    if sp.seed != seed:
        raise ConfigError(f"{split_path}: seed: the manifest's seed {sp.seed} is not the run's seed {seed}")
    pert_ref = None
    if isinstance(sp, CellSplit):  # truth: the test cells; control and reference: the training cells
        parts = cell_split_parts(data_dir, sp, with_cells=False)
        ds, pert_ref = parts.truth, parts.pert_ref
    else:
        ds = load_dataset(data_dir, with_cells=False)
    table = evaluate_prediction_file(prediction_path, ds, subgroups=dict(sp.test), train_conditions=list(sp.train),
                                     pert_ref=pert_ref)
    _write_metrics(table, out, featureset=featureset, model=model, seed=seed)


def _write_metrics(table: pd.DataFrame, out: Path, **labels: str | int) -> None:
    """Write a metric table with the run's labels (featureset, model, seed) as its first columns."""
    for position, (column, value) in enumerate(labels.items()):
        table.insert(position, column, value)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


def score(data_dir: Path, split_path: Path, prediction_path: Path, out: Path, *,
          model: str | None = None, featureset: str | None = None) -> None:
    """Score a prediction file made outside the workflow (format: :mod:`baselines.precomputed`)
    on the split's test conditions; the table is :func:`evaluate`'s (``model`` defaults to the
    file's stem, ``featureset`` to the data folder's name)."""
    from baselines.precomputed import read_external_prediction
    from perturbench.evaluate import evaluate as evaluate_prediction
    from perturbench.splits import read_manifest

    ds = load_dataset(data_dir, with_cells=False)
    sp = read_manifest(split_path)
    model = model or Path(prediction_path).stem
    pred = read_external_prediction(prediction_path, conditions=sorted(sp.test), genes=ds.genes, model=model)
    table = evaluate_prediction(pred, ds, subgroups=dict(sp.test), train_conditions=list(sp.train))
    _write_metrics(table, out, featureset=featureset or Path(data_dir).name, model=model, seed=sp.seed)


def collect_metrics(paths: list[Path]) -> pd.DataFrame:
    """Concatenate metric tables (columns :data:`perturbench.evaluate.RUN_COLUMNS`, as written by
    :func:`evaluate`); a table without them is an error naming the file."""
    from perturbench.evaluate import RUN_COLUMNS

    frames = []
    for path in paths:
        frame = pd.read_csv(path, sep="\t")
        missing = [c for c in RUN_COLUMNS if c not in frame.columns]
        if missing:
            raise ConfigError(f"{path}: header lacks column(s) {missing} (written by `perturbench evaluate`?)")
        frames.append(frame[RUN_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def summarize(paths: list[Path], out: Path, conditions_out: Path) -> None:
    """Subgroup summary (mean, bootstrap 95% CI, n) over seeds and conditions."""
    from perturbench.evaluate import summarize as summarize_table

    table = collect_metrics(paths)
    with atomic_path(conditions_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
    with atomic_path(out) as tmp:
        summarize_table(table).to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def verdict(conditions: Path, baselines: list[str], comparisons_out: Path, stability_out: Path, verdict_out: Path) -> None:
    """comparisons.tsv, rank_stability.tsv and verdict.tsv from the per-condition table."""
    from perturbench import verdict as vd

    table = pd.read_csv(conditions, sep="\t")
    try:
        comp = vd.comparisons(table, baselines=baselines)
    except vd.VerdictError as err:
        raise vd.VerdictError(f"{conditions}: {err}") from None
    for frame, out in ((comp, comparisons_out), (vd.rank_stability(table), stability_out),
                       (vd.verdicts(comp), verdict_out)):
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _write_tsv(frame: pd.DataFrame, out: Path) -> None:
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.8g")


def interactions(
    predictions: list[Path], splits: list[Path], params: dict[str, Any], out_dir: Path, *, data_root: Path,
    planted: Path | None,
) -> None:
    """Genetic-interaction tables of every prediction file, labelled (featureset, seed, run name)
    from its run record ``uns['run']`` and scored against ``data_root/{featureset}`` (any file path).

    Writes ``out_dir/interactions.tsv`` (featureset, model, seed, subgroup, metric, value; model
    ``truth`` = the measured doubles, seed 0), ``interaction_params.tsv`` (per double and run) and
    ``interaction_curve.tsv`` (detection curves). Method: :mod:`perturbench.interaction_analysis`.
    """
    from perturbench import interaction_analysis as gi
    from perturbench.interactions import gi_config
    from perturbench.models.base import Prediction
    from perturbench.provenance import run_labels
    from perturbench.splits import read_manifest

    cfg = gi_config(params)
    tests = {m.seed: m.test for m in map(read_manifest, splits)}
    planted_types = gi.read_planted(planted) if planted else None
    metrics, tables, curves, truths = [], [], [], {}
    for path in predictions:
        prediction = Prediction.read(path)
        labels = run_labels(prediction.run, path)
        fs, seed, model = labels.featureset, labels.seed, labels.run
        if seed not in tests:
            raise ConfigError(f"{path}: uns['run']['seed']: {seed} has no split among --splits")
        if fs not in truths:
            ds = load_dataset(Path(data_root) / fs)
            truths[fs] = (ds, gi.truth_table(ds, cfg))
            metrics += [(fs, gi.TRUTH, 0, *row) for row in gi.truth_rows(truths[fs][1], planted_types)]
            tables.append(truths[fs][1].reset_index().assign(featureset=fs, model=gi.TRUTH, seed=0))
        ds, truth = truths[fs]
        pred = gi.model_table(ds, prediction, cfg)
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
