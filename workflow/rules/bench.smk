from perturbench.bench import BENCHMARKS, LONG_BENCHMARKS


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
        name="|".join(BENCHMARKS),
    conda:
        "../envs/perturbench.yaml"
    threads: 2
    resources:
        mem_mb=12000,
    shell:
        "OMP_NUM_THREADS={threads} perturbench bench {wildcards.name} --out-dir results/bench 2> {log:q}"


rule bench_all:
    input:
        expand(
            "results/bench/{name}.tsv",
            name=[b for b in BENCHMARKS if b not in LONG_BENCHMARKS],
        ),
