"""Genetic-interaction parameters, classes and metrics: hand-computed values, planted GI types,
scikit-learn / dcor agreement, and Norman et al.'s published fits."""

from __future__ import annotations

import dcor
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import TheilSenRegressor

from perturbench.interaction_metrics import (
    class_recall,
    detection_curve,
    interaction_metrics,
    magnitude_spearman,
    precision_at_k,
    tpr_at_fdp,
)
from perturbench.interactions import (
    GIConfig,
    classify,
    distance_correlation_2d,
    double_pairs,
    gi_parameters,
    gi_table,
    spatial_median,
    theil_sen_2d,
)

CFG = GIConfig()


@pytest.fixture
def singles(rng):
    return rng.normal(size=200), rng.normal(size=200)


def test_theil_sen_equals_sklearn_with_all_pairs(rng):
    x = rng.normal(size=(40, 2))
    y = x @ np.array([1.3, -0.4]) + rng.standard_t(2, size=40)
    ref = TheilSenRegressor(fit_intercept=False, tol=1e-6, max_iter=1000, random_state=0).fit(x, y).coef_
    np.testing.assert_allclose(theil_sen_2d(x, y), ref, rtol=1e-10, atol=1e-12)
    loose = TheilSenRegressor(fit_intercept=False, random_state=0).fit(x, y).coef_  # its default tol 1e-3
    np.testing.assert_allclose(spatial_median_of_pairs(x, y, tol=1e-3), loose, rtol=1e-10, atol=1e-12)


def spatial_median_of_pairs(x, y, *, tol):
    """Theil–Sen over all pairs with a given spatial-median tolerance (the same steps as theil_sen_2d)."""
    i, j = np.triu_indices(len(y), k=1)
    sol = np.array([np.linalg.solve(x[[a, b]], y[[a, b]]) for a, b in zip(i, j)])
    return spatial_median(sol, tol=tol, max_iter=300)


def test_theil_sen_ignores_outlier_genes_unlike_least_squares(singles):
    a, b = singles
    y = 1.5 * a + 0.5 * b
    y[:10] += 50.0  # 5% gross outliers
    params = gi_parameters(a, b, y, cfg=CFG, with_dcor=False)
    assert params["c1"] == pytest.approx(1.5, abs=1e-6) and params["c2"] == pytest.approx(0.5, abs=1e-6)
    assert abs(params["ols_c1"] - 1.5) > 0.1


def test_spatial_median_of_a_square_plus_centre_is_the_centre():
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(spatial_median(pts, tol=1e-9), [1.0, 1.0], atol=1e-9)


def test_planted_synergy(singles):
    a, b = singles
    p = gi_parameters(a, b, 2.0 * (a + b), cfg=CFG)
    assert p["c1"] == pytest.approx(2.0) and p["c2"] == pytest.approx(2.0)
    assert p["magnitude"] == pytest.approx(2 * np.sqrt(2))
    assert p["corr_fit"] == pytest.approx(1.0) and p["dominance"] == pytest.approx(0.0, abs=1e-9)
    assert p["deviation"] == pytest.approx(np.sqrt(np.mean((a + b) ** 2)))
    assert p["ols_magnitude"] == pytest.approx(2 * np.sqrt(2))
    assert classify(p, CFG) == "synergy"


def test_planted_suppression(singles):
    a, b = singles
    p = gi_parameters(a, b, 0.4 * (a + b), cfg=CFG)
    assert p["magnitude"] == pytest.approx(0.4 * np.sqrt(2))
    assert p["deviation"] == pytest.approx(0.6 * np.sqrt(np.mean((a + b) ** 2)))
    assert classify(p, CFG) == "suppression"


def test_planted_epistasis_additive_and_neomorphism(singles, rng):
    a, b = singles
    epi = gi_parameters(a, b, a + 0.05 * b, cfg=CFG)
    assert epi["dominance"] == pytest.approx(np.log10(20.0))
    assert classify(epi, CFG) == "epistasis"
    assert classify(gi_parameters(a, b, a + b, cfg=CFG), CFG) == "additive"
    neo = gi_parameters(a, b, rng.normal(size=a.size), cfg=CFG)
    assert neo["corr_fit"] < 0.5 and classify(neo, CFG) == "neomorphism"


def test_distance_correlations_match_dcor(singles):
    a, b = singles
    y = np.sin(a) + b**2
    p = gi_parameters(a, b, y, cfg=CFG)
    assert p["dcor"] == pytest.approx(dcor.distance_correlation(np.column_stack([a, b]), y), rel=1e-10)
    assert p["dcor_first"] == pytest.approx(dcor.distance_correlation(a, y), rel=1e-10)
    assert p["dcor_singles"] == pytest.approx(dcor.distance_correlation(a, b), rel=1e-10)
    assert p["eq_contr"] == pytest.approx(min(p["dcor_first"], p["dcor_second"]) / max(p["dcor_first"], p["dcor_second"]))
    assert distance_correlation_2d(a, a) == pytest.approx(1.0)


def test_dominance_undefined_for_opposite_signs_and_dcor_skippable(singles):
    a, b = singles
    p = gi_parameters(a, b, a - b, cfg=CFG, with_dcor=False)
    assert np.isnan(p["dominance"]) and np.isnan(p["dcor"]) and np.isnan(p["eq_contr"])


def test_double_pairs_and_table_need_both_singles(singles):
    a, b = singles
    assert double_pairs(["A", "A+B", "A+C", "B", "A+B+C"], {"A", "B"}) == [("A+B", "A", "B")]
    table = gi_table({"A": a, "B": b}, {"A+B": 2 * (a + b), "A+C": a}, cfg=CFG)
    assert list(table["condition"]) == ["A+B"] and list(table["gi_class"]) == ["synergy"]


