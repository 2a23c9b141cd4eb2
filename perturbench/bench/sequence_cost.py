"""Cost of the knowledge stream's sequence encoder at the token resolutions of the component ablation.

For the two real Norman scales — pseudobulk (2,000 genes, ``batch_size`` 4 conditions per step)
and cells (500 genes, ``cell_batch_size`` 32 cell pairs per step) — and ``n_tokens`` ∈ {16, 64,
256, one per gene (2,048 / 512 after padding)}, one training step (forward + backward) of the whole
:class:`~perturbench.models.dual_stream_net.DualStreamNet` (default config) is timed with
``encoder`` = mamba and = attention, side by side in one process: built with the same seed on the
same random graphs and inputs, timed alternately ``REPEATS`` times after one warm-up, median
reported; ``encoder="none"`` is timed once per scale as the floor.

- ``epoch_s`` = median step wall seconds × steps per epoch (``STEPS_PER_EPOCH``: the seed-1 split of
  the real data: ⌈training conditions / 4⌉, resp. ``cells_per_epoch / cell_batch_size``);
- ``activation_mib``: bytes of the tensors autograd saves for the backward pass during one forward
  (``torch.autograd.graph.saved_tensors_hooks``, distinct storages, parameters excluded) — the
  memory a training step holds at its peak beyond the weights, comparable within one process;
- ``cuda_peak_mib``: ``torch.cuda.max_memory_allocated`` of the step on a GPU (empty on CPU).

One torch thread (the workflow's fit jobs run with one). Writes ``<out_dir>/sequence_cost.tsv``
and prints it. Run: ``perturbench bench sequence_cost``.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from perturbench.data.io import write_text_atomic
from perturbench.models.dual_stream_net import DualStreamConfig, DualStreamNet, NetGraphs, NetInput
from perturbench.models.sequence import token_layout

# scale → (genes, samples per step, training steps per epoch)
SCALES = {"norman_pseudobulk": (2000, 4, 29), "norman_cells": (500, 32, 32)}
TOKENS: tuple[int | str, ...] = (16, 64, 256, "per_gene")
ENCODERS = ("mamba", "attention")
REPEATS = 3
NEIGHBOURS = 10  # random graph: out-edges per node
COLUMNS = ["scale", "n_genes", "batch_size", "n_tokens", "sequence_length", "genes_per_token", "encoder",
           "n_params", "step_s", "step_cpu_s", "steps_per_epoch", "epoch_s", "activation_mib", "cuda_peak_mib",
           "device", "load_avg"]


def _graph(n_nodes: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.arange(n_nodes).repeat_interleave(NEIGHBOURS)
    dst = torch.randint(0, n_nodes, (n_nodes * NEIGHBOURS,), generator=gen)
    return torch.stack([src, dst]), torch.rand(src.numel(), generator=gen)


def _problem(n_genes: int, batch: int) -> tuple[NetGraphs, NetInput, torch.Tensor]:
    """Random graphs over G genes (vocabulary = the genes), one batch of inputs and targets."""
    gen = torch.Generator().manual_seed(0)
    edges, weight = _graph(n_genes, gen)
    graphs = NetGraphs(n_genes, n_genes, edges, weight, edges, weight, torch.randperm(n_genes, generator=gen))
    pert = torch.zeros(batch, n_genes)
    pert[torch.arange(batch), torch.randint(0, n_genes, (batch,), generator=gen)] = 1.0
    inp = NetInput(torch.randn(batch, n_genes, generator=gen), torch.randn(batch, n_genes, generator=gen), pert,
                   pert.clone(), pert.clone(), pert.clone())
    return graphs, inp, torch.randn(batch, n_genes, generator=gen)


def _activation_bytes(net: DualStreamNet, inp: NetInput) -> int:
    """Distinct non-parameter storages autograd saves for backward during one forward pass."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(inp)
    return sum(saved.values())


def _step(net: DualStreamNet, inp: NetInput, y: torch.Tensor) -> tuple[float, float, float]:
    """Wall s, CPU s and CUDA peak MiB (NaN on CPU) of one forward + backward pass."""
    net.zero_grad(set_to_none=True)
    cuda = y.is_cuda
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), time.process_time()
    mu, logvar, kl = net(inp)
    ((mu - y).pow(2).mean() + kl + logvar.mean()).backward()
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return time.perf_counter() - wall, time.process_time() - cpu, peak


def _measure(nets: dict[str, DualStreamNet], inp: NetInput, y: torch.Tensor) -> dict[str, tuple[float, ...]]:
    """Median (wall, cpu, cuda peak) per net, timed alternately after one warm-up round."""
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in nets}
    for repeat in range(REPEATS + 1):
        for name, net in nets.items():
            measured = _step(net, inp, y)
            if repeat:
                times[name].append(measured)
    return {name: tuple(statistics.median(v[i] for v in vals) for i in range(3)) for name, vals in times.items()}


def scale_rows(scale: str, device: torch.device) -> list[dict]:
    """Rows of one scale: every (n_tokens, encoder) pair, plus encoder none."""
    n_genes, batch, steps = SCALES[scale]
    graphs, inp, y = _problem(n_genes, batch)
    inp, y = inp.to(device), y.to(device)
    rows = []
    for tokens in (*TOKENS, None):
        encoders = ENCODERS if tokens is not None else ("none",)
        nets = {}
        for enc in encoders:
            torch.manual_seed(0)
            config = DualStreamConfig(encoder=enc, n_tokens=tokens if tokens is not None else 64)
            nets[enc] = DualStreamNet(config, graphs).to(device).train()
        length, per_token = token_layout(tokens, n_genes) if tokens is not None else (None, None)
        for enc, (wall, cpu, peak) in _measure(nets, inp, y).items():
            rows.append({"scale": scale, "n_genes": n_genes, "batch_size": batch, "n_tokens": tokens,
                         "sequence_length": length, "genes_per_token": per_token, "encoder": enc,
                         "n_params": sum(p.numel() for p in nets[enc].parameters()), "step_s": wall,
                         "step_cpu_s": cpu, "steps_per_epoch": steps, "epoch_s": wall * steps,
                         "activation_mib": _activation_bytes(nets[enc], inp) / 2**20, "cuda_peak_mib": peak,
                         "device": device.type, "load_avg": os.getloadavg()[0]})
    return rows


def run(out_dir: Path) -> pd.DataFrame:
    """Measure every scale; write and print ``<out_dir>/sequence_cost.tsv``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [row for scale in SCALES for row in scale_rows(scale, device)]
    finally:
        torch.set_num_threads(previous)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["n_tokens"] = table["n_tokens"].astype(object).where(table["n_tokens"].notna(), "")
    write_text_atomic(Path(out_dir) / "sequence_cost.tsv", table.to_csv(sep="\t", index=False, float_format="%.4g"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return table
