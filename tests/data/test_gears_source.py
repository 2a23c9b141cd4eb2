"""Tests for perturbench.data.gears_source on small GEARS-format h5ad files built here."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _httpserver import LoopbackServer, Reply

from perturbench.data.contract import DatasetError
from perturbench.data.download import fetch, safe_extract
from perturbench.data.gears_source import find_gears_h5ad, load_gears_dataset

IDS = [f"ENSG{i:011d}" for i in range(8)]
SYMBOLS = [f"G{i}" for i in range(8)]
#: GEARS label → number of cells; "ctrl+G2" and "G3+G1" exercise canonicalisation.
LABELS = {"ctrl": 4, "G1+ctrl": 3, "ctrl+G2": 2, "G3+G1": 3}
CANONICAL = {"ctrl": "ctrl", "G1+ctrl": "G1", "ctrl+G2": "G2", "G3+G1": "G1+G3"}
FAST = {"backoff": 0.0, "timeout": 5.0, "progress": False}


def gears_name(label: str, cell_type: str = "K562") -> str:
    """GEARS ``condition_name``: ``<cell_type>_<condition>_<dose>`` (dose 1+1 for two parts)."""
    return f"{cell_type}_{label}_{'1+1' if len(label.split('+')) == 2 else '1'}"


def gears_adata(rng: np.random.Generator, *, with_de: bool = True) -> ad.AnnData:
    """A small AnnData in the layout of GEARS's perturb_processed.h5ad."""
    labels = [label for label, n in LABELS.items() for _ in range(n)]
    dense = rng.uniform(0.5, 3.0, size=(len(labels), len(IDS))) * (rng.random((len(labels), len(IDS))) < 0.6)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(labels),
            "cell_type": pd.Categorical(["K562"] * len(labels)),
            "control": [1 if lab == "ctrl" else 0 for lab in labels],
            "condition_name": pd.Categorical([gears_name(lab) for lab in labels]),
        },
        index=[f"cell{i}" for i in range(len(labels))],
    )
    var = pd.DataFrame({"gene_name": SYMBOLS}, index=IDS)
    adata = ad.AnnData(sp.csr_matrix(dense), obs=obs, var=var)
    if with_de:
        adata.uns["rank_genes_groups_cov_all"] = {
            gears_name(lab): np.array(IDS)[rng.permutation(len(IDS))] for lab in LABELS if lab != "ctrl"
        }
        adata.uns["top_non_dropout_de_20"] = {gears_name(lab): np.array(IDS[:3]) for lab in LABELS if lab != "ctrl"}
    return adata


def write_gears(adata: ad.AnnData, folder: Path) -> Path:
    path = folder / "norman" / "perturb_processed.h5ad"
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path


# -- layout, conditions, pseudobulk ---------------------------------------------------------


