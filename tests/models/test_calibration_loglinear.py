"""The log-linear σ calibration (perturbench.models.calibration): formula, fit, selection."""

from __future__ import annotations

import numpy as np
import pytest

from perturbench.models.calibration import (
    LogLinearCalibration,
    SigmaCalibration,
    TemperedCalibration,
    _coverage_match,
    _fit_loglinear,
    fit_calibration,
    loglinear_design,
)


def test_apply_matches_the_hand_computed_formula():
    # genes with s² = 1 and 3, ε_s = ε_Δ = 1; one condition with Δ̂ = (1, 3): m_c = (1 + 9) / 2 = 5
    cal = LogLinearCalibration((0.5, 2.0, 1.0, 1.0, 1.0), np.array([1.0, 3.0]), 1.0, 1.0, 2)
    logvar, change = np.array([[0.0, 0.25]]), np.array([[1.0, 3.0]])
    expected = [0.5 + 0.0 + np.log(2) + np.log(6) + np.log(2),  # gene 0: log(1+1), log(5+1), log(1+1)
                0.5 + 0.5 + np.log(4) + np.log(6) + np.log(10)]  # gene 1: 2·0.25, log(3+1), log(9+1)
    np.testing.assert_allclose(cal.apply(logvar, change), [expected])
    assert cal.record()["form"] == "loglinear" and cal.record()["beta"] == [0.5, 2.0, 1.0, 1.0, 1.0]


def test_fit_recovers_the_weights_where_every_residual_equals_its_sigma(rng):
    logvar, change = rng.normal(0.0, 1.0, (30, 8)), rng.normal(0.0, 1.0, (30, 8))
    design = loglinear_design(logvar, change, rng.uniform(0.1, 2.0, 8), 0.05, 0.1)
    beta = np.array([-0.3, 0.6, 0.4, 0.2, 0.3])
    # the NLL's gradient ½ Σ x (1 − r² e^{−x·β}) vanishes at β when r² = e^{x·β} everywhere
    np.testing.assert_allclose(_fit_loglinear(design, np.exp(design @ beta)), beta, atol=1e-5)


def test_select_keeps_the_loglinear_form_when_errors_are_multiplicative(rng):
    spread, change = rng.uniform(0.05, 3.0, 6), rng.normal(0.0, 1.0, (4000, 6))
    logvar = rng.normal(0.0, 1.0, change.shape)
    eps_s, eps_c = 0.1 * spread.mean(), 0.1 * np.mean(change**2)  # the floors fit_calibration uses
    beta = np.array([-1.0, 0.5, 0.8, 0.0, 0.3])
    sigma = np.exp(0.5 * loglinear_design(logvar, change, spread, eps_s, eps_c) @ beta)
    truth = rng.normal(0.0, sigma)  # Gaussian errors with the log-linear σ'
    cal = fit_calibration(np.zeros_like(truth), logvar, truth, change, spread, mode="select")
    assert isinstance(cal, LogLinearCalibration)
    np.testing.assert_allclose(cal.beta, beta, atol=0.1)
    assert (cal.eps_spread, cal.eps_change) == pytest.approx((eps_s, eps_c))


def test_scale_mode_never_fits_the_loglinear_form(rng):
    change = rng.normal(0.0, 1.0, (500, 4))
    truth = rng.normal(0.0, np.abs(change) + 0.1)
    cal = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, np.ones(4), mode="scale")
    assert isinstance(cal, SigmaCalibration) and cal.b == cal.c == 0.0


def test_condition_covariates_add_their_weights_to_every_gene_of_the_condition():
    cal = LogLinearCalibration((0.0, 0.0, 0.0, 0.0, 0.0, 0.5, -1.0), np.ones(2), 1.0, 1.0, 4)
    covariates = np.array([[2.0, 1.0], [1.0, 0.0]])  # (unknown targets, combination) per condition
    out = cal.apply(np.zeros((2, 2)), np.zeros((2, 2)), covariates)
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.5, 0.5]])  # 2·0.5 − 1 = 0; 1·0.5 = 0.5
    with pytest.raises(ValueError, match="0 covariates, fitted with 2"):
        cal.apply(np.zeros((2, 2)), np.zeros((2, 2)))


