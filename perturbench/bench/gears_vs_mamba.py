"""Training cost of GEARS versus the dual-stream Mamba model, side by side on the same data.

Data: the real Norman 2019 cells subset (``$PERTURBENCH_SHARED_DATA`` or ``../shared/data``:
``norman2019_mcfaline2023_cells_subset.h5ad``, ``obs['dataset'] == 'norman19'``, control
``control``; GO table ``human_gene2go_2022.tsv.gz``) when present, else the demo simulation
(:func:`perturbench.data.simulate.write_simulated` with its GO-like table). A fixed split
(seed 0): 3 validation and 5 test conditions, the rest train. Both models get the same
``FitContext``: validation data, the GO Jaccard graph over the measured and target genes, the
GO table, the seed and device ``cpu``.

Each model is fitted in its own fresh process (so ``ru_maxrss`` is its own peak) with
``EPOCHS[0]`` and then ``EPOCHS[1]`` epochs; the per-epoch cost is the difference of the two fits
divided by the difference in epochs, which removes fixed costs (GEARS's graph files and data
processing, the Mamba model's graphs); ``setup_cpu_s`` is what remains of the shorter fit. An
"epoch" is each model's own: GEARS passes over every training cell and then scores the train
and validation sets; the Mamba model draws ``cells_per_epoch`` (control, perturbed) pairs.
``epoch_cells`` and ``cpu_s_per_1k_cells`` put them on a per-cell footing. torch runs
``THREADS`` thread(s) in both, so CPU seconds (user + system) measure the work and stay stable
on a shared machine, where wall seconds (``epoch_s``) grow with the load (``load_avg``, the
1-minute load average at the end of the longer fit). Columns: ``peak_rss_mib`` = the fit
process's ``ru_maxrss`` (imports and data included), ``base_rss_mib`` = its RSS after imports and
data loading, before fit; ``*_ratio`` = GEARS / Mamba.

Writes ``<out_dir>/gears_vs_mamba.tsv`` and prints it. Run: ``perturbench bench gears_vs_mamba``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perturbench.data.conditions import perturbed_genes
from perturbench.data.contract import PerturbDataset
from perturbench.data.io import write_text_atomic
from perturbench.data.store import load_dataset, save_dataset

MODELS = {"gears": {"go_graph": "dataset"}, "dual_stream_mamba": {}}  # registry name → extra params
EPOCHS = (1, 3)
THREADS = 1
N_VAL, N_TEST = 3, 5
COLUMNS = ["model", "dataset", "n_genes", "n_train_cells", "epoch_cells", "setup_cpu_s", "epoch_cpu_s", "epoch_s",
           "cpu_s_per_1k_cells", "epoch_cpu_ratio", "epoch_s_ratio", "base_rss_mib", "peak_rss_mib", "peak_rss_ratio",
           "threads", "load_avg"]
RATIOS = {"epoch_cpu_ratio": "epoch_cpu_s", "epoch_s_ratio": "epoch_s", "peak_rss_ratio": "peak_rss_mib"}
_REPO = Path(__file__).resolve().parents[2]
_MIB = 1024 * 1024


@dataclass(frozen=True)
class BenchData:
    """Where the worker processes find the data (all paths inside one scratch folder)."""

    label: str
    train_dir: Path
    val_dir: Path
    test: tuple[str, ...]
    go_table: Path
    go_graph: Path  # pickled perturbench.graphs.GeneGraph


def shared_data_dir() -> Path:
    return Path(os.environ.get("PERTURBENCH_SHARED_DATA", _REPO.parent / "shared" / "data"))


def _load_source(scratch: Path) -> tuple[str, PerturbDataset, Path]:
    """(label, dataset, GO table): the real Norman cells when present, else the demo simulation."""
    cells = shared_data_dir() / "norman2019_mcfaline2023_cells_subset.h5ad"
    table = shared_data_dir() / "human_gene2go_2022.tsv.gz"
    if cells.exists() and table.exists():
        from perturbench.data.cells import read_cells_h5ad

        ds = read_cells_h5ad(cells, name="norman19", control_label="control", keep={"dataset": "norman19"})
        return "norman19_cells", ds, table
    from perturbench.data.gears_source import load_gears_dataset
    from perturbench.data.simulate import SimulationConfig, write_simulated

    table = scratch / "sim_gene2go.tsv.gz"
    path = write_simulated(SimulationConfig.demo(), scratch / "sim.h5ad", go_path=table)
    return "simulated_demo", load_gears_dataset(path, name="simulated_demo"), table


def prepare_data(scratch: Path) -> BenchData:
    """Load the data, split it (seed 0), build the GO graph; save everything under ``scratch``."""
    from perturbench.graphs import go_similarity_graph, read_gene2go

    label, ds, table = _load_source(scratch)
    order = np.random.default_rng(0).permutation(len(ds.conditions))
    conds = [ds.conditions[i] for i in order]
    val, test, train = conds[:N_VAL], conds[N_VAL : N_VAL + N_TEST], conds[N_VAL + N_TEST :]
    save_dataset(ds.subset(train), scratch / "train")
    save_dataset(ds.subset(val), scratch / "val")
    genes = sorted(set(ds.genes) | set(perturbed_genes(ds.conditions)))
    graph = go_similarity_graph(read_gene2go(table), genes, top_k=20, min_weight=0.1)
    with (scratch / "go_graph.pkl").open("wb") as handle:
        pickle.dump(graph, handle)
    return BenchData(label, scratch / "train", scratch / "val", tuple(test), table, scratch / "go_graph.pkl")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MIB


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fit_in_this_process(model: str, epochs: int, data: BenchData) -> dict:
    """Fit ``model`` for ``epochs`` and predict the test conditions; time and memory of this process."""
    import torch

    from perturbench.models.base import FitContext
    from perturbench.models.registry import get_model

    torch.set_num_threads(THREADS)
    if model == "gears":
        import gears  # noqa: F401  (its import takes ~15 s; keep it out of the fit time)
    train, val = load_dataset(data.train_dir), load_dataset(data.val_dir)
    with data.go_graph.open("rb") as handle:
        graph = pickle.load(handle)
    with tempfile.TemporaryDirectory() as work:
        context = FitContext(seed=0, val=val, go_graph=graph, go_table=data.go_table, workdir=Path(work))
        fitted_model = get_model(model, epochs=epochs, **MODELS[model])
        base_rss, start, cpu = _rss_mib(), time.perf_counter(), _cpu_s()
        fitted = fitted_model.fit(train, context=context)
        fit_s, fit_cpu = time.perf_counter() - start, _cpu_s() - cpu
        fitted.predict(list(data.test))
    epoch_cells = train.cells.n_obs if model == "gears" else fitted_model.config.cells_per_epoch
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu, "base_rss_mib": base_rss, "epoch_cells": epoch_cells,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "n_train_cells": train.cells.n_obs, "n_genes": len(train.genes), "load_avg": os.getloadavg()[0]}


def _fit_in_child(model: str, epochs: int, data: BenchData) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_fit_in_this_process, model, epochs, data).result()


def measure(model: str, data: BenchData) -> dict:
    """One row: per-epoch cost from fits of ``EPOCHS[0]`` and ``EPOCHS[1]`` epochs in fresh processes."""
    short, long = (_fit_in_child(model, e, data) for e in EPOCHS)
    epoch_cpu = (long["fit_cpu_s"] - short["fit_cpu_s"]) / (EPOCHS[1] - EPOCHS[0])
    return {"model": model, "dataset": data.label, "n_genes": long["n_genes"], "n_train_cells": long["n_train_cells"],
            "epoch_cells": long["epoch_cells"], "setup_cpu_s": short["fit_cpu_s"] - EPOCHS[0] * epoch_cpu,
            "epoch_cpu_s": epoch_cpu, "epoch_s": (long["fit_s"] - short["fit_s"]) / (EPOCHS[1] - EPOCHS[0]),
            "cpu_s_per_1k_cells": 1000 * epoch_cpu / long["epoch_cells"], "base_rss_mib": long["base_rss_mib"],
            "peak_rss_mib": max(short["peak_rss_mib"], long["peak_rss_mib"]), "threads": THREADS,
            "load_avg": long["load_avg"]}


def run(out_dir: Path) -> pd.DataFrame:
    """Measure both models on the same data; write and print ``<out_dir>/gears_vs_mamba.tsv``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gears_vs_mamba-") as scratch:
        data = prepare_data(Path(scratch))
        rows = []
        for model in MODELS:
            rows.append(measure(model, data))
            print(f"[gears_vs_mamba] {rows[-1]}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).set_index("model")
    for ratio, column in RATIOS.items():
        table[ratio] = table[column] / table.loc["dual_stream_mamba", column]
    table = table.reset_index()[COLUMNS]
    write_text_atomic(out_dir / "gears_vs_mamba.tsv", table.to_csv(sep="\t", index=False, float_format="%.4g"))
    print(f"gears_vs_mamba on {data.label}: fits of {EPOCHS} epochs, {THREADS} torch thread(s), {os.cpu_count()} CPUs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return table