def test_loads_folder_or_file_with_canonical_conditions(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_gears(gears_adata(rng), tmp_path / "extracted")
    from_folder = load_gears_dataset(tmp_path / "extracted", name="norman")
    from_file = load_gears_dataset(path, name="norman")
    for ds in (from_folder, from_file):
        assert ds.conditions == ["G1", "G1+G3", "G2"]
        assert ds.genes == SYMBOLS and list(ds.cells.var["gene_id"]) == IDS
        assert ds.source == str(path) and ds.meta["cell_type"] == "K562"
    cells = from_file.cells
    assert sp.isspmatrix_csr(cells.X) and cells.X.dtype == np.float32
    assert sorted(set(cells.obs["condition"].astype(str))) == ["G1", "G1+G3", "G2", "ctrl"]
    assert set(cells.obs.loc[cells.obs["gears_condition"] == "ctrl+G2", "condition"]) == {"G2"}


def test_csr_float32_matrix_is_not_copied(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's CSR float32 X becomes the cells' X as it is (a copy would double peak memory)."""
    raw = gears_adata(rng)
    raw.X = raw.X.astype(np.float32)
    path = write_gears(raw, tmp_path)
    monkeypatch.setattr(ad, "read_h5ad", lambda _: raw)
    ds = load_gears_dataset(path, name="norman")
    assert np.shares_memory(ds.cells.X.data, raw.X.data) and np.shares_memory(ds.cells.X.indices, raw.X.indices)


def test_pseudobulk_is_the_mean_of_cells(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    ds = load_gears_dataset(write_gears(raw, tmp_path), name="norman")
    dense = raw.X.toarray().astype(np.float32).astype(np.float64)
    labels = raw.obs["condition"].astype(str).map(CANONICAL).to_numpy()
    for cond in ["ctrl", "G1", "G1+G3", "G2"]:
        expected = dense[labels == cond].mean(axis=0)
        np.testing.assert_allclose(ds.expression([cond])[0], expected, rtol=1e-6)
        assert ds.pseudobulk.obs.loc[cond, "n_cells"] == (labels == cond).sum()


def test_gears_de_genes_are_mapped_to_conditions_and_symbols(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    ds = load_gears_dataset(write_gears(raw, tmp_path), name="norman")
    symbol = dict(zip(IDS, SYMBOLS, strict=True))
    for label in ("G1+ctrl", "ctrl+G2", "G3+G1"):
        ranked = [symbol[g] for g in raw.uns["rank_genes_groups_cov_all"][gears_name(label)]]
        assert ds.de_genes("de20")[CANONICAL[label]] == ranked
        assert ds.de_genes("de_ranking")[CANONICAL[label]] == ranked
        assert ds.de_genes("de20_nondropout")[CANONICAL[label]] == ["G0", "G1", "G2"]
    assert ds.meta["de_from_gears"] == ["de20", "de20_nondropout", "de_ranking"]


def test_de_keys_are_matched_via_cell_type_without_condition_name(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    del raw.obs["condition_name"]
    ds = load_gears_dataset(write_gears(raw, tmp_path), name="norman")
    assert sorted(ds.de_genes("de20")) == ["G1", "G1+G3", "G2"]


def test_missing_de_is_computed(tmp_path: Path, rng: np.random.Generator) -> None:
    ds = load_gears_dataset(write_gears(gears_adata(rng, with_de=False), tmp_path), name="norman")
    assert ds.meta["de_from_gears"] == []
    assert sorted(ds.de_genes("de20")) == ["G1", "G1+G3", "G2"]
    assert sorted(ds.de_genes("de20_nondropout")) == ["G1", "G1+G3", "G2"]


@pytest.mark.parametrize(("column", "field"), [("feature_name", "var['feature_name']"), (None, "var_names")])
def test_gene_names_fall_back_to_feature_name_then_var_names(
    tmp_path: Path, rng: np.random.Generator, column: str | None, field: str
) -> None:
    raw = gears_adata(rng, with_de=False)
    raw.var = pd.DataFrame({column: SYMBOLS}, index=IDS) if column else pd.DataFrame(index=SYMBOLS)
    ds = load_gears_dataset(write_gears(raw, tmp_path), name="norman")
    assert ds.genes == SYMBOLS and ds.meta["gene_field"] == field


# -- validation errors ----------------------------------------------------------------------


def test_missing_condition_column(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.obs = raw.obs.rename(columns={"condition": "perturbation"})
    path = write_gears(raw, tmp_path)
    with pytest.raises(DatasetError, match=rf"{path}: obs: missing column 'condition'"):
        load_gears_dataset(path, name="norman")


def test_malformed_condition_name(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.obs["condition"] = raw.obs["condition"].astype(str).replace("G3+G1", "G3++G1")
    path = write_gears(raw, tmp_path)
    with pytest.raises(DatasetError, match=rf"{path}: obs\['condition'\]: malformed condition 'G3\+\+G1'"):
        load_gears_dataset(path, name="norman")


def test_no_control_cells(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    path = write_gears(raw[raw.obs["condition"] != "ctrl"].copy(), tmp_path)
    with pytest.raises(DatasetError, match=rf"{path}: obs\['condition'\]: no control cells \('ctrl'"):
        load_gears_dataset(path, name="norman")


def test_several_cell_types(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.obs["cell_type"] = ["K562", "RPE1"] * (raw.n_obs // 2)
    path = write_gears(raw, tmp_path)
    with pytest.raises(DatasetError, match=rf"{path}: obs\['cell_type'\]: several cell types \['K562', 'RPE1'\]"):
        load_gears_dataset(path, name="norman")


def test_duplicate_gene_names(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.var["gene_name"] = ["G0", "G0"] + SYMBOLS[2:]
    path = write_gears(raw, tmp_path)
    with pytest.raises(DatasetError, match=rf"{path}: var\['gene_name'\]: duplicate gene names \['G0'\]"):
        load_gears_dataset(path, name="norman")


def test_de_key_without_condition(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.uns["rank_genes_groups_cov_all"]["K562_G7+ctrl_1+1"] = np.array(IDS)
    path = write_gears(raw, tmp_path)
    with pytest.raises(DatasetError, match=r"uns\['rank_genes_groups_cov_all'\]: key 'K562_G7\+ctrl_1\+1' matches no"):
        load_gears_dataset(path, name="norman")


def test_de_gene_id_not_in_var(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = gears_adata(rng)
    raw.uns["top_non_dropout_de_20"][gears_name("G1+ctrl")] = np.array(["ENSG_UNKNOWN"])
    path = write_gears(raw, tmp_path)
    with pytest.raises(
        DatasetError, match=r"top_non_dropout_de_20'\]\['K562_G1\+ctrl_1\+1'\]: gene ids \['ENSG_UNKNOWN'\]"
    ):
        load_gears_dataset(path, name="norman")


def test_find_gears_h5ad_none_or_several(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(DatasetError, match=r"no perturb_processed.h5ad inside"):
        find_gears_h5ad(tmp_path)
    write_gears(gears_adata(rng), tmp_path / "a")
    write_gears(gears_adata(rng), tmp_path / "b")
    with pytest.raises(DatasetError, match=r"several perturb_processed.h5ad files"):
        find_gears_h5ad(tmp_path)


# -- end to end: archive served over loopback HTTP ------------------------------------------


def gears_archive(rng: np.random.Generator, tmp_path: Path) -> bytes:
    write_gears(gears_adata(rng), tmp_path / "src")
    archive = tmp_path / "norman.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "norman", arcname="norman")
    return archive.read_bytes()


def test_fetch_extract_load_end_to_end(tmp_path: Path, rng: np.random.Generator) -> None:
    data = gears_archive(rng, tmp_path)
    with LoopbackServer([Reply(data)]) as server:
        archive = fetch(
            server.url("/api/access/datafile/6154020"),
            tmp_path / "raw" / "norman.tar.gz",
            sha256=hashlib.sha256(data).hexdigest(),
            **FAST,
        )
    files = safe_extract(archive, tmp_path / "raw" / "norman")
    assert files == [tmp_path / "raw" / "norman" / "norman" / "perturb_processed.h5ad"]
    ds = load_gears_dataset(tmp_path / "raw" / "norman", name="norman")
    assert ds.conditions == ["G1", "G1+G3", "G2"]


# -- real cells through GEARS's own preprocessing --------------------------------------------


@pytest.mark.slow  # importing cell-gears imports torch and torch-geometric
def test_real_cells_processed_by_gears_load_with_matching_de(tmp_path: Path, shared_file) -> None:
    """Norman cells put through cell-gears' ``get_DE_genes`` + ``get_dropout_non_zero_genes``
    load with DE lists equal to perturbench's own recomputation (same scanpy t-test)."""
    data_utils = pytest.importorskip("gears.data_utils", reason="cell-gears (extra 'gears') not installed")
    from perturbench.data.de import nondropout_de, rank_de_cells

    cells = ad.read_h5ad(shared_file("norman2019_mcfaline2023_cells_subset.h5ad"))
    cells = cells[cells.obs["dataset"] == "norman19"]
    label = cells.obs["condition"].astype(str).map(lambda c: "ctrl" if c == "control" else c)
    label = label.map(lambda c: c if "+" in c or c == "ctrl" else f"{c}+ctrl")
    keep = sorted(set(label) - {"ctrl"})[:4] + ["ctrl"]
    cells = cells[label.isin(keep).to_numpy()]
    obs = pd.DataFrame({"condition": label[label.isin(keep)].to_numpy(), "cell_type": "K562"}, index=cells.obs_names)
    ids = [f"ENSG{i:011d}" for i in range(cells.n_vars)]
    raw = ad.AnnData(cells.X.copy(), obs=obs, var=pd.DataFrame({"gene_name": cells.var_names.to_numpy()}, index=ids))
    raw = data_utils.get_dropout_non_zero_genes(data_utils.get_DE_genes(raw, False))
    ds = load_gears_dataset(write_gears(raw, tmp_path), name="norman")
    assert len(ds.conditions) == 4 and ds.meta["de_from_gears"] == ["de20", "de20_nondropout", "de_ranking"]
    assert ds.de_genes("de20") == rank_de_cells(ds.cells, n_genes=20)
    assert ds.de_genes("de20_nondropout") == nondropout_de(ds.cells, ds.de_genes("de_ranking"))
