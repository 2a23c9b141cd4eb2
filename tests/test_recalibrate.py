"""`perturbench recalibrate`: σ refitted from a run's checkpoint, without retraining."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from perturbench import pipeline
from perturbench.cli import main
from perturbench.data.store import save_dataset
from perturbench.models.base import Prediction
from perturbench.splits import make_split, write_manifest
from tests._toydata import CONDITIONS, toy_dataset


def _fitted_run(rng, tmp_path):
    save_dataset(toy_dataset(rng), tmp_path / "full")
    split = make_split(CONDITIONS, seed=1, val_fraction=0.3)
    assert split.val  # the calibration needs validation conditions
    write_manifest(split, tmp_path / "split.json", dataset="toy")
    out = tmp_path / "pred.h5ad"
    pipeline.fit_predict(tmp_path / "full", tmp_path / "split.json", "dual_stream_mamba",
                         {"model": "dual_stream_mamba", "params": {"epochs": 1, "d_model": 8}}, out,
                         go_graph_path=None, go_table=None, log_dir=tmp_path / "log", device="cpu", featureset="full")
    return out


def _recalibrate(tmp_path, prediction, checkpoint, out):
    return main(["recalibrate", "--data-dir", str(tmp_path / "full"), "--split", str(tmp_path / "split.json"),
                 "--prediction", str(prediction), "--checkpoint", str(checkpoint), "--out", str(out)])


def test_recalibrate_restores_the_calibrated_sigma_of_the_fit(rng, tmp_path):
    fitted = Prediction.read(_fitted_run(rng, tmp_path))
    stale = tmp_path / "stale.h5ad"  # the same run with σ from elsewhere (an older calibration, say)
    dataclasses.replace(fitted, logvar=np.zeros_like(fitted.logvar)).write(stale)
    assert _recalibrate(tmp_path, stale, tmp_path / "log" / "model.pt", tmp_path / "new.h5ad") == 0
    new = Prediction.read(tmp_path / "new.h5ad")
    np.testing.assert_array_equal(new.mean, fitted.mean)
    np.testing.assert_allclose(new.logvar, fitted.logvar, atol=1e-6)
    np.testing.assert_allclose(new.logvar_raw, fitted.logvar_raw, atol=1e-6)
    assert new.run == fitted.run


def test_recalibrate_refuses_a_checkpoint_of_another_network(rng, tmp_path, capsys):
    prediction = _fitted_run(rng, tmp_path)
    state = torch.load(tmp_path / "log" / "model.pt", weights_only=False)
    state["state_dict"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, tmp_path / "other.pt")
    assert _recalibrate(tmp_path, prediction, tmp_path / "other.pt", tmp_path / "new.h5ad") == 1
    assert "the restored model does not reproduce the means" in capsys.readouterr().err
    assert not (tmp_path / "new.h5ad").exists()
