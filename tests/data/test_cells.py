"""Cell-level sources: pseudobulk means, canonical conditions, validation errors, h5ad reading."""

from __future__ import annotations

import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _celldata import make_cells, shared_data

from perturbench.data import de
from perturbench.data.cells import dataset_from_cells, pseudobulk_from_cells, read_cells_h5ad
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.io import write_h5ad_atomic


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _build(cells: ad.AnnData, **kwargs) -> PerturbDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # targets outside the toy gene list
        return dataset_from_cells(cells, name="toy", source="toy.h5ad", **kwargs)


def test_pseudobulk_means_by_hand() -> None:
    x = sp.csr_matrix(
        np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [5.0, 0.0]], dtype=np.float32)
    )
    obs = pd.DataFrame({"condition": ["A", "ctrl", "B", "A", "ctrl"]}, index=list("abcde"))
    var = pd.DataFrame({"symbol": ["g1", "g2"]}, index=["g1", "g2"])
    pb = pseudobulk_from_cells(ad.AnnData(x, obs=obs, var=var))
    assert list(pb.obs_names) == ["ctrl", "A", "B"]
    assert pb.obs["n_cells"].tolist() == [2, 2, 1]
    np.testing.assert_array_equal(pb.X, [[4.0, 1.0], [1.5, 1.0], [0.0, 4.0]])
    assert pb.X.dtype == np.float64
    assert pb.var["symbol"].tolist() == ["g1", "g2"]


