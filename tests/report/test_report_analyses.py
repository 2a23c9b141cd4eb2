"""Report analyses: hand-computed values, invariants, one test per kind of bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import false_discovery_control

from perturbench.report.analyses import (
    AnalysisError,
    attribution_agreement,
    benjamini_hochberg,
    calibration,
    ceiling_by_subgroup,
    column_variance,
    gaussian_nll,
    gene_groups,
    go_enrichment,
    group_shares,
    interval_coverage,
    per_gene_sd,
    recurrent_genes,
    relative_error,
    top_changed_genes,
    top_up_shares,
    variance_contribution,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


# -- dataset card ----------------------------------------------------------------------------
def test_gene_groups_follow_the_feature_set_patterns():
    genes = ["MT-CO1", "RPL13A", "RPS6KA1", "ACTB", "RPS4X", "MRPL1"]
    groups = gene_groups(genes)
    assert groups["MT-"].tolist() == [True, False, False, False, False, False]
    assert groups["RPS/RPL"].tolist() == [False, True, False, False, True, False]


def test_column_variance_dense_and_sparse_agree(rng):
    x = rng.poisson(1.0, size=(30, 6)).astype(float)
    np.testing.assert_allclose(column_variance(sp.csr_matrix(x)), x.var(axis=0), atol=1e-12)
    np.testing.assert_allclose(column_variance(sp.csr_matrix(x), block_rows=7), x.var(axis=0), atol=1e-12)
    np.testing.assert_allclose(column_variance(np.array([[1.0, 2.0], [3.0, 2.0]])), [1.0, 0.0])


def test_column_variance_rejects_no_rows():
    with pytest.raises(AnalysisError, match="no rows"):
        column_variance(np.zeros((0, 3)))


def test_group_shares_by_hand():
    shares = group_shares(np.array([1.0, 3.0]), {"a": np.array([True, False]), "b": np.array([False, False])})
    assert shares == {"a": 0.25, "b": 0.0}
    assert math.isnan(group_shares(np.zeros(2), {"a": np.array([True, False])})["a"])


def test_group_shares_rejects_mask_of_wrong_shape():
    with pytest.raises(AnalysisError, match="mask 'a' has shape"):
        group_shares(np.ones(3), {"a": np.array([True, False])})


def test_variance_contribution_by_hand():
    genes = ["MT-ND1", "RPL3", "G1"]
    expression = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])  # variances 8/9, 2/9, 8/9
    deltas = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 2.0]])  # variances 1, 0, 1; mean squares 1, 0, 2
    table = variance_contribution(sp.csr_matrix(expression), deltas, genes)
    assert table.loc["MT-", "expression_variance"] == pytest.approx(4 / 9)
    assert table.loc["RPS/RPL", "expression_variance"] == pytest.approx(1 / 9)
    assert table.loc["MT-", "effect_variance"] == pytest.approx(0.5)
    assert table.loc["RPS/RPL", "effect_variance"] == 0.0
    assert table.loc["MT-", "effect_mean_square"] == pytest.approx(1 / 3)
    assert table["n_genes"].tolist() == [1, 1]


def test_variance_contribution_rejects_gene_count_mismatch():
    with pytest.raises(AnalysisError, match="3 genes but expression"):
        variance_contribution(np.zeros((2, 2)), np.zeros((2, 3)), ["A", "B", "C"])


def test_top_up_shares_by_hand():
    genes = ["MT-ND1", "RPL3", "G1", "G2", "RPS6KA1"]  # RPS6KA1 is a kinase, not ribosomal
    deltas = np.array([[3.0, 2.0, 1.0, -1.0, 0.5],  # top 2 up: MT-ND1, RPL3
                       [-1.0, -2.0, 0.0, 4.0, 1.0]])  # only G2 and RPS6KA1 rise among the top 2
    shares = top_up_shares(deltas, genes, top=2)
    assert shares["MT-"] == pytest.approx(1 / 4)
    assert shares["RPS/RPL"] == pytest.approx(1 / 4)
    one_up = top_up_shares(np.array([[-1.0, 2.0, 0.0, -1.0, 0.0]]), genes, top=3)  # only RPL3 > 0
    assert one_up == {"MT-": 0.0, "RPS/RPL": 1.0}
    assert math.isnan(top_up_shares(-np.ones((1, 5)), genes)["MT-"])
    with pytest.raises(AnalysisError, match="do not match 5 genes"):
        top_up_shares(np.zeros((1, 4)), genes)


# -- uncertainty ------------------------------------------------------------------------------
def test_gaussian_nll_by_hand():
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    assert gaussian_nll(np.zeros(1), np.zeros(1), np.ones(1)) == pytest.approx(half_log_2pi + 0.5)
    assert gaussian_nll(np.zeros(1), np.log([4.0]), np.array([2.0])) == pytest.approx(
        half_log_2pi + 0.5 * math.log(4.0) + 0.5
    )


def test_interval_coverage_by_hand():
    y = np.array([0.5, 0.7, -0.6, 2.0])  # z(50%) = 0.674, z(90%) = 1.645
    zeros = np.zeros(4)
    assert interval_coverage(zeros, zeros, y, 0.5) == 0.5
    assert interval_coverage(zeros, zeros, y, 0.9) == 0.75
    assert interval_coverage(zeros, np.full(4, np.log(4.0)), y, 0.5) == 0.75  # σ = 2 widens the interval


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_interval_coverage_rejects_level_outside_unit_interval(level):
    with pytest.raises(AnalysisError, match=f"level must lie in \\(0, 1\\), got {level}"):
        interval_coverage(np.zeros(2), np.zeros(2), np.zeros(2), level)


def test_calibration_ranks_sigma_against_error():
    mu = np.zeros((2, 3))
    y = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    result = calibration(mu, np.log(y**2), y)  # σ = |error| exactly
    assert result["spearman_sigma_abs_error"] == pytest.approx(1.0)
    assert (result["coverage50"], result["coverage90"], result["n"]) == (0.0, 1.0, 6)  # |y − μ| = σ: z50 < 1 < z90
    assert math.isnan(calibration(mu, np.zeros((2, 3)), y)["spearman_sigma_abs_error"])


def test_calibration_rejects_mismatched_shapes():
    with pytest.raises(AnalysisError, match="shapes differ"):
        calibration(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 2)))


def test_calibration_rejects_empty_input():
    with pytest.raises(AnalysisError, match="no values"):
        calibration(np.zeros(0), np.zeros(0), np.zeros(0))


# -- what the models learned ------------------------------------------------------------------
def test_top_changed_genes_by_hand():
    genes = ["A", "B", "C", "D"]
    pred = np.array([[0.1, -3.0, 2.0, 0.0], [1.0, -1.0, 0.5, 0.0]])
    assert top_changed_genes(pred, np.zeros(4), genes, top=2) == [["B", "C"], ["A", "B"]]


def test_top_changed_genes_ignores_rounding_level_changes():
    ctrl = np.array([5.0, 2.0, 1.0])
    pred = ctrl.astype(np.float32).astype(np.float64)[None, :] + np.array([[0.0, 0.0, 0.3]])
    assert top_changed_genes(pred, ctrl, ["A", "B", "C"], top=2) == [["C"]]


def test_top_changed_genes_rejects_shape_mismatch():
    with pytest.raises(AnalysisError, match="vs 3 genes"):
        top_changed_genes(np.zeros((1, 2)), np.zeros(3), ["A", "B", "C"])


def test_top_changed_genes_rejects_non_positive_top():
    with pytest.raises(AnalysisError, match="top must be >= 1, got 0"):
        top_changed_genes(np.zeros((1, 2)), np.zeros(2), ["A", "B"], top=0)


def test_recurrent_genes_counts_each_list_once():
    table = recurrent_genes([["A", "B"], ["A", "C"], ["B", "A", "A"], []])
    assert table[["gene", "count"]].values.tolist() == [["A", 3], ["B", 2], ["C", 1]]
    assert table["n"].unique().tolist() == [4]
    assert table["fraction"].tolist() == [0.75, 0.5, 0.25]


def test_attribution_agreement_by_hand():
    a = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0}
    b = {"A": 4.0, "B": 3.0, "C": 2.0, "D": 1.0, "E": 9.0}
    table = attribution_agreement({"a": a, "b": b}, k=2).set_index(["model_a", "model_b"])
    assert table.loc[("a", "b"), "spearman"] == pytest.approx(-1.0)
    assert table.loc[("a", "b"), "overlap"] == 0  # top-2 |value|: {C, D} vs {A, B}
    assert table.loc[("a", "b"), "n_shared"] == 4
    assert table.loc[("a", "a"), "spearman"] == pytest.approx(1.0)
    assert table.loc[("b", "b"), "overlap"] == 2 and table.loc[("b", "b"), "n_shared"] == 5


def test_attribution_agreement_uses_absolute_values_and_nan_for_constants():
    a = {"A": -5.0, "B": 1.0, "C": 0.5}
    b = {"A": 5.0, "B": 1.0, "C": 1.0}
    table = attribution_agreement({"a": a, "b": b}, k=1).set_index(["model_a", "model_b"])
    assert table.loc[("a", "b"), "overlap"] == 1  # both rank A first by |value|
    constant = attribution_agreement({"a": {"A": 1.0, "B": 1.0, "C": 1.0}, "b": b})
    assert constant["spearman"].isna().sum() == 3  # every pair involving the constant model


def test_attribution_agreement_rejects_non_positive_k():
    with pytest.raises(AnalysisError, match="k must be >= 1, got 0"):
        attribution_agreement({"a": {"A": 1.0}}, k=0)


def test_benjamini_hochberg_by_hand_and_against_scipy(rng):
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    p = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p, method="bh"))


def test_benjamini_hochberg_rejects_invalid_pvalues():
    with pytest.raises(AnalysisError, match="must lie in \\[0, 1\\]"):
        benjamini_hochberg([0.1, float("nan")])


def test_go_enrichment_by_hand():
    gene2go = {"G1": frozenset({"T1", "T2"}), "G2": frozenset({"T1"}), "G3": frozenset({"T2"}),
               "G4": frozenset({"T3"}), "G5": frozenset()}
    table = go_enrichment(["G1", "G2", "G5"], ["G1", "G2", "G3", "G4", "G5", "G6"], gene2go)
    # universe N = 4 annotated genes, query n = 2 (G5 has no terms)
    assert table["term"].tolist() == ["T1", "T2"]
    assert table[["k", "n", "K", "N"]].values.tolist() == [[2, 2, 2, 4], [1, 2, 2, 4]]
    np.testing.assert_allclose(table["p"], [1 / 6, 5 / 6])  # C(2,2)/C(4,2); 1 − C(2,2)/C(4,2)
    np.testing.assert_allclose(table["q"], [0.5, 1.0])  # BH over T1, T2 and T3 (p = 1)


def test_go_enrichment_without_annotated_query_is_empty():
    table = go_enrichment(["X"], ["X", "G1"], {"G1": frozenset({"T1"})})
    assert table.empty and list(table.columns) == ["term", "k", "n", "K", "N", "p", "q"]


# -- results ----------------------------------------------------------------------------------
def _long_table(values: dict[str, list[float]], metric: str = "l2_top1000") -> pd.DataFrame:
    rows = [("full", model, 1, f"C{i}", "unseen_single", metric, v)
            for model, vals in values.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["featureset", "model", "seed", "condition", "subgroup", "metric", "value"])


def test_relative_error_by_hand():
    table = _long_table({"mean": [2.0, 0.0, 4.0], "ridge": [1.0, 1.0, 6.0]})
    out = relative_error(table)
    assert out["model"].unique().tolist() == ["ridge"]
    np.testing.assert_array_equal(out["ratio"].to_numpy(), [0.5, np.nan, 1.5])


def test_relative_error_rejects_missing_reference():
    with pytest.raises(AnalysisError, match="reference model 'mean' has no 'l2_top1000' values"):
        relative_error(_long_table({"ridge": [1.0]}))


def test_relative_error_rejects_missing_columns():
    with pytest.raises(AnalysisError, match="lacks columns \\['seed'\\]"):
        relative_error(_long_table({"mean": [1.0]}).drop(columns="seed"))


def test_per_gene_sd_by_hand():
    np.testing.assert_allclose(per_gene_sd(np.array([[1.0, 2.0], [3.0, 2.0]])), [1.0, 0.0])
    with pytest.raises(AnalysisError, match="no rows"):
        per_gene_sd(np.zeros((0, 2)))


def test_ceiling_by_subgroup_pools_seeds():
    ceiling = pd.DataFrame({"condition": ["A", "B"], "n_cells": [10, 10], "r_half": [0.5, 0.7],
                            "r_full": [0.6, 0.8], "mse_de20_half": [0.4, 0.8], "mse_de20_floor": [0.1, 0.2]})
    assignments = pd.DataFrame({"seed": [1, 1, 2], "condition": ["A", "B", "A"],
                                "subgroup": ["unseen_single", "combo_seen1", "combo_seen1"]})
    table = ceiling_by_subgroup(ceiling, assignments).set_index("subgroup")
    assert table.loc["combo_seen1", "n"] == 2
    assert table.loc["combo_seen1", "r_full"] == pytest.approx(0.7)
    assert table.loc["all", "n"] == 3
    assert table.loc["all", "mse_de20_floor"] == pytest.approx(0.4 / 3)
