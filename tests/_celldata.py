"""Tiny synthetic Perturb-seq data shared by test_cells, test_de and test_features."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

PLANTED = "G3"  # strongly up in every cell of condition "A"


def shared_data(filename: str) -> Path:
    """Path of a real data file in the shared folder, or skip the test when it is absent."""
    root = Path(
        os.environ.get(
            "PERTURBENCH_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
        )
    )
    path = root / filename
    if not path.exists():
        pytest.skip(f"real data file {path} not present (set PERTURBENCH_SHARED_DATA)")
    return path


def make_cells(
    rng: np.random.Generator,
    *,
    genes: list[str] | None = None,
    control_label: str = "ctrl",
    groups: dict[str, int] | None = None,
) -> ad.AnnData:
    """Log-normalized cells: Poisson counts, normalized to 1e4 per cell, log1p; gene ``G3``
    (or the fourth gene) gets +40 counts in condition ``A``. Sparse CSR float32 X."""
    genes = genes or [f"G{i}" for i in range(12)]
    groups = groups or {control_label: 20, "A": 10, "B+A": 8, "B": 9}
    labels = [c for c, k in groups.items() for _ in range(k)]
    counts = rng.poisson(3.0, size=(len(labels), len(genes))).astype(np.float64)
    counts[:, -1] = 0.0  # a gene never detected
    counts[np.array(labels) == "A", 3] += 40
    x = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    obs = pd.DataFrame({"condition": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(len(labels))])
    return ad.AnnData(sp.csr_matrix(x.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))
