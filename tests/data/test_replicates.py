"""Split-half replicates in pseudobulk tables: reading, the noise ceiling, and interaction noise."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbench.data.contract import DatasetError
from perturbench.data.tables import read_pseudobulk_table
from perturbench.evaluate import EvaluationError, replicate_noise_ceiling
from perturbench.interaction_analysis import condition_noise

HALF_A = {"ctrl": [0.0, 0.0, 0.0], "A": [1.0, 2.0, 3.0], "B": [2.0, 0.0, -1.0]}
HALF_B = {"ctrl": [0.0, 0.0, 0.0], "A": [1.0, 2.0, 3.0], "B": [0.0, 0.0, 1.0]}


def _write(path: Path, rows: list[tuple[str, str, list[float]]]) -> Path:
    frame = pd.DataFrame([[c, r, *v] for c, r, v in rows], columns=["condition", "replicate", "G0", "G1", "G2"])
    frame.to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture
def table(tmp_path: Path) -> Path:
    rows = [(c, "1", v) for c, v in HALF_A.items()] + [(c, "2", v) for c, v in HALF_B.items()]
    return _write(tmp_path / "pb.tsv", rows)


def test_replicate_rows_become_layers_and_their_mean(table: Path) -> None:
    ds = read_pseudobulk_table(table, name="t")
    np.testing.assert_allclose(ds.expression(["B"])[0], [1.0, 0.0, 0.0])
    pb = ds.pseudobulk
    np.testing.assert_allclose(pb[["B"]].layers["replicate1"][0], HALF_A["B"])
    np.testing.assert_allclose(pb[["B"]].layers["replicate2"][0], HALF_B["B"])
    assert ds.delta_only


def test_replicate_ceiling_hand_computed(table: Path) -> None:
    ds = read_pseudobulk_table(table, name="t")
    out = replicate_noise_ceiling(ds.pseudobulk, ["A", "B"], de_genes={"B": ["G0", "G2"]}).set_index("condition")
    assert out.loc["A", "r_half"] == pytest.approx(1.0) and out.loc["A", "r_full"] == pytest.approx(1.0)
    # B: halves (2, 0, −1) and (0, 0, 1): r = −0.866…; mse on G0, G2 = ((2 − 0)² + (−1 − 1)²) / 2 = 4
    r = np.corrcoef(HALF_A["B"], HALF_B["B"])[0, 1]
    assert out.loc["B", "r_half"] == pytest.approx(r) and out.loc["B", "r_full"] == pytest.approx(2 * r / (1 + r))
    assert out.loc["B", "mse_de20_half"] == pytest.approx(4.0) and out.loc["B", "mse_de20_floor"] == pytest.approx(1.0)
    noise = condition_noise(ds, ["A", "B"])  # s² = mean (a − b)² / 4
    assert noise["A"] == 0.0 and noise["B"] == pytest.approx(np.sqrt((4 + 0 + 4) / 3 / 4))


def test_h5ad_replicate_layers(tmp_path: Path) -> None:
    conds = list(HALF_A)
    a, b = np.array([HALF_A[c] for c in conds]), np.array([HALF_B[c] for c in conds])
    adata = ad.AnnData((a + b) / 2, obs=pd.DataFrame(index=conds), var=pd.DataFrame(index=["G0", "G1", "G2"]))
    adata.layers["replicate1"], adata.layers["replicate2"] = a, b
    adata.write_h5ad(tmp_path / "pb.h5ad")
    ds = read_pseudobulk_table(tmp_path / "pb.h5ad", name="t")
    np.testing.assert_allclose(ds.pseudobulk[["B"]].layers["replicate2"][0], HALF_B["B"])


def test_replicate_errors(tmp_path: Path, table: Path) -> None:
    one = _write(tmp_path / "one.tsv", [("ctrl", "1", [0, 0, 0]), ("ctrl", "2", [0, 0, 0]), ("A", "1", [1, 1, 1])])
    with pytest.raises(DatasetError, match=r"one.tsv: column 'replicate': conditions without both replicates 1 and 2: \['A'\]"):
        read_pseudobulk_table(one, name="t")
    three = _write(tmp_path / "three.tsv", [("ctrl", "1", [0, 0, 0]), ("ctrl", "3", [0, 0, 0])])
    with pytest.raises(DatasetError, match=r"three.tsv: column 'replicate': values \['3'\] \(expected 1 and 2\)"):
        read_pseudobulk_table(three, name="t")
    twice = _write(tmp_path / "twice.tsv", [("ctrl", "1", [0, 0, 0]), ("ctrl", "1", [0, 0, 0])])
    with pytest.raises(DatasetError, match="condition 'ctrl' has replicate 1 twice"):
        read_pseudobulk_table(twice, name="t")
    plain = read_pseudobulk_table(table, name="t").pseudobulk.copy()
    del plain.layers["replicate1"]
    with pytest.raises(EvaluationError, match=r"pseudobulk lacks layers \['replicate1'\]"):
        replicate_noise_ceiling(plain, ["A"])


def test_replicate_layers_survive_prepare_and_feature_sets(table: Path, tmp_path: Path) -> None:
    from perturbench import pipeline
    from perturbench.data.store import load_dataset

    pipeline.prepare("t", {"source": "pseudobulk", "path": str(table)}, tmp_path / "prepared", inputs=[table])
    pipeline.featureset(tmp_path / "prepared", "no_mt", tmp_path / "no_mt")
    pb = load_dataset(tmp_path / "no_mt", with_cells=False).pseudobulk
    np.testing.assert_allclose(pb[["B"]].layers["replicate1"][0], HALF_A["B"])
