"""The dataset contract's gene and condition selections (``select_genes``, ``subset``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _celldata import make_cells

from perturbench.data.cells import dataset_from_cells
from perturbench.data.contract import DatasetError, PerturbDataset

GENES = [f"G{i}" for i in range(12)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


@pytest.fixture
def ds(rng: np.random.Generator) -> PerturbDataset:
    """Toy cells (ctrl, A, A+B, B) with a layer, an embedding and an extra obs column."""
    cells = make_cells(rng)
    cells.obs["batch"] = np.arange(cells.n_obs) % 3
    cells.layers["counts"] = cells.X.copy()
    cells.obsm["pca"] = rng.normal(size=(cells.n_obs, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # targets outside the toy gene list
        out = dataset_from_cells(cells, name="toy", source="toy.h5ad")
    out.cells.layers["counts"] = cells.layers["counts"]  # the loader keeps X only; add them back
    out.cells.obsm["pca"] = cells.obsm["pca"]
    return out


def test_select_genes_in_the_given_order(ds: PerturbDataset) -> None:
    genes = ["G7", "G0", "G3", "G11"]
    out = ds.select_genes(genes)
    idx = [GENES.index(g) for g in genes]
    assert out.genes == genes and list(out.cells.var_names) == genes
    np.testing.assert_array_equal(out.cells.X.toarray(), ds.cells.X.toarray()[:, idx])
    np.testing.assert_array_equal(out.pseudobulk.X, ds.pseudobulk.X[:, idx])
    assert sp.isspmatrix_csr(out.cells.X) and out.cells.X.dtype == np.float32 and out.cells.X.has_sorted_indices
    np.testing.assert_array_equal(out.cells.layers["counts"].toarray(), ds.cells.layers["counts"].toarray()[:, idx])


def test_select_genes_keeps_cell_annotations(ds: PerturbDataset) -> None:
    out = ds.select_genes(GENES[::-1])
    assert out.cells.obs_names.tolist() == ds.cells.obs_names.tolist()
    assert out.cells.obs["batch"].tolist() == ds.cells.obs["batch"].tolist()
    np.testing.assert_array_equal(out.cells.obsm["pca"], ds.cells.obsm["pca"])
    assert out.meta == ds.meta and out.meta is not ds.meta


def test_select_genes_filters_de_lists(ds: PerturbDataset) -> None:
    kept = ["G3", "G1", "G2"]
    out = ds.select_genes(kept)
    for kind in ("de20", "de20_nondropout", "de_ranking"):
        assert out.de_genes(kind) == {c: [g for g in v if g in kept] for c, v in ds.de_genes(kind).items()}


def test_select_genes_copies_and_leaves_the_source(ds: PerturbDataset) -> None:
    before = ds.cells.X.toarray()
    out = ds.select_genes(GENES[:5])
    out.cells.X.data[:] = -1.0
    np.testing.assert_array_equal(ds.cells.X.toarray(), before)
    assert ds.genes == GENES


def test_select_genes_unknown_gene(ds: PerturbDataset) -> None:
    with pytest.raises(KeyError, match=r"toy.h5ad: genes not in dataset: \['NOPE'\]"):
        ds.select_genes(["G1", "NOPE"])


def test_select_genes_duplicate_gene(ds: PerturbDataset) -> None:
    duplicate = pytest.raises(DatasetError, match=r"toy.h5ad: var_names: duplicate gene names \['G1'\]")
    with duplicate, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: "Variable names are not unique"
        ds.select_genes(["G1", "G2", "G1"])


def test_subset_keeps_ctrl_and_the_conditions_cells(ds: PerturbDataset) -> None:
    out = ds.subset(["A"])
    assert out.pseudobulk.obs_names.tolist() == ["ctrl", "A"]
    labels = ds.cells.obs["condition"].astype(str).to_numpy()
    rows = np.flatnonzero(np.isin(labels, ["ctrl", "A"]))
    assert out.cells.obs_names.tolist() == ds.cells.obs_names[rows].tolist()
    np.testing.assert_array_equal(out.cells.X.toarray(), ds.cells.X.toarray()[rows])
    np.testing.assert_array_equal(out.cells.obsm["pca"], ds.cells.obsm["pca"][rows])
    assert sorted(out.cells.obs["condition"].cat.categories) == ["A", "ctrl"]
    assert sp.isspmatrix_csr(out.cells.X) and out.genes == ds.genes


def test_subset_without_cells(ds: PerturbDataset) -> None:
    pb_only = PerturbDataset("toy", ds.pseudobulk.copy(), source="toy.h5ad")
    out = pb_only.subset(["B", "ctrl"])
    assert out.cells is None and out.conditions == ["B"]


def test_subset_keeps_the_de_lists_of_its_conditions(ds: PerturbDataset) -> None:
    pb = ds.pseudobulk.copy()
    pb.uns["de20"] = {"A": ["G0", "G1"], "A+B": ["G2"], "B": ["G3"]}
    pb.uns["note"] = {"kept": [1, 2]}
    out = PerturbDataset("toy", pb, source="toy.h5ad").subset(["A", "B"])
    assert out.de_genes("de20") == {"A": ["G0", "G1"], "B": ["G3"]}
    out.pseudobulk.uns["note"]["kept"].append(3)  # other annotations are copies
    assert pb.uns["note"] == {"kept": [1, 2]}
    np.testing.assert_array_equal(out.expression(["B"]), ds.expression(["B"]))


def test_subset_unknown_condition(ds: PerturbDataset) -> None:
    with pytest.raises(KeyError, match=r"'Z'"):
        ds.subset(["A", "Z"])


def test_subset_to_no_conditions(ds: PerturbDataset) -> None:
    out = ds.subset([])
    assert out.conditions == [] and set(out.cells.obs["condition"].astype(str)) == {"ctrl"}
