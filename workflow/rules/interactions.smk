rule interactions:
    input:
        data=lambda w: expand(
            "results/{dataset}/{featureset}/{file}",
            dataset=w.dataset,
            featureset=interaction_featuresets(config),
            file=["pseudobulk.h5ad", "cells_ref.json"],
        ),
        prepared_cells="results/{dataset}/prepared/cells.h5ad",
        splits=lambda w: expand(
            "results/{dataset}/splits/seed{seed}.json",
            dataset=w.dataset,
            seed=config["seeds"],
        ),
        predictions=lambda w: interaction_predictions(w.dataset),
        planted=interaction_planted,
    output:
        metrics="results/{dataset}/interactions.tsv",
        params="results/{dataset}/interaction_params.tsv",
        curve="results/{dataset}/interaction_curve.tsv",
    log:
        "results/logs/{dataset}/interactions.log",
    benchmark:
        "results/benchmarks/{dataset}/interactions.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        gi=json.dumps(config.get("interactions", {}).get("params", {}), sort_keys=True),
        planted=lambda w, input: f"--planted {input.planted}" if input.planted else "",
    shell:
        "perturbench interactions --predictions {input.predictions:q} --splits {input.splits:q} "
        "--params {params.gi:q} {params.planted} --data-root results/{wildcards.dataset} "
        "--out-dir results/{wildcards.dataset} 2> {log:q}"