def test_select_recovers_a_condition_level_covariate(rng):
    covariates = rng.integers(0, 3, (3000, 1)).astype(float)  # e.g. targets without a training effect
    change, logvar = rng.normal(0.0, 1.0, (3000, 4)), np.zeros((3000, 4))
    truth = rng.normal(0.0, np.exp(0.5 * (-1.0 + 0.7 * covariates)) * np.ones((1, 4)))
    cal = fit_calibration(np.zeros_like(truth), logvar, truth, change, np.ones(4), mode="select",
                          covariates=covariates)
    assert isinstance(cal, LogLinearCalibration) and cal.beta[5] == pytest.approx(0.7, abs=0.05)


def test_a_covariate_constant_on_validation_keeps_weight_zero(rng):
    change, unknown = rng.normal(0.0, 1.0, (2000, 3)), rng.integers(0, 2, 2000)
    truth = rng.normal(0.0, (0.5 + np.abs(change)) * np.exp(0.3 * unknown)[:, None])
    covariates = np.column_stack([np.ones(2000), unknown])  # every validation condition a combination
    cal = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, np.ones(3), mode="select",
                          covariates=covariates)
    assert isinstance(cal, LogLinearCalibration) and cal.beta[5] == 0.0
    assert cal.beta[6] == pytest.approx(0.6, abs=0.1)  # log σ'² gains 2 · 0.3 per unknown target


def test_condition_terms_fitted_on_few_conditions_lose_the_cross_fitted_selection(rng):
    # 4 validation conditions, errors ∝ the gene's spread only; a covariate unrelated to the errors
    spread = rng.uniform(0.05, 2.0, 300)
    truth = rng.normal(0.0, np.sqrt(spread), (4, 300))
    change = rng.normal(0.0, 1.0, truth.shape)
    covariates = rng.normal(0.0, 1.0, (4, 2))
    cal = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, spread, mode="select",
                          covariates=covariates)
    in_sample = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, spread, mode="select")
    assert isinstance(cal, SigmaCalibration) or (cal.beta[3] == 0.0 and cal.beta[5:] == (0.0, 0.0))
    assert type(cal) is type(in_sample)  # the unrelated covariates changed nothing


def test_tempered_calibration_is_the_hand_computed_power_of_its_base():
    base = SigmaCalibration(2.0, 0.0, 0.0, np.ones(2), 4)  # σ'² = 2σ²
    cal = TemperedCalibration(base, alpha=0.25, power=0.5)
    logvar = np.log([[1.0, 8.0]])
    # log σ''² = 2·0.25 + 0.5·log(2σ²): σ² = 1 → 0.5 + 0.5 log 2; σ² = 8 → 0.5 + 0.5 log 16
    np.testing.assert_allclose(cal.apply(logvar, np.zeros((1, 2))), [[0.5 + 0.5 * np.log(2), 0.5 + 0.5 * np.log(16)]])
    assert cal.record()["base"]["form"] == "additive" and cal.record()["power"] == 0.5


def test_coverage_match_restores_nominal_coverage_where_sigma_tracks_the_error_too_closely(rng):
    # |r| = σ' · w with w ∈ [0.8, 1.2]: any scale of σ' covers 0% or 100% of a level's residuals at
    # once; σ'^p with p < 1 mixes in the spread of σ' and gets both 50% and 90% near nominal
    scale = np.exp(rng.normal(0.0, 1.0, (50, 200)))
    residual = scale * rng.uniform(0.8, 1.2, scale.shape) * rng.choice([-1.0, 1.0], scale.shape)
    alpha, power = _coverage_match(scale**2, residual**2)
    var = np.exp(2 * alpha) * scale ** (2 * power)
    z50, z90 = 0.6744897501960817, 1.6448536269514722
    assert abs(np.mean(np.abs(residual) <= z50 * np.sqrt(var)) - 0.5) < 0.03
    assert abs(np.mean(np.abs(residual) <= z90 * np.sqrt(var)) - 0.9) < 0.03
    assert 0.0 < power < 1.0
