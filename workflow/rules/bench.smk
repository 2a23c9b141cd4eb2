BENCHMARKS = [
    "baselines_speed",
    "mamba_cost",
    "prepare_scale",
    "gears_vs_mamba",
    "sequence_cost",
]
# long: the k562 preset end to end (~1 h on 2 cores); `snakemake results/bench/workflow_scale.tsv`
LONG_BENCHMARKS = ["workflow_scale"]


rule bench:
    output:
        report(
            "results/bench/{name}.tsv", caption="../report/bench.rst", category="Cost"
        ),
    log:
        "results/logs/bench/{name}.log",
    benchmark:
        "results/benchmarks/bench/{name}.tsv"
    wildcard_constraints:
        name="|".join(BENCHMARKS + LONG_BENCHMARKS),
    conda:
        "../envs/perturbench.yaml"
    threads: 2
    resources:
        mem_mb=12000,
    shell:
        "OMP_NUM_THREADS={threads} perturbench bench {wildcards.name} --out-dir results/bench 2> {log:q}"


rule bench_all:
    input:
        expand("results/bench/{name}.tsv", name=BENCHMARKS),
