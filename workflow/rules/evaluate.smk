rule evaluate:
    input:
        data="results/{dataset}/{featureset}/pseudobulk.h5ad",
        cells="results/{dataset}/{featureset}/cells_ref.json",
        split="results/{dataset}/splits/seed{seed}.json",
        prediction="results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad",
        cellsplit=cell_split_inputs,
    output:
        "results/{dataset}/{featureset}/seed{seed}/metrics/{model}.tsv",
    log:
        "results/logs/{dataset}/{featureset}/seed{seed}/evaluate_{model}.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/seed{seed}/evaluate_{model}.tsv"
    conda:
        "../envs/perturbench.yaml"
    resources:
        # k562 preset: 0.3-0.57 GB RSS; 5-56 CPU s (cell split, 2,000 test conditions: 253 s wall loaded)
        mem_mb=job_mem_mb(1000, 3.5, fitting=False),
        runtime=job_runtime(15, 20, fitting=False),
    shell:
        "perturbench evaluate --data-dir {input.data:q} "
        "--split {input.split:q} --prediction {input.prediction:q} --featureset {wildcards.featureset} "
        "--model {wildcards.model} --seed {wildcards.seed} --out {output:q} 2> {log:q}"


rule summarize:
    input:
        lambda w: metrics_files(w.dataset),
    output:
        summary=report(
            "results/{dataset}/summary.tsv",
            caption="../report/summary.rst",
            category="Results",
        ),
        conditions="results/{dataset}/conditions.tsv",
    log:
        "results/logs/{dataset}/summarize.log",
    benchmark:
        "results/benchmarks/{dataset}/summarize.tsv"
    conda:
        "../envs/perturbench.yaml"
    shell:
        "perturbench summarize --metrics {input:q} --out {output.summary:q} "
        "--conditions-out {output.conditions:q} 2> {log:q}"


rule verdict:
    input:
        "results/{dataset}/conditions.tsv",
    output:
        comparisons=report(
            "results/{dataset}/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Results",
        ),
        stability="results/{dataset}/rank_stability.tsv",
        verdict=report(
            "results/{dataset}/verdict.tsv",
            caption="../report/verdict.rst",
            category="Results",
        ),
    log:
        "results/logs/{dataset}/verdict.log",
    benchmark:
        "results/benchmarks/{dataset}/verdict.tsv"
    conda:
        "../envs/perturbench.yaml"
    params:
        baselines=lambda w: " ".join(baseline_runs(config, w.dataset)),
    shell:
        "perturbench verdict --conditions {input:q} --baselines {params.baselines} "
        "--comparisons-out {output.comparisons:q} --stability-out {output.stability:q} "
        "--verdict-out {output.verdict:q} 2> {log:q}"
