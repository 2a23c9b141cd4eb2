"""The report's analyses as rule outputs: the CLI writes each TSV + sidecar with the values of the
analysis functions, header-only with the reason when not available, and the report renders them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbench import pipeline
from perturbench.analysis_tables import (
    AnalysisTableError,
    COLUMNS,
    NO_CEILING,
    NO_GO,
    TOP_CHANGES,
    TRUTH,
    read_analysis,
    recurrent_query,
    sidecar,
    write_analysis,
)
from perturbench.cli import main
from perturbench.data.de import annotate_de
from perturbench.data.store import load_dataset, save_dataset
from perturbench.evaluate import noise_ceiling, replicate_noise_ceiling
from perturbench.graphs import read_gene2go
from perturbench.models.base import Prediction
from perturbench.report.analyses import attribution_agreement, go_enrichment, recurrent_genes, top_changed_genes
from perturbench.splits import read_manifest
from tests._toydata import GENES, toy_dataset, write_go_table

SEEDS = (1, 2)


@pytest.fixture
def tree(tmp_path: Path, rng: np.random.Generator) -> Path:
    """results/toy in the workflow's layout: prepared cells, feature set ``full``, two splits."""
    root = tmp_path / "results" / "toy"
    save_dataset(annotate_de(toy_dataset(rng, cells_per_condition=6)), root / "prepared")
    pipeline.featureset(root / "prepared", "full", root / "full")
    for seed in SEEDS:
        pipeline.split(root / "prepared", seed, root / "splits" / f"seed{seed}.json", dataset="toy", params={})
    return root


def splits(root: Path) -> list[Path]:
    return [root / "splits" / f"seed{s}.json" for s in SEEDS]


def write_predictions(root: Path, rng: np.random.Generator, attributions: dict[str, str]) -> list[Path]:
    """Predictions of runs ``a``, ``b``, ``ctl`` (predicts control) for both seeds; run → output
    gene of its stored attribution (runs not named store none)."""
    ctrl = load_dataset(root / "full", with_cells=False).ctrl
    paths = []
    for run in ("a", "b", "ctl"):
        for seed in SEEDS:
            test = sorted(read_manifest(root / "splits" / f"seed{seed}.json").test)
            mean = np.tile(ctrl, (len(test), 1)) + (0 if run == "ctl" else rng.normal(size=(len(test), len(GENES))))
            attr = ({"output_gene": attributions[run], "genes": GENES, "values": rng.normal(size=len(GENES)).tolist()}
                    if run in attributions else None)
            path = root / "full" / f"seed{seed}" / "predictions" / f"{run}.h5ad"
            record = {"run": run, "featureset": "full", "seed": seed, "params": {}}  # the labels come from here
            Prediction(model=run, conditions=test, genes=GENES, mean=mean, attribution=attr, run=record).write(path)
            paths.append(path)
    return paths


def cli(*args: str | Path) -> None:
    assert main([str(a) for a in args]) == 0


# -- noise ceiling ---------------------------------------------------------------------------------
def test_noise_ceiling_equals_the_evaluate_function_on_the_feature_set_cells(tree, tmp_path):
    out = tmp_path / "noise_ceiling.tsv"
    cli("noise-ceiling", "--data", tree / "full" / "pseudobulk.h5ad", "--splits", *splits(tree), "--out", out)
    table, meta = read_analysis(out, "noise_ceiling")
    assert list(table.columns) == COLUMNS["noise_ceiling"] and meta == {"available": True, "reason": None,
                                                                        "source": "cells", "seed": 0}
    # as the report computed it before: the prepared cells restricted to the feature set's genes
    prepared, fs = load_dataset(tree / "prepared"), load_dataset(tree / "full", with_cells=False)
    cells = ad.AnnData(X=prepared.cells.X[:, prepared.cells.var_names.get_indexer(fs.genes)],
                       obs=prepared.cells.obs[["condition"]].copy(), var=pd.DataFrame(index=pd.Index(fs.genes)))
    tested = sorted({c for p in splits(tree) for c in read_manifest(p).test})
    expected = noise_ceiling(cells, tested, seed=0, de_genes=fs.de_genes("de20"))
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert len(tested) > len(read_manifest(splits(tree)[0]).test)  # the union over seeds


def _pseudobulk_only(tree: Path, rng: np.random.Generator, *, replicates: bool) -> Path:
    ds = load_dataset(tree / "prepared", with_cells=False)
    if replicates:
        x = ds.pseudobulk.X
        ds.pseudobulk.layers["replicate1"] = x + rng.normal(0, 0.1, x.shape)
        ds.pseudobulk.layers["replicate2"] = 2 * x - ds.pseudobulk.layers["replicate1"]
    save_dataset(ds, tree.parent / "pb")
    return tree.parent / "pb"


def test_noise_ceiling_from_split_half_replicates(tree, tmp_path, rng):
    data = _pseudobulk_only(tree, rng, replicates=True)
    out = tmp_path / "nc.tsv"
    cli("noise-ceiling", "--data", data, "--splits", *splits(tree), "--out", out)
    table, meta = read_analysis(out, "noise_ceiling")
    ds = load_dataset(data)
    expected = replicate_noise_ceiling(ds.pseudobulk, list(table["condition"]), de_genes=ds.de_genes("de20"))
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert meta["source"] == "replicates" and table["r_half"].notna().all()


