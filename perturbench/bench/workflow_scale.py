"""The whole workflow at Replogle-K562 size, and what the full benchmark would cost.

Runs Snakemake on ``workflow/config/workflow_scale.yaml`` (the ``k562`` simulated preset, 160k
cells × 5k genes, with the GEARS simulation split and as ``k562_cells`` with the cell split; one
seed, three feature sets) in ``<out_dir>/workflow_scale/`` and reads every job's Snakemake
``benchmark`` file. Writes:

- ``workflow_scale.tsv``: one row per dataset and rule (fits per model): ``rule`` (``dataset/rule``
  or ``dataset/fit_predict:model``), ``jobs``, ``wall_s`` and ``cpu_s`` (sums over the jobs),
  ``max_rss_mib`` (the largest job), ``bytes_written`` (its output files on disk), plus rows
  ``<dataset>/disk`` (bytes under ``results/<dataset>``; :func:`disk_rows` adds ``disk_runs`` and
  ``prepared_cells``) and ``total`` (end-to-end wall seconds of
  the Snakemake call in ``wall_s``); then, to check the rules' requests, ``max_wall_s`` (the
  slowest job), ``declared_mem_mb`` and ``declared_runtime_min`` (the largest ``mem_mb`` /
  ``runtime`` Snakemake gave the rule's jobs, read from its logs; empty for jobs without one);
- ``workflow_scale_projection.tsv``: ``snakemake --cores 8 all`` on ``config.yaml`` on CPU — per
  rule, the job count of that config × the measured mean cost per job (condition-split datasets
  from ``k562``, cell-split ones from ``k562_cells``): ``jobs``, ``cpu_h``, ``max_rss_mib``; and a
  ``total`` row whose ``wall_h_8_cores`` is Σ job wall / 8 (perfect packing: a lower bound) and
  ``cpu_h_8_cores`` Σ job CPU / 8 (the same on an idle machine, where single-threaded jobs'
  wall ≈ CPU; on a shared machine the measured walls include waiting for a core).
  Models the run did not measure (e.g. GEARS, left out on CPU) get no cost and are listed with
  ``jobs`` only. GPU figures need a GPU run and are not projected here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from perturbench.data.io import atomic_path
from perturbench.workflow import model_runs, runs_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "workflow" / "config" / "workflow_scale.yaml"
FULL_CONFIG = REPO / "workflow" / "config" / "config.yaml"
COLUMNS = ["rule", "jobs", "wall_s", "cpu_s", "max_rss_mib", "bytes_written"]
CHECK_COLUMNS = ["max_wall_s", "declared_mem_mb", "declared_runtime_min"]
_RESOURCE = re.compile(r"\b(runtime|mem_mb)=(\d+)")
_FILE_RULES = {"simulate": "simulate", "prepare": "prepare_dataset", "featureset": "featureset",
               "go_graph": "go_graph", "cell_split_data": "cell_split_data", "summarize": "summarize"}


def rule_of(path: Path, root: Path) -> tuple[str, str] | None:
    """(dataset, rule label) of a benchmark file ``root/{dataset}/.../{stem}.tsv``; None otherwise."""
    parts = path.relative_to(root).parts
    stem = path.stem
    if len(parts) < 2:
        return None
    if stem.startswith("fit_"):
        return parts[0], f"fit_predict:{stem[4:]}"
    if stem.startswith("evaluate_"):
        return parts[0], "evaluate"
    if re.fullmatch(r"split_seed\d+", stem):
        return parts[0], "split"
    return (parts[0], _FILE_RULES[stem]) if stem in _FILE_RULES else None


def _outputs(rule: str) -> list[str]:
    """Globs (under ``results/{dataset}``) of the files a rule writes."""
    if rule.startswith("fit_predict:"):
        model = rule.split(":", 1)[1]
        return [f"*/seed*/predictions/{model}.h5ad", f"*/seed*/models/{model}/**/*"]
    return {"simulate": ["raw/*"], "prepare_dataset": ["prepared/*.h5ad"], "split": ["splits/*"],
            "featureset": ["*/pseudobulk.h5ad", "*/cells_ref.json", "*/featureset.json"],
            "go_graph": ["go_graph.npz"], "cell_split_data": ["*/seed*/cellsplit/**/*"],
            "evaluate": ["*/seed*/metrics/*.tsv"], "summarize": ["summary.tsv", "conditions.tsv"]}.get(rule, [])


def output_bytes(results: Path, dataset: str, rule: str) -> int:
    """Bytes of the files ``rule`` wrote for ``dataset`` (Snakemake's ``io_out`` reads 0 in
    containers without I/O counters, so outputs are measured on disk)."""
    return _bytes({f for pattern in _outputs(rule) for f in (results / dataset).glob(pattern)})


def declared(workdir: Path) -> dict[str, dict[str, int]]:
    """Benchmark path → the ``mem_mb`` / ``runtime`` Snakemake declared for that job, from the
    logs in ``workdir/.snakemake/log`` (a later run's entry replaces an earlier one's)."""
    out: dict[str, dict[str, int]] = {}
    for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        bench = None
        for line in log.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("benchmark:"):
                bench = line.split(":", 1)[1].strip()
            elif line.startswith("resources:") and bench:
                out[bench] = {k: int(v) for k, v in _RESOURCE.findall(line)}
                bench = None
    return out


def collect(workdir: Path) -> pd.DataFrame:
    """One row per (dataset, rule) from the Snakemake benchmark files under ``workdir``."""
    root = workdir / "results" / "benchmarks"
    requests = declared(workdir)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        key = rule_of(path, root)
        if key is None:
            continue
        bench = pd.read_csv(path, sep="\t").iloc[-1]
        asked = requests.get(str(path.relative_to(workdir)), {})
        rows.append({"dataset": key[0], "rule": key[1], "wall_s": float(bench["s"]),
                     "cpu_s": float(bench["cpu_time"]), "max_rss_mib": float(bench["max_rss"]),
                     "mem_mb": asked.get("mem_mb"), "runtime": asked.get("runtime")})
    jobs = pd.DataFrame(rows, columns=["dataset", "rule", "wall_s", "cpu_s", "max_rss_mib", "mem_mb", "runtime"])
    table = jobs.groupby(["dataset", "rule"], sort=True).agg(
        jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
        max_rss_mib=("max_rss_mib", "max"), max_wall_s=("wall_s", "max"),
        declared_mem_mb=("mem_mb", "max"), declared_runtime_min=("runtime", "max")).reset_index()
    table["bytes_written"] = [output_bytes(workdir / "results", d, r) for d, r in zip(table["dataset"], table["rule"])]
    return table


def _bytes(files: Iterable[Path]) -> int:
    """Bytes of the plain files among ``files`` (links and folders count 0)."""
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())


def disk_rows(results: Path, dataset: str) -> list[dict]:
    """Disk of one dataset: ``disk`` (everything under ``results/<dataset>``), ``disk_runs`` (what
    the runs wrote: predictions, model folders, metrics — grows with runs × seeds × feature sets)
    and ``prepared_cells`` (the prepared cells file, the yardstick of the disk target)."""
    folder = results / dataset
    runs = [f for kind in ("predictions", "models", "metrics") for f in folder.glob(f"*/seed*/{kind}/**/*")]
    cells = folder / "prepared" / "cells.h5ad"
    return [{"rule": f"{dataset}/disk", "bytes_written": _bytes(folder.rglob("*"))},
            {"rule": f"{dataset}/disk_runs", "bytes_written": _bytes(runs)},
            {"rule": f"{dataset}/prepared_cells", "bytes_written": _bytes([cells])}]


def job_counts(config: dict) -> pd.DataFrame:
    """Jobs per (split kind, rule) of ``snakemake all`` on ``config`` (without report/download)."""
    rows = []
    n_fs, n_seeds = len(config["featuresets"]), len(config["seeds"])
    for name, spec in config["datasets"].items():
        kind = "cells" if spec.get("split", {}).get("kind") == "cells" else "condition"
        per_ds = {"prepare_dataset": 1, "featureset": n_fs, "split": n_seeds, "go_graph": 1, "summarize": 1}
        if kind == "cells":
            per_ds["cell_split_data"] = n_fs * n_seeds
        n_eval = 0
        for fs in config["featuresets"]:
            for run in runs_for(config, name, fs):
                model = model_runs(config)[run]["model"]
                per_ds[f"fit_predict:{model}"] = per_ds.get(f"fit_predict:{model}", 0) + n_seeds
                n_eval += n_seeds
        per_ds["evaluate"] = n_eval
        rows += [{"kind": kind, "rule": rule, "jobs": n} for rule, n in per_ds.items()]
    return pd.DataFrame(rows).groupby(["kind", "rule"], sort=True)["jobs"].sum().reset_index()


def project(measured: pd.DataFrame, counts: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Job counts × measured mean wall / CPU per job; ``kinds`` maps split kind → measured dataset."""
    rows = []
    for kind, rule, jobs in counts.itertuples(index=False):
        base = measured[(measured["dataset"] == kinds[kind]) & (measured["rule"] == rule)]
        if base.empty:
            rows.append({"kind": kind, "rule": rule, "jobs": jobs})
            continue
        b = base.iloc[0]
        rows.append({"kind": kind, "rule": rule, "jobs": jobs, "wall_h": jobs * b.wall_s / b.jobs / 3600,
                     "cpu_h": jobs * b.cpu_s / b.jobs / 3600, "max_rss_mib": b.max_rss_mib})
    table = pd.DataFrame(rows)
    total = {"kind": "all", "rule": "total", "jobs": int(table["jobs"].sum()), "wall_h": table["wall_h"].sum(),
             "cpu_h": table["cpu_h"].sum(), "max_rss_mib": table["max_rss_mib"].max(),
             "wall_h_8_cores": table["wall_h"].sum() / 8, "cpu_h_8_cores": table["cpu_h"].sum() / 8}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def run_workflow(workdir: Path, cores: int, mem_mb: int) -> float:
    """Snakemake on :data:`CONFIG` in ``workdir``; returns the wall seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(CONFIG), "--cores", str(cores), "--resources", f"mem_mb={mem_mb}",
           "--rerun-incomplete", "all"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def _write(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def run(out_dir: str | Path, *, cores: int = 2, mem_mb: int = 14000) -> Path:
    """Run the workflow and write both tables (module docstring); returns the main TSV."""
    out_dir = Path(out_dir)
    wall = run_workflow(out_dir / "workflow_scale", cores, mem_mb)
    return write_tables(out_dir, wall)


def write_tables(out_dir: Path, wall: float) -> Path:
    """Both tables from the run in ``out_dir/workflow_scale`` that took ``wall`` seconds."""
    workdir = out_dir / "workflow_scale"
    measured = collect(workdir)
    config = yaml.safe_load(CONFIG.read_text())
    table = measured.assign(rule=measured["dataset"] + "/" + measured["rule"])[COLUMNS + CHECK_COLUMNS]
    disk = [row for d in config["datasets"] for row in disk_rows(workdir / "results", d)]
    total = {"rule": "total", "jobs": int(table["jobs"].sum()), "wall_s": wall, "cpu_s": table["cpu_s"].sum(),
             "max_rss_mib": table["max_rss_mib"].max(), "bytes_written": table["bytes_written"].sum()}
    table = pd.concat([table, pd.DataFrame(disk + [total])], ignore_index=True)
    _write(table, out_dir / "workflow_scale.tsv")
    counts = job_counts(yaml.safe_load(FULL_CONFIG.read_text()))
    _write(project(measured, counts, {"condition": "k562", "cells": "k562_cells"}),
           out_dir / "workflow_scale_projection.tsv")
    return out_dir / "workflow_scale.tsv"
