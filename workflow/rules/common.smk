import json

from perturbench.data.features import FEATURE_SETS
from perturbench.workflow import (
    baseline_runs,
    check_config,
    go_table,
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


def all_outputs():
    out = expand(
        "results/{dataset}/{table}.tsv",
        dataset=DATASETS,
        table=["summary", "comparisons", "rank_stability", "verdict"],
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
