"""DAG-time helpers for the Snakemake workflow (kept in the package so pytest reaches them).

The workflow config lists *model runs*: a run name (the ``{model}`` wildcard) mapping to a
registered model and its hyper-parameters. :func:`model_runs` expands the ``d_state`` ablation
and the component ablations (:data:`COMPONENTS`, runs ``dual_stream_mamba_<variant>``) into
extra runs; :func:`runs_for` drops runs a dataset cannot support (cell-level models on
pseudobulk-only sources).
"""

from __future__ import annotations

from typing import Any

from perturbench.data.features import FEATURE_SETS
from perturbench.data.sources import source_spec
from perturbench.errors import ConfigError
from perturbench.models.registry import check_params, model_spec

MAMBA = "dual_stream_mamba"  # the run the d_state and component ablations vary
# component ablation → DualStreamConfig overrides (perturbench.models.dual_stream_net)
COMPONENTS: dict[str, dict[str, Any]] = {
    "attention": {"encoder": "attention"},  # transformer of the same width and depth over the same tokens
    "no_encoder": {"encoder": "none"},  # no sequence encoder
    "no_data_stream": {"data_stream": False},  # no VAE stream
    "no_graphs": {"graphs": False},  # no graph convolutions
    "no_prior": {"prior": "none"},  # the network predicts the whole change
    "prior_only": {"network": False},  # the prior the network starts from, no network
    "tokens16": {"n_tokens": 16},
    "tokens256": {"n_tokens": 256},
    "tokens_per_gene": {"n_tokens": "per_gene"},
}


def baseline_runs(config: dict[str, Any], dataset: str) -> list[str]:
    """Runs of ``dataset`` whose registered model is of kind control or baseline (e.g.
    ``ridge_no_intercept``): the candidates for the verdict's reference."""
    runs = model_runs(config)
    return [r for r in runs_for(config, dataset) if model_spec(runs[r]["model"]).kind in ("control", "baseline")]


def model_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run name → {"model", "params", "featuresets"}, ablation runs included.

    ``featuresets`` is None (every configured feature set) or the list a run is restricted to,
    so costly runs (GEARS, the ablation) can be limited to e.g. ``[full]``.
    """
    runs: dict[str, dict[str, Any]] = {}
    for run, spec in config["models"].items():
        spec = spec or {}
        runs[run] = {
            "model": spec.get("model", run),
            "params": dict(spec.get("params", {})),
            "featuresets": spec.get("featuresets"),
        }
    ablation = config.get("ablation", {})
    if ablation.get("enabled", False) and MAMBA in runs:
        base = runs[MAMBA]
        variants = {f"dstate{d}": {"d_state": d} for d in ablation.get("d_state", [])}
        for name in ablation.get("components", []):
            if name not in COMPONENTS:
                raise ConfigError(f"config ablation.components: unknown variant {name!r}; known: {sorted(COMPONENTS)}")
            variants[name] = COMPONENTS[name]
        for name, override in variants.items():
            runs[f"{MAMBA}_{name}"] = {
                "model": base["model"],
                "params": {**base["params"], **override},
                "featuresets": ablation.get("featuresets", base["featuresets"]),
            }
    return runs


def primary_featureset(featuresets: list[str]) -> str:
    """The feature set of the report's per-model analyses: ``full`` when present, else the first."""
    return "full" if "full" in featuresets else featuresets[0]


def has_cells(config: dict[str, Any], dataset: str) -> bool:
    """Whether the dataset's source provides single cells (its ``cells`` trait)."""
    return source_spec(dataset, config["datasets"][dataset]).cells


def runs_for(config: dict[str, Any], dataset: str, featureset: str | None = None) -> list[str]:
    """Model runs that apply to ``dataset`` (and ``featureset`` when given), in config order."""
    cells = has_cells(config, dataset)
    return [
        r
        for r, s in model_runs(config).items()
        if (cells or not model_spec(s["model"]).needs_cells)
        and (featureset is None or s["featuresets"] is None or featureset in s["featuresets"])
    ]


