FIT_INPUTS = dict(
    data="results/{dataset}/{featureset}/pseudobulk.h5ad",
    cells="results/{dataset}/{featureset}/cells_ref.json",
    prepared_cells="results/{dataset}/prepared/cells.h5ad",
    split="results/{dataset}/splits/seed{seed}.json",
    go_graph="results/{dataset}/go_graph.npz",
    cellsplit=cell_split_inputs,
)
FIT_SHELL = (
    "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} perturbench fit-predict "
    "--data-dir {input.data:q} --split {input.split:q} "
    "--model {wildcards.model} --params {params.run:q} --go-graph {input.go_graph:q} "
    "--go-table={params.go_table:q} --log-dir {params.log_dir:q} --device {params.device} "
    "--featureset {wildcards.featureset} "
    "--out {output.prediction:q} 2> {log:q}"
)
FIT_PARAMS = dict(
    run=lambda w: run_json(w.model),
    go_table=lambda w: go_table(config, w.dataset),
    log_dir=lambda w: f"results/{w.dataset}/{w.featureset}/seed{w.seed}/models/{w.model}",
    device=config.get("device", "cpu"),
)


rule fit_predict:
    input:
        **FIT_INPUTS,
    output:
        prediction="results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad",
    log:
        "results/logs/{dataset}/{featureset}/seed{seed}/fit_{model}.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/seed{seed}/fit_{model}.tsv"
    wildcard_constraints:
        model="|".join(OTHER_RUNS),
    conda:
        "../envs/perturbench.yaml"
    threads: 1
    resources:
        # k562 preset, pseudobulk 41 MiB: 0.34-1.62 GB RSS (two_stage on the cell split the most);
        # the 1.7 GB base covers a DAG built before the pseudobulk exists (its size counts as 0)
        mem_mb=job_mem_mb(1700, 3.5, fitting=True, per_pb_mib=8),
        runtime=job_runtime(15, 60, fitting=True),
    params:
        **FIT_PARAMS,
    shell:
        FIT_SHELL


rule fit_predict_mamba:
    input:
        **FIT_INPUTS,
    output:
        prediction="results/{dataset}/{featureset}/seed{seed}/predictions/{model}.h5ad",
        curves=report(
            "results/{dataset}/{featureset}/seed{seed}/models/{model}/loss_curves.tsv",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
    log:
        "results/logs/{dataset}/{featureset}/seed{seed}/fit_{model}.log",
    benchmark:
        "results/benchmarks/{dataset}/{featureset}/seed{seed}/fit_{model}.tsv"
    wildcard_constraints:
        model="|".join(CURVE_RUNS),
    conda:
        "../envs/perturbench.yaml"
    threads: 1
    resources:
        # k562 preset (2.36 GiB cells), 20 epochs x 1,024 cells on CPU: 5.6 GB RSS, 275 CPU s
        mem_mb=job_mem_mb(2000, 2.0, fitting=True),
        runtime=job_runtime(30, 120, fitting=True),
    params:
        **FIT_PARAMS,
    shell:
        FIT_SHELL
