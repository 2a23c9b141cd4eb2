"""The ``perturbench`` command: the steps the Snakemake rules call, one sub-command each.

Every sub-command maps its arguments onto one function of :mod:`perturbench.pipeline` (or
:mod:`perturbench.analysis_tables`, a benchmark, the report) and exits 1 with a one-line message
on bad input: every user error derives from :class:`perturbench.errors.PerturbenchError` and is
caught once, in :func:`main`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from perturbench.bench import BENCHMARKS
from perturbench.errors import PerturbenchError


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({err})") from None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _cmd_simulate(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.simulate(a.preset, a.params, a.out, go_out=a.go_out)


def _cmd_download(a: argparse.Namespace) -> None:
    from perturbench.data.download import fetch

    fetch(a.url, a.out, sha256=a.sha256 or None)


def _cmd_prepare(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.prepare(a.name, a.spec, a.out_dir, inputs=a.inputs)


def _cmd_featureset(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.featureset(a.in_dir, a.featureset, a.out_dir)


def _cmd_split(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.split(a.data_dir, a.seed, a.out, dataset=a.dataset, params=a.params)


def _cmd_cell_split_data(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.cell_split_data(a.data_dir, a.split, a.out_dir)


def _cmd_go_graph(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.go_graph(a.data_dir, a.gene2go, a.out, aliases=a.aliases, top_k=a.top_k, min_weight=a.min_weight)


def _cmd_fit_predict(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.fit_predict(a.data_dir, a.split, a.model, a.params, a.out, go_graph_path=a.go_graph,
                         go_table=a.go_table, log_dir=a.log_dir, device=a.device, featureset=a.featureset)


def _cmd_recalibrate(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.recalibrate(a.data_dir, a.split, a.prediction, a.checkpoint, a.out, go_graph_path=a.go_graph,
                         device=a.device)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.evaluate(a.data_dir, a.split, a.prediction, a.out, featureset=a.featureset, model=a.model, seed=a.seed)


def _cmd_score(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.score(a.data, a.split, a.prediction, a.out, model=a.model or None, featureset=a.featureset or None)


def _cmd_summarize(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.summarize(a.metrics, a.out, a.conditions_out)


def _cmd_verdict(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.verdict(a.conditions, a.baselines, a.comparisons_out, a.stability_out, a.verdict_out)


def _cmd_calibration(a: argparse.Namespace) -> None:
    from perturbench.uncertainty import write_calibration_table

    write_calibration_table(a.predictions, a.data_root, a.out)


def _cmd_interactions(a: argparse.Namespace) -> None:
    from perturbench import pipeline

    pipeline.interactions(a.predictions, a.splits, a.params, a.out_dir, data_root=a.data_root, planted=a.planted)


def _cmd_noise_ceiling(a: argparse.Namespace) -> None:
    from perturbench import analysis_tables

    analysis_tables.noise_ceiling_step(a.data, a.splits, a.out)


def _cmd_recurrent_genes(a: argparse.Namespace) -> None:
    from perturbench import analysis_tables

    analysis_tables.recurrent_genes_step(a.data, a.splits, a.predictions, a.out)


def _cmd_attribution_agreement(a: argparse.Namespace) -> None:
    from perturbench import analysis_tables

    analysis_tables.attribution_step(a.predictions, a.out)


def _cmd_go_enrichment(a: argparse.Namespace) -> None:
    from perturbench import analysis_tables

    analysis_tables.go_enrichment_step(a.recurrent, a.data, a.out, gene2go=a.gene2go, terms=a.terms)


def _cmd_bench(a: argparse.Namespace) -> None:
    import importlib

    importlib.import_module(BENCHMARKS[a.name]).run(a.out_dir)


def _cmd_report(a: argparse.Namespace) -> None:
    from perturbench.report import build_report

    build_report(a.results, a.out, config=a.config)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perturbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_result_commands(sub)
    _add_analysis_commands(sub)
    return p


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """The steps that make a dataset: simulate, download, prepare, featureset, split, go-graph."""
    s = sub.add_parser("simulate", help="write a simulated GEARS-format dataset")
    s.add_argument("--preset", default="demo")
    s.add_argument("--params", type=_json, default={})
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--go-out", type=_optional_path, default=None, help="also write its GO-like annotation table")
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("download", help="download a file with resume, retries and checksum")
    s.add_argument("--url", required=True)
    s.add_argument("--sha256", default="")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("prepare", help="load a dataset source, annotate DE genes, save it")
    s.add_argument("--name", required=True)
    s.add_argument("--spec", type=_json, required=True, help="the dataset's config entry as JSON")
    s.add_argument("--inputs", type=Path, nargs="*", default=[])
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("featureset", help="restrict a prepared dataset to a feature set")
    s.add_argument("--in-dir", type=Path, required=True)
    s.add_argument("--featureset", required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_cmd_featureset)

    s = sub.add_parser("split", help="write a split manifest")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--params", type=_json, default={})
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_split)

    s = sub.add_parser("cell-split-data", help="train / val / truth pseudobulks of a cell split")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_cmd_cell_split_data)

    s = sub.add_parser("go-graph", help="GO Jaccard similarity graph over a dataset's genes")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--gene2go", type=Path, required=True)
    s.add_argument("--aliases", type=_optional_path, default=None)
    s.add_argument("--top-k", type=int, default=20)
    s.add_argument("--min-weight", type=float, default=0.1)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_go_graph)


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """The steps that fit and score: fit-predict, recalibrate, evaluate and score."""
    s = sub.add_parser("fit-predict", help="fit one model on a split and write its predictions")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--params", type=_json, default={})
    s.add_argument("--go-graph", type=_optional_path, default=None)
    s.add_argument("--go-table", type=_optional_path, default=None)
    s.add_argument("--log-dir", type=Path, required=True)
    s.add_argument("--device", default="cpu")
    s.add_argument("--featureset", default="", help="recorded in the prediction's uns['run']")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_fit_predict)

    s = sub.add_parser("recalibrate", help="refit a prediction file's σ calibration from its checkpoint")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--prediction", type=Path, required=True)
    s.add_argument("--checkpoint", type=Path, required=True, help="models/{run}/model.pt of the run")
    s.add_argument("--go-graph", type=_optional_path, default=None)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_recalibrate)

    s = sub.add_parser("evaluate", help="per-condition metrics of one prediction file")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--prediction", type=Path, required=True)
    s.add_argument("--featureset", required=True, help="written as the table's featureset column")
    s.add_argument("--model", required=True, help="the run name, written as the table's model column")
    s.add_argument("--seed", type=int, required=True, help="written as the table's seed column")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("score", help="per-condition metrics of a prediction file made outside the workflow")
    s.add_argument("--data", type=Path, required=True, help="a prepared feature-set folder, e.g. results/X/full")
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--prediction", type=Path, required=True, help="h5ad: obs_names conditions, var_names genes")
    s.add_argument("--model", default="", help="the table's model column (default: the file's stem)")
    s.add_argument("--featureset", default="", help="the table's featureset column (default: the folder's name)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_score)


def _add_result_commands(sub: argparse._SubParsersAction) -> None:
    """The steps on top of the per-condition metrics: summarize, verdict, calibration, interactions,
    bench and report."""
    s = sub.add_parser("summarize", help="subgroup summary with bootstrap CIs")
    s.add_argument("--metrics", type=Path, nargs="+", required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--conditions-out", type=Path, required=True)
    s.set_defaults(func=_cmd_summarize)

    s = sub.add_parser("verdict", help="paired tests vs the best baseline (Holm), rank stability, verdict table")
    s.add_argument("--conditions", type=Path, required=True)
    s.add_argument("--baselines", nargs="+", required=True)
    s.add_argument("--comparisons-out", type=Path, required=True)
    s.add_argument("--stability-out", type=Path, required=True)
    s.add_argument("--verdict-out", type=Path, required=True)
    s.set_defaults(func=_cmd_verdict)

    s = sub.add_parser("calibration", help="σ calibration (NLL, interval coverage) of prediction files")
    s.add_argument("--predictions", type=Path, nargs="*", default=[])
    s.add_argument("--data-root", type=Path, required=True, help="results/{dataset}")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_calibration)

    s = sub.add_parser("interactions", help="genetic-interaction parameters and metrics of prediction files")
    s.add_argument("--predictions", type=Path, nargs="+", required=True)
    s.add_argument("--splits", type=Path, nargs="+", required=True)
    s.add_argument("--params", type=_json, default={}, help="GIConfig fields as JSON")
    s.add_argument("--planted", type=_optional_path, default=None, help="simulated raw h5ad with uns['interactions']")
    s.add_argument("--data-root", type=Path, required=True, help="results/{dataset}: truths in {featureset}/")
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_cmd_interactions)

    s = sub.add_parser("bench", help="run a benchmark and write its figures")
    s.add_argument("name", choices=sorted(BENCHMARKS))
    s.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("report", help="render the HTML report")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.add_argument("--config", type=_json, default={})
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_report)


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """The analyses the report shows, each a TSV + JSON sidecar (:mod:`perturbench.analysis_tables`)."""
    s = sub.add_parser("noise-ceiling", help="split-half noise ceiling of the test conditions")
    s.add_argument("--data", type=Path, required=True, help="a feature set's pseudobulk.h5ad (+ cells_ref.json)")
    s.add_argument("--splits", type=Path, nargs="+", required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_noise_ceiling)

    s = sub.add_parser("recurrent-genes", help="genes recurring among each run's top predicted changes")
    s.add_argument("--data", type=Path, required=True, help="a feature set's pseudobulk.h5ad")
    s.add_argument("--splits", type=Path, nargs="+", required=True)
    s.add_argument("--predictions", type=Path, nargs="*", default=[])
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_recurrent_genes)

    s = sub.add_parser("attribution-agreement", help="agreement of the runs' gene attributions")
    s.add_argument("--predictions", type=Path, nargs="*", default=[])
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_attribution_agreement)

    s = sub.add_parser("go-enrichment", help="GO enrichment of each run's recurrent genes")
    s.add_argument("--recurrent", type=Path, required=True, help="recurrent_genes.tsv")
    s.add_argument("--data", type=Path, required=True, help="a feature set's pseudobulk.h5ad (the background)")
    s.add_argument("--gene2go", type=_optional_path, default=None, help="GO annotation table (none: not available)")
    s.add_argument("--terms", type=_optional_path, default=None, help="GO term names (go_id, ontology, term)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_go_enrichment)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (PerturbenchError, FileNotFoundError) as err:
        message = " ".join(str(err).split())  # one line, whatever the message
        print(f"perturbench {args.command}: error: {type(err).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