def check_config(config: dict[str, Any]) -> None:
    """The DAG-time check of names against the registries (sources, feature sets, models and their
    hyper-parameters); a ConfigError names the config entry and the key."""
    for dataset, spec in config["datasets"].items():
        source_spec(dataset, spec)
    named = [("featuresets", config.get("featuresets", []))]
    named += [(f"models.{run}.featuresets", (spec or {}).get("featuresets") or [])
              for run, spec in config["models"].items()]
    named.append(("ablation.featuresets", config.get("ablation", {}).get("featuresets") or []))
    named.append(("interactions.featuresets", config.get("interactions", {}).get("featuresets") or []))
    for where, names in named:
        unknown = [name for name in names if name not in FEATURE_SETS]
        if unknown:
            raise ConfigError(f"{where}: unknown feature set(s) {unknown}; known: {', '.join(FEATURE_SETS)}")
    check_model_runs(config)


def check_model_runs(config: dict[str, Any]) -> None:
    """Fail when the DAG is built, naming the run and the key, if a run names an unknown model or
    a hyper-parameter its model does not have (or refuses)."""
    for run, spec in model_runs(config).items():
        check_params(spec["model"], spec["params"], where=f"models.{run}")


def has_uncertainty(config: dict[str, Any], run: str) -> bool:
    """Whether run ``run`` predicts σ (its model's ``uncertainty`` trait): it gets a calibration row."""
    return model_spec(model_runs(config)[run]["model"]).uncertainty


def writes_curves(config: dict[str, Any], run: str) -> bool:
    """Whether run ``run`` writes training curves (its model's ``training_curves`` trait)."""
    return model_spec(model_runs(config)[run]["model"]).training_curves


def go_table(config: dict[str, Any], dataset: str) -> str | None:
    """The GO annotation table of ``dataset`` (relative to the workflow directory unless the config
    gives an absolute path), or None without a ``go`` config: the one place that decides it, for
    the GO-graph rule and the report."""
    go = config.get("go")
    if not go:
        return None
    source = go.get("source")
    if source == "table":
        return str(go["gene2go"])
    if source == "gears":
        return "results/downloads/gene2go_all.pkl"
    if source == "simulated":
        return f"results/{dataset}/raw/gene2go.tsv.gz"
    raise ConfigError(f"go.source: unknown value {source!r} (expected table, gears or simulated)")


def interaction_datasets(config: dict[str, Any]) -> list[str]:
    """Datasets the genetic-interaction analysis runs on: all when ``interactions.enabled``, except
    cell-split datasets and simulated ones whose preset (with its params) plants no two-gene
    conditions."""
    if not config.get("interactions", {}).get("enabled", False):
        return []
    from perturbench.data.simconfig import SIMULATION_PRESETS

    out = []
    for name, spec in config["datasets"].items():
        if spec.get("split", {}).get("kind") == "cells":  # every condition trains: no unseen doubles
            continue
        if spec["source"] == "simulated":
            preset = SIMULATION_PRESETS.get(spec.get("preset", "demo"))
            combos = spec.get("params", {}).get("n_combos", preset.n_combos if preset else 1)
            if combos == 0:
                continue
        out.append(name)
    return out


def interaction_featuresets(config: dict[str, Any]) -> list[str]:
    """Feature sets of the interaction analysis (``interactions.featuresets``, default ``[full]``),
    restricted to the configured ones."""
    wanted = config.get("interactions", {}).get("featuresets", ["full"])
    return [f for f in config["featuresets"] if f in wanted]


ANALYSES = ("recurrent_genes", "attribution_agreement", "go_enrichment")  # on the primary feature set


def prediction_files(config: dict[str, Any], dataset: str, featureset: str) -> list[str]:
    """Prediction files of every run of ``dataset`` on ``featureset`` and every seed, run by run."""
    return [f"results/{dataset}/{featureset}/seed{seed}/predictions/{run}.h5ad"
            for run in runs_for(config, dataset, featureset) for seed in config["seeds"]]


def analysis_files(config: dict[str, Any], datasets: list[str]) -> list[str]:
    """The analysis tables and sidecars the report reads (:mod:`perturbench.analysis_tables`): the
    noise ceiling of every feature set, :data:`ANALYSES` on the primary one."""
    primary = primary_featureset(config["featuresets"])
    tables = [f"{d}/{fs}/noise_ceiling" for d in datasets for fs in config["featuresets"]]
    tables += [f"{d}/{primary}/{name}" for d in datasets for name in ANALYSES]
    return [f"results/{t}.{ext}" for t in tables for ext in ("tsv", "json")]
