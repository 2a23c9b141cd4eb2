"""workflow_scale bench: benchmark files → per-rule table, job counts and the CPU projection."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbench.bench.workflow_scale import collect, declared, disk_rows, job_counts, project, rule_of

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, s, rss, io_out, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:01\t{rss}\t0\t0\t0\t0\t{io_out}\t0\t{cpu}\n")


def test_collect_sums_jobs_per_dataset_and_rule(tmp_path):
    root = tmp_path / "results" / "benchmarks"
    _bench(root / "k562" / "simulate.tsv", 100.0, 3000.0, 2500.0, 95.0)
    _bench(root / "k562" / "full" / "seed1" / "fit_ridge.tsv", 2.0, 500.0, 1.0, 1.5)
    _bench(root / "k562" / "no_mt" / "seed1" / "fit_ridge.tsv", 4.0, 700.0, 1.0, 3.5)
    _bench(root / "k562" / "full" / "seed1" / "evaluate_ridge.tsv", 1.0, 300.0, 0.5, 0.5)
    _bench(root / "k562" / "split_seed1.tsv", 0.5, 100.0, 0.0, 0.4)
    out = tmp_path / "results" / "k562"
    for rel, size in (("raw/perturb_processed.h5ad", 100), ("full/seed1/predictions/ridge.h5ad", 10),
                      ("no_mt/seed1/predictions/ridge.h5ad", 12), ("full/seed1/models/ridge/work/x.bin", 5),
                      ("full/seed1/predictions/mean.h5ad", 99)):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"x" * size)
    table = collect(tmp_path).set_index(["dataset", "rule"])
    ridge = table.loc[("k562", "fit_predict:ridge")]
    assert (ridge.jobs, ridge.wall_s, ridge.cpu_s, ridge.max_rss_mib) == (2, 6.0, 5.0, 700.0)
    assert ridge.bytes_written == 27  # predictions and model files of ridge only
    assert table.loc[("k562", "simulate"), "bytes_written"] == 100
    assert set(table.index) == {("k562", r) for r in ("simulate", "fit_predict:ridge", "evaluate", "split")}
    (out / "prepared" / "cells.h5ad").parent.mkdir()
    (out / "prepared" / "cells.h5ad").write_bytes(b"x" * 40)
    (out / "full" / "seed1" / "metrics" / "ridge.tsv").parent.mkdir()
    (out / "full" / "seed1" / "metrics" / "ridge.tsv").write_bytes(b"x" * 3)
    disk = {row["rule"]: row["bytes_written"] for row in disk_rows(tmp_path / "results", "k562")}
    assert disk == {"k562/disk": 269, "k562/disk_runs": 129, "k562/prepared_cells": 40}


LOG = """localrule fit_predict:
    input: results/k562/full/pseudobulk.h5ad
    benchmark: results/benchmarks/k562/full/seed1/fit_ridge.tsv
    wildcards: dataset=k562, featureset=full, seed=1, model=ridge
    resources: tmpdir=/tmp, runtime=15, mem_mb=1250, mem=1.25 GB, mem_mib=1193
localrule split:
    benchmark: results/benchmarks/k562/split_seed1.tsv
    resources: tmpdir=/tmp
"""


def test_declared_resources_come_from_the_snakemake_log(tmp_path):
    log = tmp_path / ".snakemake" / "log" / "2026-01-01T000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text(LOG)
    asked = declared(tmp_path)
    assert asked["results/benchmarks/k562/full/seed1/fit_ridge.tsv"] == {"runtime": 15, "mem_mb": 1250}
    assert asked["results/benchmarks/k562/split_seed1.tsv"] == {}
    _bench(tmp_path / "results" / "benchmarks" / "k562" / "full" / "seed1" / "fit_ridge.tsv", 2.0, 500.0, 1.0, 1.5)
    _bench(tmp_path / "results" / "benchmarks" / "k562" / "no_mt" / "seed1" / "fit_ridge.tsv", 4.0, 700.0, 1.0, 3.5)
    ridge = collect(tmp_path).set_index(["dataset", "rule"]).loc[("k562", "fit_predict:ridge")]
    assert (ridge.max_wall_s, ridge.declared_mem_mb, ridge.declared_runtime_min) == (4.0, 1250, 15)


def test_rule_of_ignores_unknown_files(tmp_path):
    assert rule_of(tmp_path / "bench" / "x.tsv", tmp_path) is None
    assert rule_of(tmp_path / "k562" / "prepare.tsv", tmp_path) == ("k562", "prepare_dataset")


def test_job_counts_and_projection():
    config = {"datasets": {"a": {"source": "simulated"}, "b": {"source": "simulated", "split": {"kind": "cells"}}},
              "featuresets": ["full", "no_mt"], "seeds": [1, 2, 3], "models": {"mean": None, "ridge": None}}
    counts = job_counts(config).set_index(["kind", "rule"])["jobs"]
    assert counts[("condition", "fit_predict:ridge")] == 6
    assert counts[("condition", "evaluate")] == 12
    assert counts[("cells", "cell_split_data")] == 6
    assert ("condition", "cell_split_data") not in counts.index
    measured = pd.DataFrame([{"dataset": "k", "rule": "fit_predict:ridge", "jobs": 2, "wall_s": 7200.0,
                              "cpu_s": 3600.0, "max_rss_mib": 900.0, "bytes_written": 0.0}])
    table = project(measured, job_counts(config), {"condition": "k", "cells": "kc"}).set_index(["kind", "rule"])
    assert table.loc[("condition", "fit_predict:ridge"), "wall_h"] == pytest.approx(6.0)  # 6 jobs × 1 h
    assert table.loc[("condition", "fit_predict:ridge"), "cpu_h"] == pytest.approx(3.0)
    assert pd.isna(table.loc[("cells", "fit_predict:ridge"), "wall_h"])  # not measured: no cost
    assert table.loc[("all", "total"), "wall_h_8_cores"] == pytest.approx(6.0 / 8)
    assert table.loc[("all", "total"), "cpu_h_8_cores"] == pytest.approx(3.0 / 8)
