"""DE gene rankings: Welch t-test on cells (fast path vs scanpy reference), GEARS non-dropout rule,
|delta| on pseudobulk."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _celldata import PLANTED, make_cells, shared_data
from scipy import stats

from perturbench.data import de
from perturbench.data.cells import pseudobulk_from_cells
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.data.de import (
    annotate_de,
    group_sums,
    nondropout_de,
    rank_de_cells,
    rank_de_delta,
    top_by_abs,
    welch_t,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _canonical_cells(rng: np.random.Generator, **kwargs) -> ad.AnnData:
    cells = make_cells(rng, **kwargs)
    cells.obs["condition"] = cells.obs["condition"].cat.rename_categories({"B+A": "A+B"})
    return cells


def test_planted_gene_ranks_first(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng)
    before = cells.X.copy()
    ranking = rank_de_cells(cells)
    assert sorted(ranking) == ["A", "A+B", "B"]
    assert ranking["A"][0] == PLANTED
    assert sorted(ranking["A"]) == sorted(cells.var_names)
    assert "rank_genes_groups" not in cells.uns and "log1p" not in cells.uns
    assert (cells.X != before).nnz == 0


def test_rank_de_cells_n_genes(rng: np.random.Generator) -> None:
    ranking = rank_de_cells(_canonical_cells(rng), n_genes=3)
    assert all(len(v) == 3 for v in ranking.values())


def test_single_cell_condition_ranked_by_delta(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng, groups={"ctrl": 20, "A": 1, "B": 5})
    with pytest.warns(UserWarning, match=r"1 condition\(s\) have one cell; ranked by \|x - ctrl\| .*\['A'\]"):
        ranking = rank_de_cells(cells)
    assert ranking["A"][0] == PLANTED and len(ranking["A"]) == cells.n_vars


def test_too_few_control_cells(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng, groups={"ctrl": 1, "A": 5})
    with pytest.raises(
        DatasetError, match=r"obs\['condition'\]: need at least 2 'ctrl' cells for the t-test, got 1"
    ):
        rank_de_cells(cells)


def test_nondropout_rule_by_hand() -> None:
    # genes: d = detected in ctrl only (a dropout for A), z = zero everywhere, e = expressed in A
    x = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 3.0], [0.0, 0.0, 2.0]]))
    obs = pd.DataFrame({"condition": ["ctrl", "ctrl", "A", "A"]}, index=list("abcd"))
    cells = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["d", "z", "e"]))
    assert nondropout_de(cells, {"A": ["d", "z", "e"]}) == {"A": ["z", "e"]}
    assert nondropout_de(cells, {"A": ["d", "e", "z"]}, n=1) == {"A": ["e"]}


def test_rank_de_delta_by_hand_with_stable_ties() -> None:
    x = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, -1.0, 1.5], [0.0, 1.0, 1.0, 1.0]])
    pb = ad.AnnData(x, obs=pd.DataFrame(index=["ctrl", "A", "B"]), var=pd.DataFrame(index=list("wxyz")))
    assert rank_de_delta(pb) == {"A": ["x", "y", "z", "w"], "B": ["w", "x", "y", "z"]}


def test_annotate_de_cells(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng)
    ds = annotate_de(PerturbDataset("toy", pseudobulk_from_cells(cells), cells), n=5, keep_ranking=8)
    uns = ds.pseudobulk.uns
    assert uns["de20"]["A"][0] == PLANTED and len(uns["de20"]["A"]) == 5
    assert all(len(v) == 8 for v in uns["de_ranking"].values())
    assert uns["de20_nondropout"] == nondropout_de(cells, rank_de_cells(cells), n=5)


def test_annotate_de_keeps_shipped_lists(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng)
    pb = pseudobulk_from_cells(cells)
    pb.uns["de20"] = {"A": ["G0"], "A+B": ["G1"], "B": ["G2"]}
    ds = annotate_de(PerturbDataset("toy", pb, cells))
    assert ds.de_genes("de20") == {"A": ["G0"], "A+B": ["G1"], "B": ["G2"]}
    assert ds.de_genes("de_ranking")["A"][0] == PLANTED
    assert annotate_de(ds) is ds


def test_annotate_de_pseudobulk_only() -> None:
    x = np.array([[0.0, 0.0, 0.0], [0.1, -2.0, 0.5]])
    pb = ad.AnnData(x, obs=pd.DataFrame(index=["ctrl", "A"]), var=pd.DataFrame(index=["g1", "g2", "g3"]))
    ds = annotate_de(PerturbDataset("toy", pb, delta_only=True))
    assert ds.de_genes("de20") == {"A": ["g2", "g3", "g1"]}
    assert "de20_nondropout" not in ds.pseudobulk.uns


@pytest.mark.slow
def test_agrees_with_gears_on_real_cells() -> None:
    """GEARS's own DE ranking and non-dropout top 20 on the real Norman cells (imports GEARS: slow)."""
    data_utils = pytest.importorskip("gears.data_utils")
    path = shared_data("norman2019_mcfaline2023_cells_subset.h5ad")
    from perturbench.data.cells import read_cells_h5ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_cells_h5ad(path, name="norman19", control_label="control", keep={"dataset": "norman19"})
        gears = ds.cells.copy()
        gears.obs = gears.obs[["condition", "cell_type"]].astype(str)
        gears = data_utils.get_dropout_non_zero_genes(data_utils.get_DE_genes(gears, False))
    ours = rank_de_cells(ds.cells)
    ours_nd = nondropout_de(ds.cells, ours)
    to_condition = dict(zip(gears.obs["condition_name"].astype(str), gears.obs["condition"].astype(str)))
    for name, genes in gears.uns["rank_genes_groups_cov_all"].items():
        assert ours[to_condition[name]] == list(genes)
        assert ours_nd[to_condition[name]] == list(gears.uns["top_non_dropout_de_20"][name])


