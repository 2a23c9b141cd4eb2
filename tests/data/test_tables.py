"""User pseudobulk tables (TSV, parquet, h5ad) and the Norman 2019 npz converter."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _celldata import shared_data

from perturbench.data.contract import DatasetError
from perturbench.data.tables import norman_npz_to_pseudobulk, read_pseudobulk_table

GENES = ["g1", "g2", "g3"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def _frame(rows: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([[c, *v] for c, v in rows.items()], columns=["condition", *GENES])


def _tsv(tmp_path: Path, rows: dict[str, list[float]], name: str = "table.tsv") -> Path:
    path = tmp_path / name
    _frame(rows).to_csv(path, sep="\t", index=False)
    return path


DELTA = {"ctrl": [0.0, 0.0, 0.0], "B+A": [0.5, -2.0, 0.1], "A": [1.0, 0.0, 0.2]}
ABSOLUTE = {"ctrl": [1.0, 2.0, 3.0], "A": [1.5, 2.0, 0.0]}


def test_tsv_delta_only_detected_and_canonicalised(tmp_path: Path) -> None:
    ds = read_pseudobulk_table(_tsv(tmp_path, DELTA), name="user")
    assert ds.delta_only is True
    assert ds.pseudobulk.obs_names.tolist() == ["ctrl", "A", "A+B"]
    np.testing.assert_array_equal(ds.expression(["A+B"]), [[0.5, -2.0, 0.1]])
    assert ds.pseudobulk.obs["n_cells"].tolist() == [0, 0, 0]
    assert ds.de_genes("de20") == {"A": ["g1", "g3", "g2"], "A+B": ["g2", "g1", "g3"]}


def test_absolute_table_and_de_relative_to_ctrl(tmp_path: Path) -> None:
    ds = read_pseudobulk_table(_tsv(tmp_path, ABSOLUTE, "abs.tsv.gz"), name="user")
    assert ds.delta_only is False
    assert ds.de_genes("de20") == {"A": ["g3", "g1", "g2"]}


def test_delta_only_flag_with_non_zero_ctrl(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"abs.tsv: pseudobulk X: delta-only source whose 'ctrl' row is not zero"
    ):
        read_pseudobulk_table(_tsv(tmp_path, ABSOLUTE, "abs.tsv"), name="user", delta_only=True)


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    _frame(DELTA).to_parquet(path, index=False)
    ds = read_pseudobulk_table(path, name="user")
    assert ds.conditions == ["A", "A+B"] and ds.delta_only


def test_h5ad_obs_names_and_condition_column(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.normal(size=(3, 3))
    by_names = ad.AnnData(x, obs=pd.DataFrame(index=["ctrl", "B+ctrl", "C+B"]), var=pd.DataFrame(index=GENES))
    by_names.obs["n_cells"] = [50, 20, 10]
    by_names.write_h5ad(tmp_path / "names.h5ad")
    by_column = ad.AnnData(
        x,
        obs=pd.DataFrame({"condition": ["ctrl", "B", "B+C"]}, index=["r0", "r1", "r2"]),
        var=pd.DataFrame(index=GENES),
    )
    by_column.write_h5ad(tmp_path / "column.h5ad")
    for path in (tmp_path / "names.h5ad", tmp_path / "column.h5ad"):
        ds = read_pseudobulk_table(path, name="user")
        assert ds.pseudobulk.obs_names.tolist() == ["ctrl", "B", "B+C"] and not ds.delta_only
        np.testing.assert_allclose(ds.expression(["ctrl", "B", "B+C"]), x)
    assert read_pseudobulk_table(tmp_path / "names.h5ad", name="u").pseudobulk.obs["n_cells"].tolist() == [
        50,
        20,
        10,
    ]


def test_missing_ctrl_row(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"t.tsv: column 'condition': no 'ctrl' row; add the control row"):
        read_pseudobulk_table(_tsv(tmp_path, {"A": [1.0, 2.0, 3.0]}, "t.tsv"), name="user")


def test_same_perturbation_in_two_orders(tmp_path: Path) -> None:
    rows = {"ctrl": [0.0] * 3, "A+B": [1.0] * 3, "B+A": [2.0] * 3}
    with pytest.raises(
        DatasetError,
        match=r"t.tsv: column 'condition': conditions 'A\+B' and 'B\+A' are the same "
        r"perturbation \('A\+B'\)",
    ):
        read_pseudobulk_table(_tsv(tmp_path, rows, "t.tsv"), name="user")


def test_duplicate_condition_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("condition\tg1\nctrl\t0\nA\t1\nA\t2\n")
    with pytest.raises(DatasetError, match=r"t.tsv: column 'condition': conditions 'A' and 'A' are the same"):
        read_pseudobulk_table(path, name="user")


def test_malformed_condition(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"t.tsv: column 'condition': malformed condition 'A\+\+B'"):
        read_pseudobulk_table(_tsv(tmp_path, {"ctrl": [0.0] * 3, "A++B": [1.0] * 3}, "t.tsv"), name="user")


def test_nan_values(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"t.tsv: values: NaN or inf in conditions \['A'\]"):
        read_pseudobulk_table(
            _tsv(tmp_path, {"ctrl": [0.0] * 3, "A": [1.0, np.nan, 0.0]}, "t.tsv"), name="user"
        )


def test_duplicate_gene_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("condition\tg1\tg1\nctrl\t0\t0\nA\t1\t2\n")
    with pytest.raises(DatasetError, match=r"t.tsv: genes: duplicate gene names \['g1'\]"):
        read_pseudobulk_table(path, name="user")


def test_non_numeric_value(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("condition\tg1\tg2\nctrl\t0\t0\nA\t1\thigh\n")
    with pytest.raises(DatasetError, match=r"t.tsv: column 'g2': non-numeric value \(.*'high'\)"):
        read_pseudobulk_table(path, name="user")


def test_no_condition_column(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("perturbation\tg1\nctrl\t0\n")
    with pytest.raises(DatasetError, match=r"t.tsv: columns: no 'condition' column"):
        read_pseudobulk_table(path, name="user")


def test_index_column_written_by_mistake(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    _frame(DELTA).to_csv(path, sep="\t")
    with pytest.raises(
        DatasetError, match=r"t.tsv: columns: a column has no name \(written with its index\?"
    ):
        read_pseudobulk_table(path, name="user")


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("condition,g1\nctrl,0\n")
    with pytest.raises(DatasetError, match=r"t.csv: unsupported table format '.csv'"):
        read_pseudobulk_table(path, name="user")


def _fake_npz(path: Path) -> Path:
    np.savez(
        path,
        lfc_s=np.array([[1.0, 0.0], [0.0, -1.0]], dtype=np.float32),
        sing_labels=np.array(["B", "A"]),
        lfc_d=np.array([[2.0, 3.0]], dtype=np.float32),
        doub_labels=np.array(["B+A"]),
        genes_hvg=np.array(["A", "G"]),
    )
    return path


def test_npz_converter_on_small_archive(tmp_path: Path) -> None:
    out = norman_npz_to_pseudobulk(_fake_npz(tmp_path / "n.npz"), tmp_path / "out" / "n.h5ad")
    assert out == tmp_path / "out" / "n.h5ad" and [p.name for p in out.parent.iterdir()] == ["n.h5ad"]
    ds = read_pseudobulk_table(out, name="norman")
    assert ds.pseudobulk.obs_names.tolist() == ["ctrl", "A", "A+B", "B"] and ds.delta_only
    np.testing.assert_array_equal(ds.expression(["ctrl", "A", "A+B", "B"]), [[0, 0], [0, -1], [2, 3], [1, 0]])
    assert ds.meta["targets_missing_from_genes"] == {"A+B": ["B"], "B": ["B"]}


def test_npz_converter_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "n.npz"
    np.savez(path, lfc_s=np.zeros((1, 1)))
    with pytest.raises(
        DatasetError,
        match=r"n.npz: missing array\(s\) \['sing_labels', 'lfc_d', 'doub_labels', " r"'genes_hvg'\]",
    ):
        norman_npz_to_pseudobulk(path, tmp_path / "n.h5ad")


def test_npz_converter_on_real_norman(tmp_path: Path) -> None:
    path = shared_data("norman2019_pseudobulk_lfc.npz")
    ds = read_pseudobulk_table(norman_npz_to_pseudobulk(path, tmp_path / "norman.h5ad"), name="norman2019")
    assert len(ds.conditions) == 234 and ds.pseudobulk.n_vars == 2000
    assert ds.delta_only and not ds.ctrl.any()
    assert sum("+" in c for c in ds.conditions) == 130
    with np.load(path) as archive:
        row = list(archive["doub_labels"]).index("AHR+KLF1")
        np.testing.assert_array_equal(ds.expression(["AHR+KLF1"])[0], archive["lfc_d"][row])
    assert all(len(v) == 20 for v in ds.de_genes("de20").values())


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("")
    with pytest.raises(DatasetError, match=r"t.tsv: empty file \(expected a header line with 'condition'\)"):
        read_pseudobulk_table(path, name="user")
