"""results/{dataset}/calibration.tsv: rows before / after calibration from prediction files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perturbench.cli import main
from perturbench.data.store import save_dataset
from perturbench.models.base import Prediction
from tests._toydata import GENES, toy_dataset


def _write(root, data, model, *, logvar=None, raw=None, conditions=("G04", "G00+G02")):
    truth = data.expression(list(conditions))
    mean = truth + 1.0  # |error| = 1 everywhere
    path = root / "full" / "seed2" / "predictions" / f"{model}.h5ad"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run": model, "model": "dual_stream_mamba", "params": {}, "featureset": "full", "seed": 2}
    Prediction(model, list(conditions), list(GENES), mean, logvar, run=record, logvar_raw=raw).write(path)
    return path


def test_calibration_table_has_rows_before_and_after(rng, tmp_path):
    data = toy_dataset(rng)
    save_dataset(data, tmp_path / "full")
    shape = (2, len(GENES))
    calibrated = _write(tmp_path, data, "m", logvar=np.zeros(shape), raw=np.full(shape, np.log(0.01)))
    raw_only = _write(tmp_path, data, "r", logvar=np.zeros(shape))
    no_sigma = _write(tmp_path, data, "p")
    out = tmp_path / "calibration.tsv"
    assert main(["calibration", "--data-root", str(tmp_path), "--predictions", str(calibrated), str(raw_only),
                 str(no_sigma), "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t")
    assert list(table[["model", "calibrated"]].itertuples(index=False, name=None)) == [
        ("m", "no"), ("m", "yes"), ("r", "no")]
    assert set(table["featureset"]) == {"full"} and set(table["seed"]) == {2}
    before, after = table.iloc[0], table.iloc[1]
    # |error| = 1: with σ = 0.1 no interval holds the truth; with σ = 1 the 90% interval (z = 1.645) does
    assert before["coverage50"] == 0.0 and before["coverage90"] == 0.0
    assert after["coverage50"] == 0.0 and after["coverage90"] == 1.0
    assert after["nll"] == pytest.approx(0.5 * (np.log(2 * np.pi) + 1.0), rel=1e-5)  # 6 digits written
    assert before["nll"] == pytest.approx(0.5 * (np.log(2 * np.pi) + np.log(0.01) + 100.0), rel=1e-5)
