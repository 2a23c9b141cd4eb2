"""Cost of the dual-stream Mamba model: sequence scaling against attention, and one Norman-scale epoch.

(a) ``scaling``: one forward + backward step of the knowledge stream's sequence encoder over a
    sequence of one token per gene, for 1000, 2000 and 4000 genes, side by side in one process:
    the bidirectional Mamba encoder (:class:`~perturbench.models.scan.BiMambaEncoder`, default
    :class:`~perturbench.models.dual_stream_net.DualStreamConfig` widths, mambapy parallel scan on
    CPU) and an attention stream of the same width (``nn.TransformerEncoderLayer``, ``n_layers``
    layers, 2 heads, feed-forward 2·D). The two are timed alternately, ``REPEATS`` times after one
    warm-up, and the median is reported. Expected: Mamba ≈ linear (t(4000)/t(1000) ≤ 5; the
    parallel scan pads 1000 → 1024, 4000 → 4096), attention ≈ quadratic (ratio near 16).
(b) ``epoch``: one training epoch of ``DualStreamMambaModel`` (default config) at Norman scale on
    delta-only pseudobulk data — ``N_GENES`` genes, ``N_TRAIN`` training conditions (singles and
    pairs of simulated low-rank effects), validation off — in a fresh process (so ``ru_maxrss`` is
    its own peak). ``wall_s`` = fit(1 epoch) − fit(0 epochs), the graph/prior set-up being
    reported as ``setup_s``. Target: ≤ 60 s on 2 cores.

Both parts run with 1 and with 2 torch threads (``threads``). ``cpu_s`` (user + system of the
process) measures the work; wall seconds grow with the machine's load (``load_avg``, 1-minute
load average when the row was measured): on a shared machine 2 threads can be much slower than 1,
because the scan's many small kernels synchronise the threads at every step.
Writes ``<out_dir>/mamba_cost.tsv`` and prints it. Run: ``perturbench bench mamba_cost``.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn

from perturbench.data.contract import PerturbDataset
from perturbench.data.io import write_text_atomic
from perturbench.models.base import FitContext
from perturbench.models.dual_stream import DualStreamMambaModel
from perturbench.models.dual_stream_net import DualStreamConfig
from perturbench.models.scan import BiMambaEncoder
from perturbench.provenance import measured

GENE_COUNTS = (1000, 2000, 4000)
BATCH = 2
REPEATS = 5
THREAD_COUNTS = (1, 2)  # each part runs at each torch thread count
N_GENES, N_SINGLES, N_PAIRS = 5000, 100, 140  # ≈ Norman: ~240 training conditions
EPOCH_TARGET_S = 60.0
COLUMNS = ["part", "stream", "n_genes", "n_conditions", "batch_size", "wall_s", "cpu_s", "ratio_to_1000",
           "setup_s", "peak_rss_mib", "target", "threads", "load_avg"]


def _attention_stream(config: DualStreamConfig) -> nn.Module:
    layer = nn.TransformerEncoderLayer(config.d_model, nhead=2, dim_feedforward=2 * config.d_model,
                                       dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=config.n_layers, enable_nested_tensor=False)


def _step(module: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Wall and CPU seconds of one forward + backward pass."""
    module.zero_grad(set_to_none=True)
    with measured() as cost:
        module(x).square().mean().backward()
    return cost["wall_s"], cost["cpu_s"]


