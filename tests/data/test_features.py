"""Feature sets: which genes each removes, DE lists re-derived, record, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _celldata import make_cells

from perturbench.data.cells import dataset_from_cells
from perturbench.data.contract import PerturbDataset
from perturbench.data.de import annotate_de
from perturbench.data.features import FEATURE_SETS, apply_feature_set, removed_genes
from perturbench.data.io import write_h5ad_atomic

NAMED = [
    "MT-CO1",
    "MT-ND4",
    "RPL13",
    "RPS6",
    "RPLP0",
    "RPSA",
    "RPS4X",
    "RPL22L1",
    "RPL36AL",
    "MRPL12",
    "MRPS7",
    "RPS6KA1",
    "RPL13AP5",
    "GAPDH",
    "MTOR",
    "ACTB",
]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


def test_feature_set_names() -> None:
    assert sorted(FEATURE_SETS) == ["full", "no_mt", "no_mt_ribo"]


def test_full_removes_nothing() -> None:
    assert removed_genes(NAMED, "full") == []


def test_no_mt_removes_mitochondrial_genes_only() -> None:
    assert removed_genes(NAMED, "no_mt") == ["MT-CO1", "MT-ND4"]


def test_no_mt_ribo_keeps_mrp_kinases_and_pseudogenes() -> None:
    """RPLP0 and RPSA are cytosolic ribosomal proteins and are removed although they do not match
    ``RP[SL]<digit>``; RPS6KA1 (a kinase), MRPL12/MRPS7 (mitochondrial ribosome, nuclear genes)
    and the pseudogene RPL13AP5 stay."""
    assert removed_genes(NAMED, "no_mt_ribo") == [
        "MT-CO1",
        "MT-ND4",
        "RPL13",
        "RPS6",
        "RPLP0",
        "RPSA",
        "RPS4X",
        "RPL22L1",
        "RPL36AL",
    ]


def test_unknown_feature_set(rng: np.random.Generator) -> None:
    with pytest.raises(
        ValueError, match=r"unknown feature set 'no_ribo'; valid: \['full', 'no_mt', 'no_mt_ribo'\]"
    ):
        apply_feature_set(_delta_dataset(rng), "no_ribo")


def _delta_dataset(rng: np.random.Generator, *, rank: bool = True) -> PerturbDataset:
    """Pseudobulk-only: 30 genes, the first four the largest effects (MT-CO1 and RPL13 among them)."""
    genes = ["MT-CO1", "RPL13", "KLF1", "RPLP0"] + [f"G{i}" for i in range(26)]
    x = np.zeros((3, len(genes)))
    x[1:] = rng.uniform(-0.5, 0.5, size=(2, len(genes)))
    x[1:, :4] = [[9.0, 8.0, 7.0, 6.0], [-9.0, 8.0, -7.0, 6.0]]
    pb = ad.AnnData(
        x, obs=pd.DataFrame({"n_cells": [0, 0, 0]}, index=["ctrl", "A", "A+B"]), var=pd.DataFrame(index=genes)
    )
    ds = annotate_de(PerturbDataset("toy", pb, delta_only=True))
    if not rank:
        del ds.pseudobulk.uns["de_ranking"]
    return ds


def test_de_genes_rederived_from_ranking(rng: np.random.Generator) -> None:
    ds = _delta_dataset(rng)
    out, record = apply_feature_set(ds, "no_mt_ribo")
    assert out.genes == [g for g in ds.genes if g not in {"MT-CO1", "RPL13", "RPLP0"}]
    de = out.de_genes("de20")
    assert all(len(v) == 20 for v in de.values())
    assert de["A"] == [g for g in ds.de_genes("de_ranking")["A"] if g in set(out.genes)][:20]
    assert de["A"][0] == "KLF1"
    assert record == {
        "featureset": "no_mt_ribo",
        "n_genes": 27,
        "n_removed": 3,
        "removed_examples": ["MT-CO1", "RPL13", "RPLP0"],
    }
    assert out.pseudobulk.uns["removed_genes"] == record


def test_de_genes_filtered_without_ranking(rng: np.random.Generator) -> None:
    ds = _delta_dataset(rng, rank=False)
    out, _ = apply_feature_set(ds, "no_mt")
    assert out.de_genes("de20")["A"] == [g for g in ds.de_genes("de20")["A"] if g != "MT-CO1"]
    assert len(out.de_genes("de20")["A"]) == 19


def test_full_keeps_dataset_and_records(rng: np.random.Generator, tmp_path: Path) -> None:
    ds = _delta_dataset(rng)
    out, record = apply_feature_set(ds, "full")
    assert out.genes == ds.genes and out.de_genes("de20") == ds.de_genes("de20")
    assert record == {"featureset": "full", "n_genes": 30, "n_removed": 0, "removed_examples": []}
    write_h5ad_atomic(out.pseudobulk, tmp_path / "pb.h5ad")
    assert ad.read_h5ad(tmp_path / "pb.h5ad").uns["removed_genes"]["n_removed"] == 0


def test_cells_dataset_nondropout_rederived(rng: np.random.Generator) -> None:
    genes = ["MT-CO1", "G1", "G2", "G3", "RPS6"] + [f"H{i}" for i in range(20)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = dataset_from_cells(make_cells(rng, genes=genes), name="toy", source="toy.h5ad")
    out, record = apply_feature_set(ds, "no_mt_ribo")
    assert record["n_removed"] == 2 and out.cells.n_vars == 23
    nondropout = out.de_genes("de20_nondropout")
    assert set(nondropout) == {"A", "A+B", "B"}
    assert all("MT-CO1" not in v and "RPS6" not in v for v in nondropout.values())
    assert all(len(v) == 20 for v in out.de_genes("de20").values())


@pytest.mark.parametrize("featureset", sorted(FEATURE_SETS))
def test_input_dataset_is_left_unchanged(rng: np.random.Generator, featureset: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = dataset_from_cells(make_cells(rng, genes=["MT-CO1", "RPS6", *[f"H{i}" for i in range(10)]]),
                                name="toy", source="toy.h5ad")
    uns_before = {k: ds.de_genes(k) for k in ("de20", "de20_nondropout", "de_ranking")}
    apply_feature_set(ds, featureset)
    assert "removed_genes" not in ds.pseudobulk.uns and len(ds.genes) == 12
    assert {k: ds.de_genes(k) for k in uns_before} == uns_before


def test_import_stays_light() -> None:
    """scanpy (the DE reference) is imported only when its path runs."""
    code = "import sys, perturbench.data.features; print(sorted({'scanpy', 'numba'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
