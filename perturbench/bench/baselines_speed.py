"""Speed of the closed-form baselines on a Norman-sized problem (target: all together ≤ 5 s on 2 cores).

Problem (seeded, synthetic): 5,000 measured genes, 105 perturbed genes, 240 training
conditions (100 singles + 140 pairs of seen genes), 65 conditions to predict (5 unseen singles
+ 60 pairs), and a GO-like graph over the measured genes: a Zipf-distributed table of 4,000
terms (≈14 terms per gene, the most frequent term on ~40% of genes, like ``protein binding``)
turned into a GEARS-style Jaccard graph with :func:`perturbench.graphs.go_similarity_graph`
(top 20 neighbours, J > 0.1), passed to the models as ``FitContext.go_graph``.

Rows: one per baseline (``fit_s``, ``predict_s``, wall ``seconds`` = fit + predict, CPU seconds
of all threads, 1-minute load average after it), then ``all_baselines`` (their sum, against
``TARGET_SECONDS``) and ``go_graph_5k`` (building the graph; not part of any fit). When the real
GO table is present (``$PERTURBENCH_SHARED_DATA``, default ``<repo>/../shared/data``) a row
``go_graph_full_table`` times the GEARS-style graph over all of its genes. Timings on a shared
machine are noisy: compare ``cpu_seconds`` with ``seconds`` and look at ``load_avg``.

Writes and prints ``<out_dir>/baselines_speed.tsv``. Run: ``perturbench bench baselines_speed``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from perturbench.data.conditions import CTRL, targets
from perturbench.data.contract import PerturbDataset
from perturbench.data.io import write_text_atomic
from perturbench.graphs import GeneGraph, go_similarity_graph, read_gene2go
from perturbench.models.base import FitContext
from perturbench.models.registry import get_model
from perturbench.provenance import measured

CLOSED_FORM = ("control", "mean", "additive", "ridge", "grn_ridge", "two_stage", "linear_embedding")
COLUMNS = ["step", "fit_s", "predict_s", "seconds", "cpu_seconds", "load_avg"]
TARGET_SECONDS = 5.0
N_GENES, N_PERT, N_SINGLES, N_PAIRS, N_TEST_PAIRS = 5000, 105, 100, 140, 60
N_TERMS = 4000
SHARED_GO_TABLE = "human_gene2go_2022.tsv.gz"


def norman_sized(seed: int = 0) -> tuple[PerturbDataset, list[str]]:
    """(training dataset with ctrl + 240 conditions, the 65 conditions to predict)."""
    rng = np.random.default_rng(seed)
    genes = [f"GENE{i:05d}" for i in range(N_GENES)]
    pert = [genes[i] for i in np.sort(rng.choice(N_GENES, size=N_PERT, replace=False))]
    seen, unseen = pert[:N_SINGLES], pert[N_SINGLES:]
    pairs = sorted({"+".join(sorted(rng.choice(seen, size=2, replace=False))) for _ in range(4 * N_PAIRS)})
    picked = rng.permutation(pairs)[: N_PAIRS + N_TEST_PAIRS]
    train_pairs, test_pairs = sorted(picked[:N_PAIRS]), sorted(picked[N_PAIRS:])
    ctrl = rng.uniform(0.0, 3.0, N_GENES)
    effect = {g: rng.normal(0.0, 0.3, N_GENES) * (rng.random(N_GENES) < 0.2) for g in pert}
    conditions = [CTRL, *seen, *train_pairs]
    rows = [ctrl + sum((effect[g] for g in targets(c)), np.zeros(N_GENES)) for c in conditions]
    x = np.stack(rows) + rng.normal(0.0, 0.05, (len(rows), N_GENES))
    obs = pd.DataFrame({"n_cells": 100}, index=pd.Index(conditions, dtype=str))
    pb = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    return PerturbDataset("norman_sized", pb, source="<baselines_speed>"), [*unseen, *test_pairs]


def go_like_table(genes: list[str], seed: int = 0) -> dict[str, frozenset[str]]:
    """Gene → GO-like term set: 1 + Poisson(13) draws from Zipf(1.1) term frequencies."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, N_TERMS + 1) ** 1.1
    freq[0] = 0.4 * freq.sum()  # one near-universal term
    freq /= freq.sum()
    sizes = 1 + rng.poisson(13, len(genes))
    draws = rng.choice(N_TERMS, size=int(sizes.sum()), p=freq)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return {g: frozenset(f"GO:{t:07d}" for t in draws[bounds[i] : bounds[i + 1]]) for i, g in enumerate(genes)}


def _timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    with measured() as cost:
        out = fn()
    return out, cost["wall_s"], cost["cpu_s"]


def measure(name: str, train: PerturbDataset, test: list[str], graph: GeneGraph) -> dict[str, float | str]:
    """Fit + predict one baseline; wall and CPU seconds."""
    model = get_model(name)
    _, fit_s, fit_cpu = _timed(lambda: model.fit(train, context=FitContext(go_graph=graph)))
    _, predict_s, predict_cpu = _timed(lambda: model.predict(test))
    return {"step": name, "fit_s": fit_s, "predict_s": predict_s, "seconds": fit_s + predict_s,
            "cpu_seconds": fit_cpu + predict_cpu, "load_avg": os.getloadavg()[0]}


def _graph_row(step: str, build: Callable[[], GeneGraph]) -> dict[str, float | str]:
    _, seconds, cpu = _timed(build)
    return {"step": step, "fit_s": np.nan, "predict_s": np.nan, "seconds": seconds, "cpu_seconds": cpu,
            "load_avg": os.getloadavg()[0]}


def run(out_dir: Path) -> pd.DataFrame:
    """Time every closed-form baseline; write and print ``<out_dir>/baselines_speed.tsv``."""
    train, test = norman_sized()
    table = go_like_table(train.genes)
    graph = go_similarity_graph(table, train.genes, top_k=20, min_weight=0.1)
    rows = [measure(name, train, test, graph) for name in CLOSED_FORM]
    total = {k: sum(r[k] for r in rows) for k in ("fit_s", "predict_s", "seconds", "cpu_seconds")}
    rows.append({"step": "all_baselines", **total, "load_avg": os.getloadavg()[0]})
    rows.append(_graph_row("go_graph_5k", lambda: go_similarity_graph(table, train.genes, top_k=20, min_weight=0.1)))
    shared = Path(os.environ.get("PERTURBENCH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if (shared / SHARED_GO_TABLE).exists():
        full = read_gene2go(shared / SHARED_GO_TABLE)
        rows.append(_graph_row("go_graph_full_table", lambda: go_similarity_graph(full, top_k=20, min_weight=0.1)))
    frame = pd.DataFrame(rows)[COLUMNS]
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "baselines_speed.tsv", frame.to_csv(sep="\t", index=False, float_format="%.4g"))
    n_edges = len(graph.src)
    print(f"baselines_speed: {N_GENES} genes, {N_PERT} perturbed genes, {len(train.conditions)} training and "
          f"{len(test)} test conditions, GO-like graph of {n_edges} edges; {os.cpu_count()} CPUs; "
          f"target all_baselines <= {TARGET_SECONDS:g} s")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return frame
