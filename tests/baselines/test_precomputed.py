"""External predictions: the ``precomputed`` model and ``perturbench score``."""

from __future__ import annotations

import json
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from baselines.precomputed import read_external_prediction
from perturbench.cli import main
from perturbench.data.contract import DatasetError
from perturbench.data.store import load_dataset
from perturbench.models.base import Prediction
from perturbench.splits import read_manifest
from tests.test_provenance import prepared  # noqa: F401 (fixture)


def write_external(path, conditions: list[str], genes: list[str], values: np.ndarray) -> None:
    ad.AnnData(X=values, obs=pd.DataFrame(index=conditions), var=pd.DataFrame(index=genes)).write_h5ad(path)


def test_score_a_file_made_elsewhere(prepared, capsys):  # noqa: F811
    test = sorted(read_manifest(prepared / "seed2.json").test)
    values = np.arange(len(test) * 3, dtype=float).reshape(len(test), 3) / 10
    gears_style = [f"{c}+ctrl" if "+" not in c else c for c in test]
    write_external(prepared / "scgpt.h5ad", gears_style, ["G3", "G2", "G1"], values[:, ::-1])
    out = prepared / "m.tsv"
    assert main(["score", "--data", str(prepared / "data"), "--split", str(prepared / "seed2.json"),
                 "--prediction", str(prepared / "scgpt.h5ad"), "--out", str(out)]) == 0, capsys.readouterr().err
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["featureset", "model", "seed", "condition", "subgroup", "metric", "value"]
    assert set(table["model"]) == {"scgpt"} and set(table["featureset"]) == {"data"} and set(table["seed"]) == {2}
    truth = load_dataset(prepared / "data", with_cells=False).expression([test[0]])[0]
    rmse = table[(table["condition"] == test[0]) & (table["metric"] == "rmse")]["value"].item()
    assert rmse == pytest.approx(np.sqrt(np.mean((values[0] - truth) ** 2)), rel=1e-8)


def test_missing_and_extra_conditions_and_genes_name_the_file(prepared):  # noqa: F811
    test = sorted(read_manifest(prepared / "seed2.json").test)
    path = prepared / "p.h5ad"
    write_external(path, test[1:] + ["Z"], ["G1", "G2", "G3"], np.zeros((len(test), 3)))
    with pytest.raises(DatasetError, match=rf"p\.h5ad: obs_names: 1 missing conditions \['{re.escape(test[0])}'\], "
                                           r"1 extra conditions \['Z'\]"):
        read_external_prediction(path, conditions=test, genes=["G1", "G2", "G3"], model="x")
    write_external(path, test, ["G1", "G2", "G4"], np.zeros((len(test), 3)))
    with pytest.raises(DatasetError, match=r"p\.h5ad: var_names: 1 missing genes \['G3'\], 1 extra genes \['G4'\]"):
        read_external_prediction(path, conditions=test, genes=["G1", "G2", "G3"], model="x")


def test_precomputed_model_joins_the_workflow_steps(prepared):  # noqa: F811
    test = sorted(read_manifest(prepared / "seed2.json").test)
    values = np.full((len(test), 3), 2.5)
    write_external(prepared / "ext_seed2.h5ad", test, ["G1", "G2", "G3"], values)
    run = json.dumps({"model": "precomputed", "params": {"path": str(prepared / "ext_seed{seed}.h5ad")}})
    out = prepared / "pred.h5ad"
    assert main(["fit-predict", "--data-dir", str(prepared / "data"), "--split", str(prepared / "seed2.json"),
                 "--model", "scgpt", "--params", run, "--log-dir", str(prepared / "log"), "--out", str(out)]) == 0
    pred = Prediction.read(out)
    assert pred.conditions == test and pred.model == "scgpt" and pred.run["model"] == "precomputed"
    np.testing.assert_array_equal(pred.mean, values)