def test_noise_ceiling_without_cells_or_replicates_is_header_only_with_the_reason(tree, tmp_path, rng):
    out = tmp_path / "nc.tsv"
    cli("noise-ceiling", "--data", _pseudobulk_only(tree, rng, replicates=False), "--splits", *splits(tree),
        "--out", out)
    assert out.read_text() == "\t".join(COLUMNS["noise_ceiling"]) + "\n"
    assert json.loads(sidecar(out).read_text()) == {"available": False, "reason": NO_CEILING}


# -- recurrent genes, attributions, GO enrichment --------------------------------------------------
def test_recurrent_genes_equal_the_analysis_functions(tree, tmp_path, rng):
    predictions = write_predictions(tree, rng, {})
    out = tmp_path / "recurrent_genes.tsv"
    cli("recurrent-genes", "--data", tree / "full" / "pseudobulk.h5ad", "--splits", *splits(tree),
        "--predictions", *predictions, "--out", out)
    table, meta = read_analysis(out, "recurrent_genes")
    assert meta["models"] == [TRUTH, "a", "b", "ctl"] and meta["top"] == TOP_CHANGES and meta["featureset"] == "full"
    fs = load_dataset(tree / "full", with_cells=False)
    lists = []
    for path in predictions[:2]:  # run a, seeds 1 and 2
        lists += top_changed_genes(Prediction.read(path).mean, fs.ctrl, fs.genes, top=TOP_CHANGES)
    got = table[table["model"] == "a"].drop(columns="model").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, recurrent_genes(lists), check_exact=True, check_dtype=False)
    truth = table[table["model"] == TRUTH]
    assert truth["n"].iloc[0] == sum(len(read_manifest(p).test) for p in splits(tree))
    assert not (table["model"] == "ctl").any()  # predicting control changes no gene


def test_attribution_agreement_equals_the_analysis_function(tree, tmp_path, rng):
    predictions = write_predictions(tree, rng, {"a": "G03", "b": "G03", "ctl": "G07"})
    out = tmp_path / "attribution_agreement.tsv"
    cli("attribution-agreement", "--predictions", *predictions, "--out", out)
    table, meta = read_analysis(out, "attribution_agreement")
    assert meta["models"] == ["a", "b"] and meta["skipped"] == ["ctl"] and meta["output_gene"] == "G03"
    first = {run: Prediction.read(tree / "full" / "seed1" / "predictions" / f"{run}.h5ad").attribution
             for run in ("a", "b")}
    values = {run: dict(zip(a["genes"], a["values"], strict=True)) for run, a in first.items()}
    expected = attribution_agreement(values, k=20)
    pd.testing.assert_frame_equal(table.drop(columns="output_gene"), expected, check_exact=True, check_dtype=False)
    assert (table["output_gene"] == "G03").all()


def test_attribution_agreement_of_one_model_is_header_only_naming_it(tree, tmp_path, rng):
    out = tmp_path / "attribution_agreement.tsv"
    cli("attribution-agreement", "--predictions", *write_predictions(tree, rng, {"b": "G03"}), "--out", out)
    table, meta = read_analysis(out, "attribution_agreement")
    assert table.empty and list(table.columns) == COLUMNS["attribution_agreement"]
    assert meta["reason"] == "not available: fewer than two models stored attributions (models with them: b)"


def _recurrent(tree: Path, tmp_path: Path, rng: np.random.Generator) -> Path:
    out = tmp_path / "recurrent_genes.tsv"
    cli("recurrent-genes", "--data", tree / "full" / "pseudobulk.h5ad", "--splits", *splits(tree),
        "--predictions", *write_predictions(tree, rng, {}), "--out", out)
    return out


def test_go_enrichment_equals_the_analysis_function_with_term_names(tree, tmp_path, rng):
    recurrent, go = _recurrent(tree, tmp_path, rng), write_go_table(tmp_path / "gene2go.tsv", rng)
    terms = tmp_path / "terms.tsv"
    pd.DataFrame({"go_id": ["GO:0000001"], "ontology": "BP", "term": ["a named term"]}).to_csv(terms, sep="\t",
                                                                                               index=False)
    out = tmp_path / "go_enrichment.tsv"
    cli("go-enrichment", "--recurrent", recurrent, "--data", tree / "full" / "pseudobulk.h5ad",
        f"--gene2go={go}", f"--terms={terms}", "--out", out)
    table, meta = read_analysis(out, "go_enrichment")
    rec, _ = read_analysis(recurrent, "recurrent_genes")
    query = recurrent_query(rec[rec["model"] == TRUTH])
    assert meta["queries"][0] == {"model": TRUTH, "genes": query} and meta["go_table"] == "gene2go.tsv"
    assert meta["n_background"] == len(GENES) and query
    expected = go_enrichment(query, GENES, read_gene2go(go))
    got = table[table["model"] == TRUTH]
    pd.testing.assert_frame_equal(got.drop(columns=["model", "name"]).reset_index(drop=True), expected,
                                  check_exact=True, check_dtype=False)
    assert set(got.loc[got["term"] == "GO:0000001", "name"]) <= {"a named term"}
    assert (got.loc[got["term"] != "GO:0000001", "name"] == "").all()


