"""Cost benchmarks: each module has ``run(out_dir) -> pandas.DataFrame`` and writes ``<out_dir>/<name>.tsv``;
run them with ``perturbench bench NAME`` or ``snakemake bench_all``."""
