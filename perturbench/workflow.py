"""DAG-time helpers for the Snakemake workflow (kept in the package so pytest reaches them).

The workflow config lists *model runs*: a run name (the ``{model}`` wildcard) mapping to a
registered model and its hyper-parameters. :func:`model_runs` expands the ``d_state`` ablation
into extra runs; :func:`runs_for` drops runs a dataset cannot support (cell-level models on
pseudobulk-only sources).
"""

from __future__ import annotations

from typing import Any

# sources that provide single cells; the others are pseudobulk tables
CELL_SOURCES = frozenset({"gears", "simulated", "cells"})
CELL_ONLY_MODELS = frozenset({"gears"})
MAMBA = "dual_stream_mamba"
# registered models that are baselines (the verdict compares every other run with the best of them)
BASELINE_MODELS = ("control", "mean", "additive", "ridge", "grn_ridge", "two_stage", "linear_embedding")


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
        for d_state in ablation["d_state"]:
            runs[f"{MAMBA}_dstate{d_state}"] = {
                "model": base["model"],
                "params": {**base["params"], "d_state": d_state},
                "featuresets": ablation.get("featuresets", base["featuresets"]),
            }
    return runs


def has_cells(config: dict[str, Any], dataset: str) -> bool:
    return config["datasets"][dataset]["source"] in CELL_SOURCES


def runs_for(config: dict[str, Any], dataset: str, featureset: str | None = None) -> list[str]:
    """Model runs that apply to ``dataset`` (and ``featureset`` when given), in config order."""
    cells = has_cells(config, dataset)
    return [
        r
        for r, s in model_runs(config).items()
        if (cells or s["model"] not in CELL_ONLY_MODELS)
        and (featureset is None or s["featuresets"] is None or featureset in s["featuresets"])
    ]


def baseline_runs(config: dict[str, Any], dataset: str) -> list[str]:
    """Runs of ``dataset`` whose registered model is a baseline (e.g. ``ridge_no_intercept``)."""
    runs = model_runs(config)
    return [r for r in runs_for(config, dataset) if runs[r]["model"] in BASELINE_MODELS]


def is_mamba(config: dict[str, Any], run: str) -> bool:
    return model_runs(config)[run]["model"] == MAMBA
