"""Cost benchmarks: each module has ``run(out_dir) -> pandas.DataFrame`` and writes ``<out_dir>/<name>.tsv``;
run them with ``perturbench bench NAME`` or ``snakemake bench_all``."""

#: benchmark name → its module (the one list: the CLI and the workflow's bench rules read it)
BENCHMARKS = {
    "baselines_speed": "perturbench.bench.baselines_speed",
    "mamba_cost": "perturbench.bench.mamba_cost",
    "prepare_scale": "perturbench.bench.prepare_scale",
    "gears_vs_mamba": "perturbench.bench.gears_vs_mamba",
    "sequence_cost": "perturbench.bench.sequence_cost",
    "workflow_scale": "perturbench.bench.workflow_scale",
}
#: long: the k562 preset end to end (~1 h on 2 cores), not in bench_all;
#: run it with `snakemake results/bench/workflow_scale.tsv`
LONG_BENCHMARKS = ("workflow_scale",)
