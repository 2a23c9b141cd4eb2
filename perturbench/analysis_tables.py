"""The analyses the report shows, as workflow steps: each writes one TSV and a JSON sidecar.

Paths (``results/{dataset}/{featureset}/``), one step and one CLI sub-command each:

- ``noise_ceiling.tsv`` — :func:`noise_ceiling_step`, every feature set;
- ``recurrent_genes.tsv`` — :func:`recurrent_genes_step`;
- ``attribution_agreement.tsv`` — :func:`attribution_step`;
- ``go_enrichment.tsv`` — :func:`go_enrichment_step` (reads ``recurrent_genes.tsv``);

the last three on the report's primary feature set (:func:`perturbench.workflow.primary_featureset`).
The sidecar ``<name>.json`` beside each TSV holds ``available`` (bool), ``reason`` (the sentence
the report shows when the analysis is not available, else null) and the analysis's parameters.
When it is not available the TSV has its header only. Floats are written at full precision, so
the report shows exactly what the analysis functions return; :func:`read_analysis` reads both.
Analysis modules are imported inside the steps (as in :mod:`perturbench.pipeline`), so the
report's loaders can import the column lists from here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from perturbench.data.io import atomic_path, write_text_atomic
from perturbench.data.store import dataset_folder, load_dataset
from perturbench.errors import PerturbenchError

TRUTH = "truth"  # the recurrent-genes row of the measured test conditions
TOP_CHANGES = 5  # genes per top list: the largest |prediction − control| of one test condition
ATTRIBUTION_K = 20  # top-K genes by |attribution| compared between models
CEILING_SEED = 0  # seed of the random split of each condition's cells into halves

COLUMNS: dict[str, list[str]] = {
    "noise_ceiling": ["condition", "n_cells", "r_half", "r_full", "mse_de20_half", "mse_de20_floor"],
    "recurrent_genes": ["model", "gene", "count", "n", "fraction"],
    "attribution_agreement": ["output_gene", "model_a", "model_b", "spearman", "overlap", "k", "n_shared"],
    "go_enrichment": ["model", "term", "name", "k", "n", "K", "N", "p", "q"],
}
NO_CEILING = ("not available: no cells and no split-half replicates "
              "(a pseudobulk table's replicate column; see README)")
NO_GO = "not available: the config names no GO annotation table (key go)"
_TEXT = ("condition", "model", "gene", "output_gene", "model_a", "model_b", "term", "name")  # read as str


class AnalysisTableError(PerturbenchError, ValueError):
    """An analysis table or its sidecar is malformed; the message names the file and the field."""


def sidecar(path: str | Path) -> Path:
    """The JSON sidecar of an analysis TSV: ``<name>.json`` beside ``<name>.tsv``."""
    return Path(path).with_suffix(".json")


def write_analysis(frame: pd.DataFrame, out: Path, *, reason: str | None = None, **params: Any) -> None:
    """Write ``frame`` to ``out`` (TSV, floats at full precision) and the sidecar
    ``{"available": reason is None, "reason": reason, **params}``, each atomically."""
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
    meta = {"available": reason is None, "reason": reason, **params}
    write_text_atomic(sidecar(out), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _not_available(name: str, out: Path, reason: str) -> None:
    write_analysis(pd.DataFrame(columns=COLUMNS[name]), out, reason=reason)


def _stacked(frames: list[pd.DataFrame], name: str) -> pd.DataFrame:
    """The non-empty ``frames`` one under the other, in the columns of analysis ``name``."""
    frames = [f for f in frames if len(f)] or [pd.DataFrame(columns=COLUMNS[name])]
    return pd.concat(frames, ignore_index=True)[COLUMNS[name]]


def read_analysis(path: str | Path, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The TSV ``path`` of analysis ``name`` (columns :data:`COLUMNS`) and its sidecar.

    Text columns read as str (empty: ``""``; a gene called ``NA`` stays a gene), numbers as
    numbers (empty: NaN); floats round-trip exactly.
    """
    path = Path(path)
    frame = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], float_precision="round_trip",
                        dtype={c: str for c in _TEXT})
    for column in set(_TEXT) & set(frame.columns):
        frame[column] = frame[column].fillna("")
    missing = [c for c in COLUMNS[name] if c not in frame.columns]
    if missing:
        raise AnalysisTableError(f"{path}: header {list(frame.columns)} lacks column(s) {missing}")
    try:
        meta = json.loads(sidecar(path).read_text())
    except (OSError, ValueError) as err:
        raise AnalysisTableError(f"{sidecar(path)}: cannot read the sidecar ({err})") from None
    if not isinstance(meta, dict) or "available" not in meta:
        raise AnalysisTableError(f"{sidecar(path)}: field 'available' is missing")
    return frame, meta


