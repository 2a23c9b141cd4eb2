"""Report section "Which component carries the gain": paired differences, Holm, the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perturbench.report.components import ablation_table, verdict
from perturbench.stats import holm


def _table(rng, effects: dict[str, float], n: int = 30) -> pd.DataFrame:
    """Per-condition pearson_delta of the full model and of runs shifted by ``effects`` (+ noise)."""
    base = rng.uniform(0.2, 0.8, n)
    rows = []
    for model, shift in {"dual_stream_mamba": 0.0, **effects}.items():
        noise = 0.0 if model == "dual_stream_mamba" else rng.normal(0.0, 0.01, n)
        for i, value in enumerate(base + shift + noise):
            rows.append({"featureset": "full", "model": model, "seed": 1, "condition": f"C{i}",
                         "subgroup": "unseen_single" if i % 2 else "combo_seen2", "metric": "pearson_delta",
                         "value": value})
    return pd.DataFrame(rows)


def test_ablation_rows_are_paired_means_with_holm_over_the_table(rng):
    table = _table(rng, {"dual_stream_mamba_no_prior": -0.2, "dual_stream_mamba_attention": 0.0})
    variants = {"no_prior": "dual_stream_mamba_no_prior", "attention": "dual_stream_mamba_attention"}
    out = ablation_table(table, variants, metrics=("pearson_delta",))
    assert len(out) == 2 * 3  # variants × (two subgroups + all)
    wide = table.pivot(index="condition", columns="model", values="value")
    row = out[(out["variant"] == "no_prior") & (out["subgroup"] == "all")].iloc[0]
    assert row["diff"] == pytest.approx((wide["dual_stream_mamba_no_prior"] - wide["dual_stream_mamba"]).mean())
    assert row["n"] == 30 and row["better"] is False and row["p_holm"] < 0.05
    np.testing.assert_allclose(out["p_holm"], holm(out["p"]))


def test_verdict_names_what_matters_and_what_does_not(rng):
    table = _table(rng, {"dual_stream_mamba_no_prior": -0.2, "dual_stream_mamba_attention": 0.0005})
    out = ablation_table(table, {"no_prior": "dual_stream_mamba_no_prior",
                                 "attention": "dual_stream_mamba_attention"}, metrics=("pearson_delta",))
    sentence = verdict(out, "toy", metrics=("pearson_delta",))
    assert "removing the ridge prior worsens pearson_delta (Δ -0.2" in sentence
    assert "so these components matter; no significant difference from replacing Mamba by attention." in sentence
    assert verdict(out.iloc[0:0], "toy") == "No component ablation of pearson_delta, mse_de20 on toy was run."


def test_prior_only_is_compared_with_the_ridge_baseline(rng):
    table = _table(rng, {"dual_stream_mamba_prior_only": -0.05, "ridge": -0.1})
    out = ablation_table(table, {"prior_only": "dual_stream_mamba_prior_only"}, metrics=("pearson_delta",))
    row = out[(out["variant"] == "prior_only vs ridge") & (out["subgroup"] == "all")].iloc[0]
    assert row["diff"] == pytest.approx(0.05, abs=0.01) and row["better"] is True
