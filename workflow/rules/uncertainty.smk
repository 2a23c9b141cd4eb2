rule calibration:
    input:
        lambda w: mamba_predictions(w.dataset),
    output:
        report(
            "results/{dataset}/calibration.tsv",
            caption="../report/calibration.rst",
            category="Results",
        ),
    log:
        "results/logs/{dataset}/calibration.log",
    benchmark:
        "results/benchmarks/{dataset}/calibration.tsv"
    conda:
        "../envs/perturbench.yaml"
    shell:
        "perturbench calibration --data-root results/{wildcards.dataset} "
        "--predictions {input:q} --out {output:q} 2> {log:q}"