def _test_conditions(splits: list[Path]) -> dict[int, list[str]]:
    """Seed → sorted test conditions of each split manifest (condition or cell split)."""
    from perturbench.cell_split import read_any_manifest

    manifests = [read_any_manifest(p) for p in splits]
    return {sp.seed: sorted(sp.test) for sp in sorted(manifests, key=lambda sp: sp.seed)}


def noise_ceiling_step(data: Path, splits: list[Path], out: Path) -> None:
    """Split-half noise ceiling of every test condition of ``splits`` on feature set ``data``.

    Cells (through ``cells_ref.json``): :func:`perturbench.evaluate.noise_ceiling` (halves drawn
    with seed :data:`CEILING_SEED`); pseudobulk with replicate layers:
    :func:`perturbench.evaluate.replicate_noise_ceiling`; DE genes ``de20`` of the feature set.
    One row per condition (the union over seeds): ``condition``; ``n_cells`` (its cells; 0 =
    unknown for replicates); ``r_half`` (Pearson r of the two halves' changes vs control, all
    genes); ``r_full`` (Spearman–Brown 2r/(1+r)); ``mse_de20_half`` (mean squared difference of
    the halves on the DE genes); ``mse_de20_floor`` (= mse_de20_half / 4). Sidecar ``source``:
    ``cells`` or ``replicates``. Header only without cells and replicates.
    """
    from perturbench.evaluate import noise_ceiling, replicate_noise_ceiling

    ds = load_dataset(data)
    tested = sorted({c for conditions in _test_conditions(splits).values() for c in conditions})
    de = ds.de_genes("de20")
    if ds.cells is not None:
        table = noise_ceiling(ds.cells, tested, seed=CEILING_SEED, de_genes=de)
        write_analysis(table[COLUMNS["noise_ceiling"]], out, source="cells", seed=CEILING_SEED)
    elif "replicate1" in ds.pseudobulk.layers:
        table = replicate_noise_ceiling(ds.pseudobulk, tested, de_genes=de)
        write_analysis(table[COLUMNS["noise_ceiling"]], out, source="replicates")
    else:
        _not_available("noise_ceiling", out, NO_CEILING)


def _by_model(predictions: list[Path]) -> dict[str, list[tuple[int, Path]]]:
    """Run → [(seed, prediction path)] sorted by seed, runs in the order they first appear; the
    labels come from each file's run record (``uns['run']``), not its path."""
    from perturbench.models.base import Prediction
    from perturbench.provenance import run_labels

    runs: dict[str, list[tuple[int, Path]]] = {}
    for path in predictions:
        labels = run_labels(Prediction.read_run(path), path)
        runs.setdefault(labels.run, []).append((labels.seed, Path(path)))
    return {model: sorted(files) for model, files in runs.items()}


def recurrent_genes_step(data: Path, splits: list[Path], predictions: list[Path], out: Path) -> None:
    """How often each gene is among the top-:data:`TOP_CHANGES` predicted changes |p − c|.

    Per run (and ``truth``: the feature set's pseudobulk of the test conditions), the top lists
    of :func:`perturbench.report.analyses.top_changed_genes` over every test condition of every
    seed, counted by :func:`perturbench.report.analyses.recurrent_genes`. Columns: ``model``
    (run or ``truth``); ``gene``; ``count`` (k, lists containing the gene); ``n`` (lists of the
    run: test conditions × seeds it predicted); ``fraction`` (k / n). Rows by model, then
    count descending, then gene. Sidecar: ``featureset``, ``top``, ``models`` (``truth``, then
    every run with a prediction, in input order; a run whose lists are all empty has no rows).
    """
    from perturbench.models.base import Prediction
    from perturbench.report.analyses import recurrent_genes, top_changed_genes

    ds = load_dataset(data, with_cells=False)
    genes, ctrl = ds.genes, ds.ctrl
    lists: dict[str, list[list[str]]] = {TRUTH: []}
    for conditions in _test_conditions(splits).values():
        lists[TRUTH] += top_changed_genes(ds.expression(conditions), ctrl, genes, top=TOP_CHANGES)
    for model, files in _by_model(predictions).items():
        for _, path in files:
            pred = Prediction.read(path)
            if pred.conditions:
                lists.setdefault(model, []).extend(top_changed_genes(pred.mean, ctrl, genes, top=TOP_CHANGES))
    frame = _stacked([recurrent_genes(top).assign(model=name) for name, top in lists.items()], "recurrent_genes")
    write_analysis(frame, out, featureset=dataset_folder(data).name, top=TOP_CHANGES, models=list(lists))


