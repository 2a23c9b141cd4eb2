import json
import os

from perturbench.data.features import FEATURE_SETS
from perturbench.workflow import (
    baseline_runs,
    check_config,
    go_table,
    has_uncertainty,
    interaction_datasets,
    interaction_featuresets,
    model_runs,
    runs_for,
    writes_curves,
)

DATASETS = list(config["datasets"])
check_config(config)
RUNS = model_runs(config)
CURVE_RUNS = [r for r in RUNS if writes_curves(config, r)] or ["__none__"]
OTHER_RUNS = [r for r in RUNS if not writes_curves(config, r)] or ["__none__"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    featureset="|".join(FEATURE_SETS),
    seed=r"\d+",


def spec_json(dataset):
    return json.dumps(config["datasets"][dataset], sort_keys=True)


def split_json(dataset):
    """The dataset's split settings: its own ``split`` entry over the global one."""
    own = config["datasets"][dataset].get("split", {})
    base = {} if own.get("kind") == "cells" else config.get("split", {})
    return json.dumps({**base, **own}, sort_keys=True)


def run_json(run):
    spec = RUNS[run]
    return json.dumps(
        {"model": spec["model"], "params": spec["params"]}, sort_keys=True
    )


def metrics_files(dataset):
    return [
        f"results/{dataset}/{featureset}/seed{seed}/metrics/{model}.tsv"
        for featureset in config["featuresets"]
        for seed in config["seeds"]
        for model in runs_for(config, dataset, featureset)
    ]


def mamba_predictions(dataset):
    """Prediction files of the runs that predict σ, for the calibration table."""
    return [
        f"results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad"
        for featureset in config["featuresets"]
        for seed in config["seeds"]
        for model in runs_for(config, dataset, featureset)
        if has_uncertainty(config, model)
    ]


def interaction_predictions(dataset):
    return [
        f"results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad"
        for featureset in interaction_featuresets(config)
        for seed in config["seeds"]
        for model in runs_for(config, dataset, featureset)
    ]


def interaction_planted(wildcards):
    spec = config["datasets"][wildcards.dataset]
    if spec["source"] == "simulated":
        return f"results/{wildcards.dataset}/raw/perturb_processed.h5ad"
    return []


def all_outputs():
    out = expand(
        "results/{dataset}/{table}.tsv",
        dataset=DATASETS,
        table=["summary", "comparisons", "rank_stability", "verdict"],
    )
    out += [f"results/{d}/calibration.tsv" for d in DATASETS if mamba_predictions(d)]
    out += expand(
        "results/{dataset}/interactions.tsv", dataset=interaction_datasets(config)
    )
    if config.get("report", {}).get("enabled", False):
        out.append("results/report/index.html")
    return out


def remote_url(remote):
    from perturbench.data.download import GEARS_FILES

    for spec in config["datasets"].values():
        if spec.get("remote") == remote and spec.get("url"):
            return spec["url"]
    return GEARS_FILES[remote].url


def remote_sha256(remote):
    for spec in config["datasets"].values():
        if spec.get("remote") == remote and spec.get("sha256"):
            return spec["sha256"]
    return ""


def source_inputs(wildcards):
    spec = config["datasets"][wildcards.dataset]
    if spec["source"] == "gears":
        return f"results/downloads/{spec['remote']}.archive"
    if spec["source"] == "simulated":
        return f"results/{wildcards.dataset}/raw/perturb_processed.h5ad"
    return spec["path"]


# -- resources: sized from the files a job reads (MiB of h5ad ≈ MiB in memory, CSR float32) ----
# Factors from the simulated k562 preset (160k cells × 5k genes, 2.4 GiB cells.h5ad): a job that
# loads the cells peaks at ~2× their size (4.5–5.3 GB RSS measured), prepare at 3.2 GiB on a
# 2.4 GiB input; pseudobulk-only jobs stay under 1 GB. runtime in minutes, generous (×3) over
# the measured single-core times.
def _mib(path):
    return os.path.getsize(path) / 2**20 if os.path.exists(str(path)) else 0.0


def reads_cells(w, fitting):
    """Whether a fit (``fitting``) or evaluate job loads the cells: only fits of models that
    train on cells (cell-split pseudobulks come from rule cell_split_data)."""
    from perturbench.models.registry import model_spec

    return (
        fitting and w.model in RUNS and model_spec(RUNS[w.model]["model"]).reads_cells
    )


def cell_split_inputs(w):
    """The cell split's pseudobulks a fit / evaluate job reads (none for a condition split)."""
    if config["datasets"][w.dataset].get("split", {}).get("kind") != "cells":
        return []
    folder = f"results/{w.dataset}/{w.featureset}/seed{w.seed}/cellsplit"
    return [f"{folder}/{part}/pseudobulk.h5ad" for part in ("train", "val", "truth")]


# cells × genes of the GEARS remotes (approximate), for sizing jobs before the files exist
_REMOTE_ENTRIES = {
    "norman": 91_000 * 5_000,
    "replogle_k562_essential": 160_000 * 5_000,
    "replogle_rpe1_essential": 160_000 * 5_000,
}


def cells_mib(w):
    """MiB of the prepared cells; before they exist, ~3.2 bytes per cell × gene (CSR float32
    + int32 at the k562 preset's 40% density) from the dataset's preset or remote."""
    size = _mib(f"results/{w.dataset}/prepared/cells.h5ad")
    if size:
        return size
    spec = config["datasets"][w.dataset]
    if spec["source"] == "simulated":
        cfg = _sim_config(spec)
        return 3.2 * cfg.n_cells * cfg.n_genes / 2**20
    return 3.2 * _REMOTE_ENTRIES.get(spec.get("remote"), 0) / 2**20


def job_mem_mb(base, per_cell_mib, fitting, per_pb_mib=4.0):
    """mem_mb = base + per_cell_mib × cells MiB (jobs that read cells) or per_pb_mib × pseudobulk MiB."""

    def mem(w):
        if reads_cells(w, fitting):
            return int(base + per_cell_mib * cells_mib(w))
        return int(
            base + per_pb_mib * _mib(f"results/{w.dataset}/prepared/pseudobulk.h5ad")
        )

    return mem


def job_runtime(base, per_gib, fitting):
    """runtime (minutes) = base + per_gib × cells GiB for jobs that read cells, else base."""

    def runtime(w):
        return int(
            base + (per_gib * cells_mib(w) / 1024 if reads_cells(w, fitting) else 0)
        )

    return runtime


def input_mem_mb(base, factor):
    """mem_mb = base + factor × MiB of the job's inputs (prepare: the raw cells; a compressed
    ``.archive`` counts 3×)."""

    def mem(w, input):
        return int(
            base
            + factor
            * sum(_mib(f) * (3 if str(f).endswith(".archive") else 1) for f in input)
        )

    return mem


def _sim_config(spec):
    import dataclasses

    from perturbench.data.simulate import SIMULATION_PRESETS

    preset = SIMULATION_PRESETS[spec.get("preset", "demo")]
    return dataclasses.replace(preset, **spec.get("params", {}))


def simulate_mem_mb(w):
    """The simulator peaks near 4.3 bytes per cell × gene (k562 preset: ~3.3 GB)."""
    cfg = _sim_config(config["datasets"][w.dataset])
    return int(1000 + 4.3 * cfg.n_cells * cfg.n_genes / 2**20)