def test_precision_at_k_hand_computed():
    true = np.array([5.0, 4, 3, 2, 1, 0])
    assert precision_at_k(true, np.array([0.0, 4, 5, 3, 1, 2]), 2) == pytest.approx(0.5)
    assert precision_at_k(true, np.array([0.0, 4, 5, 3, 1, 2]), 2, largest=False) == pytest.approx(0.5)
    assert precision_at_k(true, np.full(6, 1.414), 2) == pytest.approx(2 / 6)  # ties: expectation k/n
    assert precision_at_k(true, true, 2) == 1.0
    assert np.isnan(precision_at_k(true, true, 6))


def test_detection_curve_hand_computed():
    truth = np.array([True, False, True, False])
    curve = detection_curve(truth, np.array([0.9, 0.8, 0.1, 0.8]))
    assert curve["n_called"].tolist() == [1, 3, 4]
    np.testing.assert_allclose(curve["tpr"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(curve["fdp"], [0.0, 2 / 3, 0.5])
    assert tpr_at_fdp(curve, 0.2) == 0.5
    flat = detection_curve(truth, np.zeros(4))
    assert flat[["tpr", "fdp"]].to_numpy().tolist() == [[1.0, 0.5]]


def test_magnitude_spearman_and_class_recall():
    assert magnitude_spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert np.isnan(magnitude_spearman([1, 2, 3], [1.414, 1.414, 1.414]))
    idx = ["a", "b", "c", "d"]
    classes = pd.Series(["synergy", "additive", "suppression", "synergy"], index=idx)
    planted = pd.Series(["synergistic", "synergistic", "buffering", "additive"], index=idx)
    rec = class_recall(classes, planted)
    assert rec["recall_synergistic"] == 0.5 and rec["recall_buffering"] == 1.0
    assert rec["recall_additive"] == 0.0 and np.isnan(rec["recall_epistatic"])


def test_interaction_metrics_perfect_and_additive_model(rng):
    genes = {g: rng.normal(size=100) for g in "ABCDEFGHIJKL"}
    coefs = np.linspace(0.3, 2.5, 11)
    names = [f"A+{g}" for g in "BCDEFGHIJKL"]
    doubles = {n: c * (genes["A"] + genes[n[-1]]) for n, c in zip(names, coefs)}
    truth = gi_table(genes, doubles, cfg=CFG, with_dcor=False).set_index("condition")
    additive = gi_table(genes, {n: genes["A"] + genes[n[-1]] for n in names}, cfg=CFG, with_dcor=False)
    noise = {n: 0.1 for n in names}
    cfg = GIConfig(top_k=3)
    perfect = interaction_metrics(truth, truth, noise, cfg=cfg)
    assert perfect["magnitude_spearman"] == pytest.approx(1.0) and perfect["precision_at_k_synergy"] == 1.0
    assert perfect["tpr_at_fdp20"] == 1.0 and perfect["class_agreement"] == 1.0 and perfect["n_doubles"] == 11
    flat = interaction_metrics(truth, additive.set_index("condition"), noise, cfg=cfg)
    assert np.isnan(flat["magnitude_spearman"]) and flat["precision_at_k_synergy"] == pytest.approx(3 / 11)


def test_norman_published_fits_agree_with_our_truth_side(shared_file, tmp_path):
    """Truth-side magnitudes on the shared Norman log fold-changes vs the Norman lab's own fits."""
    from perturbench.data.tables import norman_npz_to_pseudobulk, read_pseudobulk_table

    fits = pd.read_csv(shared_file("norman2019_gi_regression_fits.csv"))
    npz = shared_file("norman2019_pseudobulk_lfc.npz")
    ds = read_pseudobulk_table(norman_npz_to_pseudobulk(npz, tmp_path / "n.h5ad"), name="n", delta_only=True)
    delta = dict(zip(ds.conditions, ds.expression(ds.conditions) - ds.ctrl))
    singles = {c: v for c, v in delta.items() if "+" not in c and c != "ctrl"}
    doubles = {c: v for c, v in delta.items() if "+" in c}
    table = gi_table(singles, doubles, cfg=GIConfig(max_subpopulation=20_000), with_dcor=False)
    fits["condition"] = ["+".join(sorted(n.split("_"))) for n in fits["name"]]
    both = table.merge(fits, on="condition")
    assert len(both) >= 110
    assert spearmanr(both["magnitude"], both["coef_norm"])[0] >= 0.75
    assert spearmanr(both["magnitude"], both["ts_norm"])[0] >= 0.75


def test_top_genes_regresses_on_the_genes_the_singles_move(rng):
    a, b = np.zeros(200), np.zeros(200)
    a[:5], b[3:8] = rng.normal(3, 1, 5), rng.normal(-3, 1, 5)
    double = 2 * (a + b)
    double[8:] = rng.normal(size=192)  # noise where the singles do nothing
    p = gi_parameters(a, b, double, cfg=GIConfig(top_genes=8), with_dcor=False)
    assert p["magnitude"] == pytest.approx(2 * np.sqrt(2)) and p["corr_fit"] == pytest.approx(1.0)
    assert p["deviation"] == pytest.approx(np.sqrt(np.mean((double - a - b) ** 2)))  # all genes
    assert gi_parameters(a, b, double, cfg=CFG, with_dcor=False)["corr_fit"] < 0.99