@pytest.mark.parametrize("case", ["none", "missing", "unreadable"])
def test_go_enrichment_not_available_says_why(tree, tmp_path, rng, case):
    recurrent, out = _recurrent(tree, tmp_path, rng), tmp_path / "go.tsv"
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tname\nG00\tx\n")
    table_arg = {"none": "", "missing": str(tmp_path / "absent.tsv"), "unreadable": str(bad)}[case]
    cli("go-enrichment", "--recurrent", recurrent, "--data", tree / "full", f"--gene2go={table_arg}", "--out", out)
    table, meta = read_analysis(out, "go_enrichment")
    assert table.empty and meta["available"] is False
    expected = {"none": NO_GO, "missing": f"not available: GO annotation table {table_arg} not found",
                "unreadable": "not available: " + str(bad)}[case]
    assert meta["reason"].startswith(expected)


def test_read_analysis_keeps_gene_names_and_names_a_bad_file(tmp_path):
    out = tmp_path / "r.tsv"
    frame = pd.DataFrame({"model": ["m"], "gene": ["NA"], "count": [1], "n": [3], "fraction": [1 / 3]})
    write_analysis(frame, out, top=5, models=["m"])
    table, _ = read_analysis(out, "recurrent_genes")
    assert table["gene"].tolist() == ["NA"] and table["fraction"].iloc[0] == 1 / 3
    with pytest.raises(AnalysisTableError, match=r"r\.tsv: header .* lacks column\(s\) \['output_gene', 'model_a'"):
        read_analysis(out, "attribution_agreement")
    sidecar(out).write_text("{}")
    with pytest.raises(AnalysisTableError, match=r"r\.json: field 'available' is missing"):
        read_analysis(out, "recurrent_genes")


# -- the report renders the tables ------------------------------------------------------------------
@pytest.mark.slow
def test_report_renders_what_the_tables_say(tmp_path_factory, tmp_path):
    """Edit the tables of a finished tree: the page shows the edited numbers and reasons."""
    from perturbench.report import ReportError, build_report
    from tests._reporttree import CONFIG, results_tree

    results = tmp_path / "results"
    shutil.copytree(results_tree(tmp_path_factory), results)
    full = results / "sim" / "full"
    ceiling, meta = read_analysis(full / "noise_ceiling.tsv", "noise_ceiling")
    write_analysis(ceiling.assign(r_full=0.987654), full / "noise_ceiling.tsv", **{k: v for k, v in meta.items()
                                                                                if k not in ("available", "reason")})
    write_analysis(pd.DataFrame(columns=COLUMNS["attribution_agreement"]), full / "attribution_agreement.tsv",
                   reason="not available: edited for the test")
    build_report(results, results / "report" / "index.html", config=CONFIG)
    html = (results / "report" / "sim.html").read_text()
    ceiling_html = html[html.index('class="ceiling"'):html.index("</table>", html.index('class="ceiling"'))]
    assert ceiling_html.count("0.988") == ceiling_html.count("<tr>") - 1  # every subgroup row, not the header
    assert "not available: edited for the test" in html and 'id="attribution"' not in html
    (full / "go_enrichment.tsv").unlink()
    with pytest.raises(ReportError, match=r"sim/full/go_enrichment\.tsv: missing \(run the workflow's go_enrichment"):
        build_report(results, results / "report" / "index.html", config=CONFIG)


@pytest.mark.slow
def test_changing_one_prediction_reruns_exactly_the_analyses_that_read_it(tmp_path):
    """Dry run on the test config with every output in place (``--touch``): rewriting one prediction
    on feature set full reruns its evaluation and the analyses that read it, not the noise ceiling."""
    from tests.workflow.test_workflow import TEST_CONFIG, snakemake

    args = ("results/report/index.html", "--configfile", str(TEST_CONFIG))
    summary = snakemake(tmp_path, "--summary", *args)
    assert summary.returncode == 0, summary.stderr[-2000:]
    for line in summary.stdout.splitlines():
        if line.startswith("results/"):
            (tmp_path / line.split("\t")[0]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / line.split("\t")[0]).touch()
    assert snakemake(tmp_path, "--touch", *args).returncode == 0
    (tmp_path / "results/sim_tiny/full/seed1/predictions/ridge.h5ad").write_text("changed")
    dry = snakemake(tmp_path, "-n", *args)
    stats = dry.stdout[dry.stdout.index("Job stats:"):].splitlines()[3:]  # below the table's header
    jobs = {line.split()[0] for line in stats[:next(i for i, line in enumerate(stats) if line.startswith("total"))]}
    assert jobs == {"evaluate", "summarize", "verdict", "interactions", "recurrent_genes", "attribution_agreement",
                    "go_enrichment", "report"}
