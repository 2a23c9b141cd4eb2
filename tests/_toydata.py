"""Tiny synthetic Perturb-seq data for the baseline and model-contract tests.

24 measured genes; 6 of them (G00–G05) are perturbed, as singles and as pairs. Expression is
control + the sum of the single effects + a small interaction term, so the additive baseline
is close but not exact. Optionally cells (sparse log-normalized X) and a GO table.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.data.conditions import CTRL, targets
from perturbench.data.contract import PerturbDataset

GENES = [f"G{i:02d}" for i in range(24)]
SINGLES = GENES[:6]
COMBOS = ["G00+G01", "G00+G02", "G01+G03", "G02+G04", "G03+G05", "G04+G05", "G01+G02", "G00+G05"]
CONDITIONS = SINGLES + COMBOS


def toy_means(rng: np.random.Generator, conditions: list[str] = CONDITIONS) -> dict[str, np.ndarray]:
    """Condition → mean expression (ctrl included), all values ≥ 0.5."""
    ctrl = rng.uniform(2.0, 3.0, len(GENES))
    effect = {g: rng.normal(0.0, 0.4, len(GENES)) for g in SINGLES}
    means = {CTRL: ctrl}
    for cond in conditions:
        interaction = rng.normal(0.0, 0.1, len(GENES)) if len(targets(cond)) > 1 else 0.0
        means[cond] = ctrl + sum(effect.get(g, 0.0) for g in targets(cond)) + interaction
    return means


def toy_dataset(
    rng: np.random.Generator, *, cells_per_condition: int = 0, conditions: list[str] = CONDITIONS
) -> PerturbDataset:
    """A PerturbDataset over GENES; with ``cells_per_condition`` > 0 it carries cells too."""
    means = toy_means(rng, conditions)
    names = list(means)
    if not cells_per_condition:
        x = np.stack([means[c] for c in names])
        obs = pd.DataFrame({"n_cells": np.full(len(names), 50)}, index=pd.Index(names, dtype=str))
        pb = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(GENES, dtype=str)))
        return PerturbDataset("toy", pb, source="<toy>")
    labels = np.repeat(names, cells_per_condition)
    values = np.stack([means[c] for c in labels]) + rng.normal(0.0, 0.2, (len(labels), len(GENES)))
    values = np.clip(values, 0.0, None)
    cells = ad.AnnData(
        X=sp.csr_matrix(values.astype(np.float32)),
        obs=pd.DataFrame({"condition": labels}, index=pd.Index([f"cell{i}" for i in range(len(labels))], dtype=str)),
        var=pd.DataFrame(index=pd.Index(GENES, dtype=str)),
    )
    x = np.stack([values[labels == c].mean(axis=0) for c in names])
    obs = pd.DataFrame({"n_cells": np.full(len(names), cells_per_condition)}, index=pd.Index(names, dtype=str))
    pb = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(GENES, dtype=str)))
    return PerturbDataset("toy", pb, cells=cells, source="<toy>")


def write_go_table(path: Path, rng: np.random.Generator, *, terms_per_gene: int = 4, n_terms: int = 12) -> Path:
    """A gene2go TSV (header ``entrez symbol go_id evidence ontology``) over GENES."""
    rows = []
    for i, gene in enumerate(GENES):
        for term in rng.choice(n_terms, size=terms_per_gene, replace=False):
            rows.append((i + 1, gene, f"GO:{term:07d}", "IDA", "BP"))
    frame = pd.DataFrame(rows, columns=["entrez", "symbol", "go_id", "evidence", "ontology"])
    frame.to_csv(path, sep="\t", index=False)
    return path
