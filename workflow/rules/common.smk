import json

from perturbench.workflow import (
    interaction_datasets,
    interaction_featuresets,
    is_mamba,
    model_runs,
    runs_for,
)

DATASETS = list(config["datasets"])
RUNS = model_runs(config)
MAMBA_RUNS = [r for r in RUNS if is_mamba(config, r)] or ["__none__"]
OTHER_RUNS = [r for r in RUNS if not is_mamba(config, r)] or ["__none__"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    featureset="full|no_mt|no_mt_ribo",
    seed=r"\d+",


def spec_json(dataset):
    return json.dumps(config["datasets"][dataset], sort_keys=True)


def run_json(run):
    spec = RUNS[run]
    return json.dumps(
        {"model": spec["model"], "params": spec["params"]}, sort_keys=True
    )


def go_table(dataset):
    """The GO annotation table used for the dataset's GO graph."""
    go = config["go"]
    if go["source"] == "table":
        return go["gene2go"]
    if go["source"] == "gears":
        return "results/downloads/gene2go_all.pkl"
    return f"results/{dataset}/raw/gene2go.tsv.gz"


def metrics_files(dataset):
    return [
        f"results/{dataset}/{featureset}/seed{seed}/metrics/{model}.tsv"
        for featureset in config["featuresets"]
        for seed in config["seeds"]
        for model in runs_for(config, dataset, featureset)
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
    out = expand("results/{dataset}/summary.tsv", dataset=DATASETS)
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
