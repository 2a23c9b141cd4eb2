rule report:
    input:
        summaries=expand("results/{dataset}/summary.tsv", dataset=DATASETS),
    output:
        "results/report/index.html",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
    shell:
        "perturbench report --results results --config {params.config:q} --out {output:q} 2> {log:q}"
