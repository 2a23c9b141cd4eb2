"""Read one dataset's finished results tree (the layout the workflow writes).

::

    results/{dataset}/prepared/{pseudobulk,cells}.h5ad        all genes
    results/{dataset}/{featureset}/{pseudobulk,cells}.h5ad     + featureset.json
    results/{dataset}/splits/seed{seed}.json                   split manifests (with checksum)
    results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad
    results/{dataset}/{featureset}/seed{seed}/models/{model}/loss_curves.tsv   (runs that train)
    results/{dataset}/conditions.tsv, summary.tsv
    results/{dataset}/comparisons.tsv, rank_stability.tsv, verdict.tsv   (the verdict rule)
    results/{dataset}/{featureset}/noise_ceiling.tsv, recurrent_genes.tsv,
        attribution_agreement.tsv, go_enrichment.tsv (+ .json sidecars; perturbench.analysis_tables)

Required files missing raise :class:`ReportError` naming the path; optional ones (predictions of
a run, loss curves) read as None so the page says what is absent; an analysis table that is not
available says why in its sidecar.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perturbench.analysis_tables import read_analysis
from perturbench.data.contract import PerturbDataset
from perturbench.data.store import load_dataset
from perturbench.errors import PerturbenchError
from perturbench.evaluate import RUN_COLUMNS, SUMMARY_COLUMNS
from perturbench.models.base import Prediction
from perturbench.models.registry import registered
from perturbench.cell_split import CellSplit, read_any_manifest
from perturbench.report.analyses import BASELINES
from perturbench.splits import Split
from perturbench.verdict import COMPARISON_COLUMNS, STABILITY_COLUMNS, VERDICT_COLUMNS
from perturbench.workflow import model_runs, primary_featureset

_SEED_FILE = re.compile(r"seed(\d+)\.json$")


class ReportError(PerturbenchError, ValueError):
    """The results tree lacks something the report needs; the message names the path."""


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """A TSV with at least ``columns``; ReportError naming ``path`` otherwise."""
    if not path.exists():
        raise ReportError(f"{path}: missing (run the workflow's summarize and verdict steps first)")
    frame = pd.read_csv(path, sep="\t")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: header {list(frame.columns)} lacks column(s) {missing}")
    return frame


@dataclass
class DatasetResults:
    """One dataset's results, with predictions and datasets read on first use and cached."""

    name: str
    root: Path
    config: dict[str, Any]
    summary: pd.DataFrame
    conditions: pd.DataFrame
    featuresets: list[str]
    models: list[str]
    splits: dict[int, Split | CellSplit]
    checksums: dict[int, str]
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)  # the verdict rule's outputs
    stability: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdict: pd.DataFrame = field(default_factory=pd.DataFrame)
    _cache: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def primary(self) -> str:
        """The feature set the per-model figures use: ``full`` when present, else the first."""
        return primary_featureset(self.featuresets)

    @property
    def baselines(self) -> list[str]:
        """Runs whose registered model is a baseline (the config's ``model``, else the run name)."""
        runs = model_runs(self.config) if self.config.get("models") else {}
        return [m for m in self.models if runs.get(m, {}).get("model", m) in BASELINES]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.splits)

    def record(self, featureset: str) -> dict[str, Any] | None:
        path = self.root / featureset / "featureset.json"
        return json.loads(path.read_text()) if path.exists() else None

    def prepared(self) -> PerturbDataset:
        """The prepared dataset (all genes, cells included when there are any)."""
        return self._cached(("prepared",), lambda: load_dataset(self.root / "prepared"))

    def featureset_data(self, featureset: str) -> PerturbDataset:
        """The feature set's pseudobulk dataset (without cells)."""
        return self._cached(("fs", featureset),
                            lambda: load_dataset(self.root / featureset, with_cells=False))

    def prediction(self, featureset: str, seed: int, model: str) -> Prediction | None:
        path = self.run_dir(featureset, seed) / "predictions" / f"{model}.h5ad"
        return self._cached(("pred", featureset, seed, model),
                            lambda: Prediction.read(path) if path.exists() else None)

    def analysis(self, featureset: str, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """``{featureset}/{name}.tsv`` and its sidecar, written by the workflow step of that name
        (:mod:`perturbench.analysis_tables`); ReportError naming the file when it is missing."""
        path = self.root / featureset / f"{name}.tsv"
        if not path.exists():
            raise ReportError(f"{path}: missing (run the workflow's {name} step first)")
        return read_analysis(path, name)

    def loss_curves(self, featureset: str, seed: int, model: str) -> pd.DataFrame | None:
        """Long loss curves (epoch, split, term, value) of a run, or None when it wrote none."""
        path = self.run_dir(featureset, seed) / "models" / model / "loss_curves.tsv"
        if not path.exists():
            return None
        wide = read_table(path, ["epoch", "split"])
        terms = [c for c in wide.columns if c not in ("epoch", "split", "lr")]
        return wide.melt(id_vars=["epoch", "split"], value_vars=terms, var_name="term", value_name="value")

    def run_dir(self, featureset: str, seed: int) -> Path:
        return self.root / featureset / f"seed{seed}"

    def run_record(self, model: str) -> dict[str, Any] | None:
        """``uns['run']`` of the run's first prediction file on the primary feature set, or None."""
        for seed in self.seeds:
            pred = self.prediction(self.primary, seed, model)
            if pred is not None and pred.run is not None:
                return pred.run
        return None

    def uncertainty_runs(self) -> list[str]:
        """Runs whose registered model predicts σ (the ``uncertainty`` trait), in model order."""
        runs = model_runs(self.config) if self.config.get("models") else {}
        specs = registered()
        return [m for m in self.models
                if (spec := specs.get(runs.get(m, {}).get("model", m))) is not None and spec.uncertainty]

    def dstate_runs(self) -> dict[str, int]:
        """The d_state ablation, run → d_state, read from the run records: the largest set of runs
        of one model whose hyper-parameters are equal except ``d_state`` (at least two values), in
        model order (the base run first). A run that differs in anything else (another gene
        order, say) is not part of it."""
        groups: dict[str, dict[str, int]] = {}
        for model in self.models:
            record = self.run_record(model)
            if record is None or "d_state" not in record["params"]:
                continue
            rest = {k: v for k, v in record["params"].items() if k != "d_state"}
            key = json.dumps([record["model"], rest], sort_keys=True)
            groups.setdefault(key, {})[model] = int(record["params"]["d_state"])
        varied = [group for group in groups.values() if len(set(group.values())) >= 2]
        return max(varied, key=len) if varied else {}

    def _cached(self, key: tuple, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]


def _ordered_models(found: list[str], config: dict[str, Any]) -> list[str]:
    """Models in config order (ablation runs after their base), then any others sorted."""
    order = list(model_runs(config)) if config.get("models") else []
    return [m for m in order if m in found] + sorted(m for m in found if m not in order)


def read_splits(root: Path) -> tuple[dict[int, Split | CellSplit], dict[int, str]]:
    """Seed → split and seed → manifest checksum, for every ``splits/seed*.json``."""
    splits, checksums = {}, {}
    for path in sorted((root / "splits").glob("seed*.json")):
        match = _SEED_FILE.search(path.name)
        if match is None:
            continue
        seed = int(match.group(1))
        splits[seed] = read_any_manifest(path)
        checksums[seed] = str(json.loads(path.read_text())["checksum"])
    if not splits:
        raise ReportError(f"{root / 'splits'}: no split manifests seed*.json")
    return splits, checksums


def load_results(results: Path, name: str, config: dict[str, Any]) -> DatasetResults:
    """Read ``results/{name}``'s summary, per-condition table and split manifests."""
    root = Path(results) / name
    summary = read_table(root / "summary.tsv", SUMMARY_COLUMNS)
    conditions = read_table(root / "conditions.tsv", RUN_COLUMNS)
    found = sorted(set(summary["featureset"]))
    wanted = [f for f in config.get("featuresets", []) if f in found]
    featuresets = wanted + [f for f in found if f not in wanted]
    splits, checksums = read_splits(root)
    models = _ordered_models(sorted(set(summary["model"])), config)
    verdict = [read_table(root / f"{t}.tsv", cols) for t, cols in (
        ("comparisons", COMPARISON_COLUMNS), ("rank_stability", STABILITY_COLUMNS), ("verdict", VERDICT_COLUMNS))]
    return DatasetResults(name, root, config, summary, conditions, featuresets, models, splits, checksums, *verdict)


def dataset_names(results: Path, config: dict[str, Any]) -> list[str]:
    """Datasets of the config (in its order), or every ``results/*/summary.tsv`` when it lists none."""
    names = list(config.get("datasets", {}))
    if names:
        return names
    found = sorted(p.parent.name for p in Path(results).glob("*/summary.tsv"))
    if not found:
        raise ReportError(f"{results}: no datasets (no */summary.tsv and the config lists none)")
    return found
