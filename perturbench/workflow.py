"""DAG-time helpers for the Snakemake workflow (kept in the package so pytest reaches them).

The workflow config lists *model runs*: a run name (the ``{model}`` wildcard) mapping to a
registered model and its hyper-parameters. :func:`model_runs` expands the ``d_state`` ablation
and the component ablations (:data:`COMPONENTS`, runs ``dual_stream_mamba_<variant>``) into
extra runs; :func:`runs_for` drops runs a dataset cannot support (cell-level models on
pseudobulk-only sources).
"""

from __future__ import annotations

from typing import Any

# sources that provide single cells; the others are pseudobulk tables
CELL_SOURCES = frozenset({"gears", "simulated", "cells"})
CELL_ONLY_MODELS = frozenset({"gears"})
MAMBA = "dual_stream_mamba"
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
                raise ValueError(f"config ablation.components: unknown variant {name!r}; known: {sorted(COMPONENTS)}")
            variants[name] = COMPONENTS[name]
        for name, override in variants.items():
            runs[f"{MAMBA}_{name}"] = {
                "model": base["model"],
                "params": {**base["params"], **override},
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
