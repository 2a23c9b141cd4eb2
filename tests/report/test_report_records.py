"""The report reads what a run was from its record (``uns['run']``), not from names or the config."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perturbench.models.base import Prediction
from perturbench.report.loaders import DatasetResults

MAMBA = {"d_state": 16, "gene_order": "spectral", "epochs": 5}


def results_with_runs(tmp_path, runs: dict[str, tuple[str, dict]]) -> DatasetResults:
    """A DatasetResults whose prediction files (seed 1, full) carry the given (model, params) records."""
    res = DatasetResults("d", tmp_path, {}, pd.DataFrame(), pd.DataFrame(), ["full"], list(runs), {1: None}, {})
    for run, (model, params) in runs.items():
        pred = Prediction(model=run, conditions=["A"], genes=["G"], mean=np.zeros((1, 1)),
                          run={"run": run, "model": model, "params": params})
        res._cache[("pred", "full", 1, run)] = pred
    return res


def test_the_gene_order_variant_is_not_a_dstate_point(tmp_path):
    """norman.yaml's ``dual_stream_mamba_dataset_order`` (d_state 16, gene_order dataset) used to be
    plotted as a second point at d_state = 16 of the ablation figure."""
    res = results_with_runs(tmp_path, {
        "ridge": ("ridge", {"lam": 1.0}),
        "dual_stream_mamba": ("dual_stream_mamba", MAMBA),
        "dual_stream_mamba_dataset_order": ("dual_stream_mamba", {**MAMBA, "gene_order": "dataset"}),
        "dual_stream_mamba_dstate4": ("dual_stream_mamba", {**MAMBA, "d_state": 4}),
        "dual_stream_mamba_dstate128": ("dual_stream_mamba", {**MAMBA, "d_state": 128}),
    })
    assert res.dstate_runs() == {"dual_stream_mamba": 16, "dual_stream_mamba_dstate4": 4,
                                 "dual_stream_mamba_dstate128": 128}


def test_d_state_comes_from_the_record_whatever_the_run_is_called(tmp_path):
    res = results_with_runs(tmp_path, {
        "deep": ("dual_stream_mamba", MAMBA),
        "deep_small": ("dual_stream_mamba", {**MAMBA, "d_state": 8}),
    })
    assert res.dstate_runs() == {"deep": 16, "deep_small": 8}


def test_no_ablation_without_two_state_sizes(tmp_path):
    res = results_with_runs(tmp_path, {
        "dual_stream_mamba": ("dual_stream_mamba", MAMBA),
        "dual_stream_mamba_dataset_order": ("dual_stream_mamba", {**MAMBA, "gene_order": "dataset"}),
    })
    assert res.dstate_runs() == {}