def scaling_rows(config: DualStreamConfig) -> list[dict]:
    """Part (a): median step times of both streams per gene count, timed alternately."""
    torch.manual_seed(0)
    streams = {"mamba": BiMambaEncoder(config.mamba()), "attention": _attention_stream(config)}
    rows = []
    for n_genes in GENE_COUNTS:
        x = torch.randn(BATCH, n_genes, config.d_model)  # (batch, L = genes, D)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in streams}
        for repeat in range(REPEATS + 1):
            for name, module in streams.items():
                measured = _step(module, x)
                if repeat:  # the first round warms up
                    times[name].append(measured)
        for name, pairs in times.items():
            rows.append({"part": "scaling", "stream": name, "n_genes": n_genes, "n_conditions": None,
                         "batch_size": BATCH, "wall_s": statistics.median(p[0] for p in pairs),
                         "cpu_s": statistics.median(p[1] for p in pairs), "threads": torch.get_num_threads(),
                         "load_avg": os.getloadavg()[0]})
    for row in rows:
        base = next(r for r in rows if r["stream"] == row["stream"] and r["n_genes"] == GENE_COUNTS[0])
        row["ratio_to_1000"] = row["wall_s"] / base["wall_s"]
        row["target"] = "ratio(4000) <= 5" if row["stream"] == "mamba" else "reference (~quadratic)"
    return rows


def norman_scale_data(seed: int = 0) -> PerturbDataset:
    """Delta-only pseudobulk: N_SINGLES singles and N_PAIRS pairs over N_GENES genes, rank-8 effects."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:05d}" for i in range(N_GENES)]
    basis = rng.normal(0.0, 0.3, (8, N_GENES))
    effect = {g: rng.normal(0.0, 1.0, 8) @ basis for g in genes[:N_SINGLES]}
    pairs = {tuple(sorted(rng.choice(N_SINGLES, 2, replace=False))) for _ in range(4 * N_PAIRS)}
    names = genes[:N_SINGLES] + [f"{genes[a]}+{genes[b]}" for a, b in sorted(pairs)[:N_PAIRS]]
    rows = [np.zeros(N_GENES)] + [sum(effect[g] for g in c.split("+")) for c in names]
    x = np.vstack(rows) + rng.normal(0.0, 0.05, (len(rows), N_GENES)) * (np.arange(len(rows)) > 0)[:, None]
    pb = ad.AnnData(X=x.astype(np.float32), obs=pd.DataFrame(index=["ctrl", *names]), var=pd.DataFrame(index=genes))
    return PerturbDataset("norman_scale", pb, None, True, "<mamba_cost simulation>")


def _fit_seconds(data: PerturbDataset, epochs: int) -> tuple[float, float]:
    with measured() as cost:
        DualStreamMambaModel(epochs=epochs).fit(data, context=FitContext(seed=0))
    return cost["wall_s"], cost["cpu_s"]


def epoch_row(threads: int) -> dict:
    """Part (b), run in a fresh process: one default-config epoch at Norman scale."""
    torch.set_num_threads(threads)
    data = norman_scale_data()
    setup_wall, setup_cpu = _fit_seconds(data, 0)
    wall, cpu = _fit_seconds(data, 1)
    return {"part": "epoch", "stream": "dual_stream_mamba", "n_genes": N_GENES, "n_conditions": len(data.conditions),
            "batch_size": DualStreamConfig().batch_size, "wall_s": wall - setup_wall, "cpu_s": cpu - setup_cpu,
            "setup_s": setup_wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "target": f"wall_s <= {EPOCH_TARGET_S:g}", "threads": threads, "load_avg": os.getloadavg()[0]}


def _scaling_with_threads(threads: int) -> list[dict]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return scaling_rows(DualStreamConfig())
    finally:
        torch.set_num_threads(previous)


def run(out_dir: Path) -> pd.DataFrame:
    """Measure (a) and (b) at each thread count; write and print ``<out_dir>/mamba_cost.tsv``."""
    rows = []
    for threads in THREAD_COUNTS:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(epoch_row, threads).result())
        print(f"[mamba_cost] {rows[-1]}", file=sys.stderr, flush=True)
        rows.extend(_scaling_with_threads(threads))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS).sort_values(["part", "threads"], kind="stable")
    write_text_atomic(Path(out_dir) / "mamba_cost.tsv", table.to_csv(sep="\t", index=False, float_format="%.4g"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return table
