"""The run record every prediction file carries (``uns['run']``) and its pieces."""

from __future__ import annotations

import dataclasses
import json

import anndata as ad
import pandas as pd
import pytest

from baselines.linear import RidgeConfig
from perturbench.cli import main
from perturbench.data.store import load_dataset
from perturbench.models.base import Prediction
from perturbench.provenance import RECORD_FIELDS, dataset_fingerprint, measured

ROWS = {"ctrl": [1.0, 2.0, 3.0], "A": [1.5, 2.0, 3.0], "B": [1.0, 2.2, 3.0], "C": [0.9, 2.0, 3.3],
        "A+B": [1.0, 2.5, 3.1], "B+C": [1.2, 2.1, 3.0], "A+C": [1.1, 2.4, 3.3]}


@pytest.fixture
def prepared(tmp_path):
    frame = pd.DataFrame.from_dict(ROWS, orient="index", columns=["G1", "G2", "G3"])
    frame.index.name = "condition"
    frame.reset_index().to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    spec = json.dumps({"source": "pseudobulk", "path": str(tmp_path / "t.tsv")})
    assert main(["prepare", "--name", "d", "--spec", spec, "--inputs", str(tmp_path / "t.tsv"),
                 "--out-dir", str(tmp_path / "data")]) == 0
    assert main(["split", "--data-dir", str(tmp_path / "data"), "--dataset", "d", "--seed", "2",
                 "--out", str(tmp_path / "seed2.json")]) == 0
    return tmp_path


def fit(tmp_path, params: dict) -> Prediction:
    out = tmp_path / "pred.h5ad"
    run = json.dumps({"model": "ridge", "params": params})
    assert main(["fit-predict", "--data-dir", str(tmp_path / "data"), "--split", str(tmp_path / "seed2.json"),
                 "--model", "ridge_fast", "--params", run, "--featureset", "full", "--log-dir", str(tmp_path / "log"),
                 "--out", str(out)]) == 0
    return Prediction.read(out)


def test_prediction_carries_the_run_record(prepared):
    run = fit(prepared, {"lam": 2.0}).run
    assert set(run) == set(RECORD_FIELDS)
    assert (run["run"], run["model"], run["featureset"], run["seed"], run["device"]) == (
        "ridge_fast", "ridge", "full", 2, "cpu")
    assert run["params"] == {**json.loads(json.dumps(dataclasses.asdict(RidgeConfig()))), "lam": 2.0}  # + defaults
    assert run["split_checksum"] == json.loads((prepared / "seed2.json").read_text())["checksum"]
    assert run["dataset_fingerprint"] == dataset_fingerprint(load_dataset(prepared / "data", with_cells=False))
    assert run["versions"]["numpy"] and run["versions"]["perturbench"]
    assert run["wall_s"] >= 0 and run["cpu_s"] >= 0
    assert isinstance(ad.read_h5ad(prepared / "pred.h5ad").uns["run"]["params"], str)  # JSON text in the file


def test_metrics_table_takes_featureset_model_seed_from_the_arguments(prepared):
    fit(prepared, {})
    out = prepared / "m.tsv"
    assert main(["evaluate", "--data-dir", str(prepared / "data"), "--split", str(prepared / "seed2.json"),
                 "--prediction", str(prepared / "pred.h5ad"), "--featureset", "no_mt", "--model", "ridge_fast",
                 "--seed", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns[:3]) == ["featureset", "model", "seed"]
    assert set(table["featureset"]) == {"no_mt"} and set(table["model"]) == {"ridge_fast"} and set(table["seed"]) == {2}


def test_fingerprint_changes_with_any_value(prepared):
    ds = load_dataset(prepared / "data", with_cells=False)
    before = dataset_fingerprint(ds)
    ds.pseudobulk.X[1, 1] += 1e-5  # stored as float32: a change above its resolution
    assert dataset_fingerprint(ds) != before


def test_measured_reports_wall_and_cpu_seconds():
    with measured() as cost:
        sum(i * i for i in range(200_000))
    assert cost["wall_s"] > 0 and cost["cpu_s"] > 0
