"""Per-condition Spearman of σ vs error (perturbench.report.analyses.condition_spearman), by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perturbench.report.analyses import calibration, condition_spearman


def test_condition_spearman_ranks_rms_sigma_against_rms_error():
    logvar = np.log([[1.0, 1.0], [4.0, 4.0], [1.0, 17.0]])  # σ̄_c = √mean σ² = 1, 2, 3
    mean = np.array([[3.0, -3.0], [1.0, 1.0], [0.0, 2.0 * np.sqrt(2.0)]])  # e_c = 3, 1, 2
    truth = np.zeros_like(mean)
    # ranks (1, 2, 3) vs (3, 1, 2): d = (−2, 1, 1), ρ = 1 − 6·6 / (3·8) = −0.5
    assert condition_spearman(mean, logvar, truth) == pytest.approx(-0.5)
    assert calibration(mean, logvar, truth)["spearman_condition"] == pytest.approx(-0.5)


def test_condition_spearman_is_nan_for_too_few_conditions_or_a_constant_sigma():
    mean = np.array([[1.0, 2.0], [3.0, 1.0]])
    assert math.isnan(condition_spearman(mean, np.zeros_like(mean), np.zeros_like(mean)))  # two conditions
    mean = np.arange(6.0).reshape(3, 2)
    assert math.isnan(condition_spearman(mean, np.zeros_like(mean), np.zeros_like(mean)))  # σ constant
