"""Prediction files are labelled (featureset, seed, run) from their run record, never from their path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perturbench.cli import main
from perturbench.data.store import save_dataset
from perturbench.errors import ConfigError
from perturbench.models.base import Prediction
from perturbench.provenance import RunLabels, run_labels
from perturbench.splits import make_split, write_manifest
from tests._toydata import CONDITIONS, GENES, toy_dataset

RECORD = {"run": "mamba_a", "model": "dual_stream_mamba", "params": {}, "featureset": "no_mt", "seed": 2}


def _write_misleading(tmp_path, data, conditions, *, logvar=None, raw=None):
    """A prediction whose path says full / seed9 / other but whose record says no_mt / 2 / mamba_a."""
    path = tmp_path / "moved" / "full" / "seed9" / "predictions" / "other.h5ad"
    path.parent.mkdir(parents=True)
    mean = data.expression(conditions) + 0.5
    Prediction("other", list(conditions), list(GENES), mean, logvar, run=RECORD, logvar_raw=raw).write(path)
    return path


def test_run_labels_come_from_the_record_and_name_a_missing_field(tmp_path):
    assert run_labels(RECORD, tmp_path / "x.h5ad") == RunLabels(run="mamba_a", featureset="no_mt", seed=2)
    with pytest.raises(ConfigError, match=r"x\.h5ad: uns\['run'\]: missing"):
        run_labels(None, tmp_path / "x.h5ad")
    with pytest.raises(ConfigError, match=r"x\.h5ad: uns\['run'\]\['featureset'\]: missing or empty"):
        run_labels({**RECORD, "featureset": ""}, tmp_path / "x.h5ad")


def test_calibration_labels_a_moved_file_from_its_record(rng, tmp_path):
    data = toy_dataset(rng)
    save_dataset(data, tmp_path / "root" / "no_mt")  # truths are read from the record's feature set
    shape = (2, len(GENES))
    path = _write_misleading(tmp_path, data, ["G04", "G00+G02"], logvar=np.zeros(shape), raw=np.zeros(shape))
    out = tmp_path / "calibration.tsv"
    assert main(["calibration", "--data-root", str(tmp_path / "root"), "--predictions", str(path),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t")
    assert set(zip(table["featureset"], table["model"], table["seed"], strict=True)) == {("no_mt", "mamba_a", 2)}
    assert table["coverage90"].tolist() == [1.0, 1.0]  # |error| = 0.5 < 1.645 σ, σ = 1


def test_interactions_label_a_moved_file_from_its_record(rng, tmp_path):
    data = toy_dataset(rng)
    save_dataset(data, tmp_path / "root" / "no_mt")
    split = make_split(CONDITIONS, seed=2)
    write_manifest(split, tmp_path / "split.json", dataset="toy")
    path = _write_misleading(tmp_path, data, sorted(split.test))
    assert main(["interactions", "--predictions", str(path), "--splits", str(tmp_path / "split.json"),
                 "--data-root", str(tmp_path / "root"), "--out-dir", str(tmp_path / "out")]) == 0
    metrics = pd.read_csv(tmp_path / "out" / "interactions.tsv", sep="\t")
    runs = metrics[metrics["model"] != "truth"]
    assert len(runs) and set(zip(runs["featureset"], runs["model"], runs["seed"], strict=True)) == {
        ("no_mt", "mamba_a", 2)}


def test_a_prediction_without_a_run_record_is_refused_in_one_line(rng, tmp_path, capsys):
    data = toy_dataset(rng)
    path = tmp_path / "p.h5ad"
    Prediction("p", ["G04"], list(GENES), data.expression(["G04"]), np.zeros((1, len(GENES)))).write(path)
    assert main(["calibration", "--data-root", str(tmp_path), "--predictions", str(path),
                 "--out", str(tmp_path / "c.tsv")]) == 1
    assert f"{path}: uns['run']: missing" in capsys.readouterr().err
    assert not (tmp_path / "c.tsv").exists()
