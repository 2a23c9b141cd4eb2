import json

from perturbench import resources
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


def cell_split_inputs(w):
    """The cell split's pseudobulks a fit / evaluate job reads (none for a condition split)."""
    if config["datasets"][w.dataset].get("split", {}).get("kind") != "cells":
        return []
    folder = f"results/{w.dataset}/{w.featureset}/seed{w.seed}/cellsplit"
    return [f"{folder}/{part}/pseudobulk.h5ad" for part in ("train", "val", "truth")]


# -- resources: perturbench.resources sizes them from the dataset (its docstring) ---------------
def job_mem_mb(base, per_cell_mib, fitting, per_pb_mib=4.0):
    """mem_mb of a fit (``fitting``) or evaluate job: see perturbench.resources.job_mem_mb."""
    return lambda w: resources.job_mem_mb(
        config,
        w.dataset,
        w.model if fitting else None,
        base=base,
        per_cell_mib=per_cell_mib,
        per_pb_mib=per_pb_mib,
    )


def job_runtime(base, per_gib, fitting):
    """runtime (minutes) of a fit or evaluate job: see perturbench.resources.job_runtime."""
    return lambda w: resources.job_runtime(
        config, w.dataset, w.model if fitting else None, base=base, per_gib=per_gib
    )


def cells_mib(w):
    return resources.cells_mib(config, w.dataset)


def pseudobulk_mib(w):
    return resources.file_mib(f"results/{w.dataset}/prepared/pseudobulk.h5ad")


def featureset_pseudobulk_mib(w):
    return resources.file_mib(f"results/{w.dataset}/{w.featureset}/pseudobulk.h5ad")


def input_mem_mb(base, factor):
    return lambda w, input: resources.input_mem_mb(input, base=base, factor=factor)


def simulate_mem_mb(w):
    return resources.simulate_mem_mb(config, w.dataset)
