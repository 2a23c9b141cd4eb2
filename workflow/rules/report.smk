rule report:
    input:
        summaries=expand("results/{dataset}/summary.tsv", dataset=DATASETS),
    output:
        "results/report/index.html",
    params:
        config=json.dumps(config, sort_keys=True),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "perturbench report --results results --config {params.config:q} --out {output:q} 2> {log:q}"
