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


def is_mamba(config: dict[str, Any], run: str) -> bool:
    return model_runs(config)[run]["model"] == MAMBA


def interaction_datasets(config: dict[str, Any]) -> list[str]:
    """Datasets the genetic-interaction analysis runs on: all when ``interactions.enabled``, except
    simulated ones whose preset (with its params) plants no two-gene conditions."""
    if not config.get("interactions", {}).get("enabled", False):
        return []
    from perturbench.data.simconfig import SIMULATION_PRESETS

    out = []
    for name, spec in config["datasets"].items():
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