def test_nondropout_skips_conditions_without_cells(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng)
    ranking = rank_de_cells(cells)
    subset = cells[cells.obs["condition"].isin(["ctrl", "A"]).to_numpy()]
    assert nondropout_de(subset, ranking) == {"A": nondropout_de(cells, ranking)["A"]}


# -- the fast Welch path against scipy and against scanpy's rank_genes_groups ----------------


def _tied_cells(rng: np.random.Generator) -> ad.AnnData:
    """Toy cells plus genes that tie: five never detected, two identical copies of G0, and one
    constant in the control cells but different in A (zero variances, score ±inf)."""
    cells = _canonical_cells(rng, genes=[f"G{i}" for i in range(14)])
    x = cells.X.toarray()
    x[:, 8:13] = 0.0
    x[:, 6] = x[:, 0]
    ctrl = (cells.obs["condition"] == "ctrl").to_numpy()
    x[:, 7] = np.where(ctrl, 1.0, 2.0)
    return ad.AnnData(sp.csr_matrix(x), obs=cells.obs, var=cells.var)


def test_group_sums_by_hand_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(de, "BLOCK_ROWS", 2)
    x = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [5.0, 0.0]], dtype=np.float32)
    codes = np.array([1, 0, 2, 1, 0])
    for matrix in (x, sp.csr_matrix(x)):
        s1, s2 = group_sums(matrix, codes, 3, squares=True)
        np.testing.assert_array_equal(s1, [[8.0, 2.0], [3.0, 2.0], [0.0, 4.0]])
        np.testing.assert_array_equal(s2, [[34.0, 4.0], [5.0, 4.0], [0.0, 16.0]])
        assert s1.dtype == np.float64 and group_sums(matrix, codes, 3)[1] is None


def test_welch_t_matches_scipy(rng: np.random.Generator) -> None:
    groups = [rng.normal(size=(n, 6)) + shift for n, shift in ((7, 0.0), (4, 1.0), (9, -0.5))]
    x = np.vstack(groups)
    codes = np.repeat([0, 1, 2], [len(g) for g in groups])
    s1, s2 = group_sums(x, codes, 3, squares=True)
    t = welch_t(s1, s2, np.array([7, 4, 9]), 0)
    for k in (1, 2):
        expected = stats.ttest_ind(groups[k], groups[0], equal_var=False).statistic
        np.testing.assert_allclose(t[k], expected, rtol=1e-10)
    np.testing.assert_allclose(t[0], 0.0, atol=1e-12)


def test_welch_t_zero_variances() -> None:
    """Equal constant genes score 0 (NaN in scipy), different constants ±inf, as in scanpy."""
    x = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 3.0, 0.0], [1.0, 3.0, 0.0]])
    s1, s2 = group_sums(x, np.array([0, 0, 1, 1]), 2, squares=True)
    assert welch_t(s1, s2, np.array([2, 2]), 0)[1].tolist() == [0.0, np.inf, 0.0]


def test_top_by_abs_orders_by_magnitude() -> None:
    assert top_by_abs(np.array([0.5, -3.0, 2.0, -0.1]), 3).tolist() == [1, 2, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_rankings_equal_scanpy_with_ties(seed: int) -> None:
    cells = _tied_cells(np.random.default_rng(seed))
    for n_genes in (None, 5):
        assert rank_de_cells(cells, n_genes=n_genes) == rank_de_cells(cells, n_genes=n_genes, method="scanpy")
    assert rank_de_cells(cells)["A"][0] == "G7"


def test_scanpy_reference_keeps_the_single_cell_fallback(rng: np.random.Generator) -> None:
    cells = _canonical_cells(rng, groups={"ctrl": 20, "A": 1, "B": 5})
    with pytest.warns(UserWarning, match=r"1 condition\(s\) have one cell"):
        fast = rank_de_cells(cells)
    with pytest.warns(UserWarning, match=r"1 condition\(s\) have one cell"):
        assert rank_de_cells(cells, method="scanpy") == fast


def test_unknown_method(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match=r"method must be 'welch' or 'scanpy', got 'wilcoxon'"):
        rank_de_cells(_canonical_cells(rng), method="wilcoxon")


def test_n_genes_below_one(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match=r"n_genes must be at least 1, got 0"):
        rank_de_cells(_canonical_cells(rng), n_genes=0)


def test_welch_rankings_equal_scanpy_on_real_cells() -> None:
    """The real Norman cells (norman19 part): identical top-20, top-200 and full rankings."""
    from perturbench.data.cells import read_cells_h5ad

    path = shared_data("norman2019_mcfaline2023_cells_subset.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = read_cells_h5ad(path, name="norman19", control_label="control", keep={"dataset": "norman19"}).cells
        reference = rank_de_cells(cells, method="scanpy")
    fast = rank_de_cells(cells)
    assert sorted(fast) == sorted(reference) and len(reference) >= 30
    for top in (20, 200, None):
        assert {c: g[:top] for c, g in fast.items()} == {c: g[:top] for c, g in reference.items()}