def test_pseudobulk_dense_input_matches_sparse(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    dense = ad.AnnData(cells.X.toarray(), obs=cells.obs, var=cells.var)
    np.testing.assert_allclose(pseudobulk_from_cells(dense).X, pseudobulk_from_cells(cells).X)


def test_pseudobulk_in_blocks_matches_numpy_means(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells are summed in blocks (here of 7 cells, so blocks cut through conditions)."""
    monkeypatch.setattr(de, "BLOCK_ROWS", 7)
    cells = make_cells(rng)
    pb = pseudobulk_from_cells(cells)
    x = cells.X.toarray().astype(np.float64)
    labels = cells.obs["condition"].astype(str).to_numpy()
    expected = [x[labels == c].mean(axis=0) for c in pb.obs_names]
    np.testing.assert_allclose(pb.X, expected, rtol=1e-12)


def test_dataset_from_cells_canonicalises_and_annotates(rng: np.random.Generator) -> None:
    cells = make_cells(rng, control_label="control", groups={"control": 20, "A+ctrl": 6, "A": 4, "B+A": 8})
    ds = _build(cells, control_label="control")
    assert ds.pseudobulk.obs_names.tolist() == ["ctrl", "A", "A+B"]
    assert ds.pseudobulk.obs["n_cells"].tolist() == [20, 10, 8]
    assert sp.isspmatrix_csr(ds.cells.X) and ds.cells.X.dtype == np.float32
    assert set(ds.cells.obs["condition"]) == {"ctrl", "A", "A+B"}
    assert {"de20", "de20_nondropout", "de_ranking"} <= set(ds.pseudobulk.uns)
    np.testing.assert_allclose(
        ds.expression(["A"])[0],
        cells[cells.obs["condition"].isin(["A", "A+ctrl"])].X.mean(axis=0).A1,
        rtol=1e-6,
    )


def test_keep_filter_selects_cells(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["dataset"] = ["one" if i % 2 else "two" for i in range(cells.n_obs)]
    ds = _build(cells, keep={"dataset": "one"})
    assert ds.cells.n_obs == (cells.obs["dataset"] == "one").sum()
    assert set(ds.cells.obs["dataset"]) == {"one"}


def test_keep_filter_unknown_column(rng: np.random.Generator) -> None:
    with pytest.raises(DatasetError, match=r"toy.h5ad: obs: keep filter column 'dataset' not found"):
        _build(make_cells(rng), keep={"dataset": "one"})


def test_keep_filter_selecting_nothing(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["dataset"] = "one"
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs: keep filter \{'dataset': 'two'\} selects no cells"
    ):
        _build(cells, keep={"dataset": "two"})


def test_missing_condition_column(rng: np.random.Generator) -> None:
    with pytest.raises(DatasetError, match=r"toy.h5ad: obs: missing condition column 'perturbation'"):
        _build(make_cells(rng), condition_key="perturbation")


def test_missing_control_cells(rng: np.random.Generator) -> None:
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs\['condition'\]: no control cells \(label 'control'"
    ):
        _build(make_cells(rng), control_label="control")


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("A++B", "empty gene between"),
        ("ctrl+ctrl", "only 'ctrl' parts"),
        ("dex (10 nM)", "invalid gene name"),
    ],
)
def test_malformed_condition(rng: np.random.Generator, label: str, why: str) -> None:
    cells = make_cells(rng, groups={"ctrl": 20, label: 5})
    with pytest.raises(
        DatasetError,
        match=r"toy.h5ad: obs\[.condition.\]: .*" + re.escape(repr(label)) + ".*" + re.escape(why),
    ):
        _build(cells)


def test_empty_condition_name(rng: np.random.Generator) -> None:
    cells = make_cells(rng, groups={"ctrl": 20, " ": 5})
    with pytest.raises(DatasetError, match=r"toy.h5ad: obs\['condition'\]: empty condition name ' '"):
        _build(cells)


def test_nan_condition(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["condition"] = cells.obs["condition"].astype(object)
    cells.obs.iloc[0, 0] = np.nan
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs\['condition'\]: 1 cells have no condition \(NaN\)"
    ):
        _build(cells)


def test_unused_category_is_a_condition_without_cells(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["condition"] = cells.obs["condition"].cat.add_categories(["C"])
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs\['condition'\]: conditions with no cells .*\['C'\]"
    ):
        _build(cells)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(rng: np.random.Generator, bad: float) -> None:
    cells = make_cells(rng)
    cells.X = cells.X.toarray()
    cells.X[3, 2] = bad
    with pytest.raises(DatasetError, match=r"toy.h5ad: X: 1 NaN or inf values"):
        _build(cells)


def test_raw_integer_counts(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.X = sp.csr_matrix(rng.poisson(20.0, size=cells.shape).astype(np.float32))
    with pytest.raises(
        DatasetError,
        match=r"toy.h5ad: X: looks like raw counts \(integer values up to \d+\); "
        r"normalize and log1p first \(sc.pp.normalize_total \+ sc.pp.log1p\)",
    ):
        _build(cells)


def test_normalized_but_not_logged(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    x = np.expm1(cells.X.toarray().astype(np.float64))
    cells.X = sp.csr_matrix(x / x.sum(axis=1, keepdims=True) * 1e4)
    with pytest.raises(
        DatasetError,
        match=r"toy.h5ad: X: looks like raw counts \((every row sums to the same total" r"|values up to)",
    ):
        _build(cells)


def test_equal_row_sums_alone_flag_unlogged_data(rng: np.random.Generator) -> None:
    cells = make_cells(rng, genes=[f"G{i}" for i in range(400)])
    x = rng.uniform(0.0, 1.0, size=cells.shape)
    cells.X = sp.csr_matrix(x / x.sum(axis=1, keepdims=True) * 1e4)  # normalized to 1e4, every value < 30
    with pytest.raises(DatasetError, match=r"looks like raw counts \(every row sums to the same total\)"):
        _build(cells)


def test_negative_values(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.X = cells.X.toarray() - 1.0
    with pytest.raises(DatasetError, match=r"toy.h5ad: X: negative values \(min -1\); .*sc.pp.scale"):
        _build(cells)


def test_duplicate_gene_names(rng: np.random.Generator) -> None:
    with pytest.warns(UserWarning, match="Variable names are not unique"):
        cells = make_cells(rng, genes=["G0", "G1", "G1", "G3", "G4"])
    with pytest.raises(DatasetError, match=r"toy.h5ad: var_names: duplicate gene names \['G1'\]"):
        _build(cells)


def test_non_genetic_perturbation_type(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["perturbation_type"] = ["drug" if i % 3 == 0 else "CRISPRa" for i in range(cells.n_obs)]
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs\['perturbation_type'\]: non-genetic perturbations \['drug'\]"
    ):
        _build(cells)
    genetic = _build(cells, keep={"perturbation_type": "CRISPRa"})
    assert set(genetic.cells.obs["perturbation_type"]) == {"CRISPRa"}


def test_several_cell_types(rng: np.random.Generator) -> None:
    cells = make_cells(rng)
    cells.obs["cell_type"] = ["K562" if i % 2 else "RPE1" for i in range(cells.n_obs)]
    with pytest.raises(
        DatasetError, match=r"toy.h5ad: obs\['cell_type'\]: several cell types \['K562', 'RPE1'\]"
    ):
        _build(cells)


def test_targets_outside_gene_list_warn_by_default(rng: np.random.Generator) -> None:
    cells = make_cells(rng, genes=["A"] + [f"G{i}" for i in range(1, 12)])
    with pytest.warns(UserWarning, match=r"toy.h5ad: 2 condition\(s\) target unmeasured genes"):
        ds = dataset_from_cells(cells, name="toy", source="toy.h5ad")
    assert ds.meta["targets_missing_from_genes"] == {"A+B": ["B"], "B": ["B"]}


def test_targets_outside_gene_list_error(rng: np.random.Generator) -> None:
    cells = make_cells(rng, genes=["A"] + [f"G{i}" for i in range(1, 12)])
    with pytest.raises(
        DatasetError,
        match=r"toy.h5ad: obs\['condition'\]: 2 condition\(s\) target genes that are "
        r"not measured genes: \['A\+B', 'B'\]",
    ):
        dataset_from_cells(cells, name="toy", source="toy.h5ad", targets="error")


def test_read_cells_h5ad_with_and_without_keep(rng: np.random.Generator, tmp_path) -> None:
    cells = make_cells(rng, control_label="control")
    cells.obs["dataset"] = pd.Categorical(["one" if i % 2 else "two" for i in range(cells.n_obs)])
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        whole = read_cells_h5ad(path, name="toy", control_label="control")
        part = read_cells_h5ad(path, name="toy", control_label="control", keep={"dataset": "two"})
    assert whole.cells.n_obs == cells.n_obs and whole.source == str(path)
    assert part.cells.n_obs == (cells.obs["dataset"] == "two").sum()
    assert part.conditions == ["A", "A+B", "B"]


def test_real_norman_cells() -> None:
    path = shared_data("norman2019_mcfaline2023_cells_subset.h5ad")
    with pytest.raises(DatasetError, match=r"obs\['cell_type'\]: several cell types"):
        read_cells_h5ad(path, name="norman19", control_label="control")
    with pytest.warns(UserWarning, match="target unmeasured genes"):
        ds = read_cells_h5ad(path, name="norman19", control_label="control", keep={"dataset": "norman19"})
    assert ds.cells.shape == (3375, 500)
    assert len(ds.conditions) == 33 and ds.pseudobulk.obs["n_cells"]["ctrl"] == 100
    assert all(len(v) == 20 for v in ds.de_genes("de20_nondropout").values())


def test_annotated_pseudobulk_round_trips_through_h5ad(rng: np.random.Generator, tmp_path) -> None:
    ds = _build(make_cells(rng))
    write_h5ad_atomic(ds.pseudobulk, tmp_path / "pb.h5ad")
    back = ad.read_h5ad(tmp_path / "pb.h5ad")
    for kind in ("de20", "de20_nondropout", "de_ranking"):
        assert {c: [str(g) for g in v] for c, v in back.uns[kind].items()} == ds.de_genes(kind)
    np.testing.assert_array_equal(back.X, ds.pseudobulk.X)