def read_attribution(path: Path) -> dict[str, Any] | None:
    """``uns['attribution']`` of a prediction file as {output_gene, values: gene → value}, or None
    (read without loading the predictions)."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        if "uns/attribution" not in handle:
            return None
        raw = read_elem(handle["uns/attribution"])
    values = dict(zip((str(g) for g in raw["genes"]), (float(v) for v in raw["values"]), strict=True))
    return {"output_gene": str(raw["output_gene"]), "values": values}


def attribution_step(predictions: list[Path], out: Path) -> None:
    """Agreement of the models' gene attributions (``uns['attribution']``, each run's first seed
    that stored one) for the output gene most of them attribute.

    Rows from :func:`perturbench.report.analyses.attribution_agreement` (k = :data:`ATTRIBUTION_K`),
    every ordered pair and the diagonal: ``output_gene``; ``model_a``, ``model_b``; ``spearman``
    (Spearman ρ of the signed attributions on their shared genes; empty = NaN); ``overlap``
    (shared genes among both top-k by |attribution|); ``k`` (min(k, shared genes)); ``n_shared``.
    Sidecar: ``k``, ``output_gene``, ``models`` (compared, in input order), ``skipped`` (runs that
    attribute another output gene). Header only when fewer than two runs stored attributions.
    """
    from perturbench.report.analyses import attribution_agreement

    found = {}
    for model, files in _by_model(predictions).items():
        attr = next((a for _, path in files if (a := read_attribution(path)) is not None), None)
        if attr is not None:
            found[model] = attr
    if len(found) < 2:
        have = ", ".join(found) or "none"
        reason = f"not available: fewer than two models stored attributions (models with them: {have})"
        return _not_available("attribution_agreement", out, reason)
    output_gene, _ = Counter(a["output_gene"] for a in found.values()).most_common(1)[0]
    values = {m: a["values"] for m, a in found.items() if a["output_gene"] == output_gene}
    table = attribution_agreement(values, k=ATTRIBUTION_K)
    table.insert(0, "output_gene", output_gene)
    write_analysis(table[COLUMNS["attribution_agreement"]], out, k=ATTRIBUTION_K, output_gene=output_gene,
                   models=list(values), skipped=sorted(set(found) - set(values)))


def recurrent_query(table: pd.DataFrame) -> list[str]:
    """Genes recurring in ≥ max(2, ⌈n/10⌉) of one run's n top lists (its rows of
    ``recurrent_genes.tsv``): the set tested for GO enrichment."""
    import math

    if table.empty:
        return []
    threshold = max(2, math.ceil(0.1 * int(table["n"].iloc[0])))
    return sorted(table.loc[table["count"] >= threshold, "gene"])


def go_enrichment_step(recurrent: Path, data: Path, out: Path, *, gene2go: Path | None,
                       terms: Path | None = None) -> None:
    """GO terms over-represented among each run's recurrent genes (:func:`recurrent_query` of
    ``recurrent``), against feature set ``data``'s genes with a GO term.

    Rows of :func:`perturbench.report.analyses.go_enrichment` (hypergeometric, Benjamini–Hochberg
    over the terms), every term with k ≥ 1, by model then p: ``model``; ``term`` (GO id);
    ``name`` (from the term-name table ``terms``, empty without it); ``k`` (query genes with the
    term); ``n`` (annotated query genes); ``K`` (annotated genes with the term); ``N``
    (annotated genes); ``p``; ``q``. Sidecar: ``go_table`` (file name), ``n_background`` (N),
    ``queries`` ([{model, genes}] in the recurrent table's model order). Header only without a GO
    table, when it is not found, or when it (or ``terms``) cannot be read.
    """
    from perturbench.graphs import GraphError, read_gene2go, read_go_terms
    from perturbench.report.analyses import go_enrichment

    if gene2go is None:
        return _not_available("go_enrichment", out, NO_GO)
    if not Path(gene2go).exists():
        return _not_available("go_enrichment", out, f"not available: GO annotation table {gene2go} not found")
    try:
        annotation = read_gene2go(gene2go)
        names = read_go_terms(terms) if terms is not None else {}
    except GraphError as err:
        return _not_available("go_enrichment", out, f"not available: {err}")
    table, meta = read_analysis(recurrent, "recurrent_genes")
    background = load_dataset(data, with_cells=False).genes
    frames, queries = [], []
    for model in meta["models"]:
        query = recurrent_query(table[table["model"] == model])
        found = go_enrichment(query, background, annotation)
        frames.append(found.assign(model=model, name=[names.get(t, "") for t in found["term"]]))
        queries.append({"model": model, "genes": query})
    write_analysis(_stacked(frames, "go_enrichment"), out, go_table=Path(gene2go).name, queries=queries,
                   n_background=sum(1 for g in background if annotation.get(g)))
