rule report:
    input:
        summaries=expand("results/{dataset}/summary.tsv", dataset=DATASETS),
        verdicts=expand(
            "results/{dataset}/{table}.tsv",
            dataset=DATASETS,
            table=["comparisons", "rank_stability", "verdict"],
        ),
        tables=analysis_files(config, DATASETS),
        # the report also reads the prediction files (figures, calibration, run records)
        predictions=[
            p
            for d in DATASETS
            for fs in config["featuresets"]
            for p in prediction_files(config, d, fs)
        ],
        interactions=expand(
            "results/{dataset}/interactions.tsv", dataset=interaction_datasets(config)
        ),
    output:
        index=report(
            "results/report/index.html",
            caption="../report/html_report.rst",
            category="Report",
        ),
        pages=expand("results/report/{dataset}.html", dataset=DATASETS),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        mem_mb=8000,
    params:
        config=json.dumps(config, sort_keys=True),
    shell:
        "perturbench report --results results --config {params.config:q} --out {output.index:q} 2> {log:q}"
