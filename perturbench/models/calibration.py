"""σ as a calibrated error bar of the predicted *mean*, fitted on validation conditions only.

The network's ``log σ²`` head is trained on training targets: at cell level it learns the
cell-to-cell noise of single cells (far wider than the error of a predicted condition mean), on
pseudobulk the residuals of conditions it has fitted. Here σ² is re-expressed as the variance of
the error of the predicted mean of an *unseen* condition::

    σ'²_cg = a · σ²_cg + b · s²_g + c · Δ̂²_cg            (a, b, c ≥ 0)

``s²_g`` is gene g's spread of the change over the training conditions,
``s²_g = (1/n) Σ_c (δ_cg − δ̄_g)²`` (genes that respond strongly to perturbations are predicted
with larger errors), and ``Δ̂_cg = μ_cg − ctrl_g`` the predicted change (large predicted changes
err more in absolute terms). ``(a, b, c)`` minimise the Gaussian NLL of the validation residuals
``r_cg = y_cg − μ_cg``::

    NLL(a, b, c) = (1/N) Σ_cg ½ [log 2π + log σ'²_cg + r²_cg / σ'²_cg]

``mode="scale"`` fixes ``b = c = 0`` (one factor; closed form ``a = mean(r² / σ²)``);
``mode="select"`` fits the nested forms σ²; σ² + s²; σ² + s² + Δ̂² and keeps the one whose
*validation* 50% / 90% coverage is closest to nominal (the NLL optimum of a richer form can track
|r| closely yet miss the Gaussian shape, e.g. where most true changes are ≈ 0 and |r| ≈ |Δ̂|).
Test conditions never enter: :func:`fit_calibration` sees validation arrays and training changes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

CalibrationMode = Literal["scale", "select"]
_VAR_FLOOR = 1e-12  # keeps σ'² > 0 where σ² and s² vanish together
_LEVELS = ((0.5, float(norm.ppf(0.75))), (0.9, float(norm.ppf(0.95))))  # (level, z)


@dataclass(frozen=True)
class SigmaCalibration:
    """σ'² = a·σ² + b·s² + c·Δ̂² (module docstring); ``n_val`` = validation values it was fitted on."""

    a: float
    b: float
    c: float
    spread: np.ndarray  # (G,) s²_g
    n_val: int

    def apply(self, logvar: np.ndarray, change: np.ndarray) -> np.ndarray:
        """Calibrated log σ'² for raw ``logvar`` and predicted change ``change`` (both (C, G))."""
        return np.log(self.a * np.exp(logvar) + self.b * self.spread + self.c * change**2 + _VAR_FLOOR)

    def record(self) -> dict:
        return {"a": self.a, "b": self.b, "c": self.c, "n_val": self.n_val, "mean_spread": float(np.mean(self.spread))}


def gene_spread(train_deltas: np.ndarray) -> np.ndarray:
    """s²_g: per-gene population variance of the training changes (n_train, G) → (G,)."""
    deltas = np.asarray(train_deltas, dtype=np.float64)
    if deltas.ndim != 2 or deltas.shape[0] == 0:
        raise ValueError(f"gene_spread: need a (n_conditions ≥ 1, genes) array, got shape {deltas.shape}")
    return deltas.var(axis=0)


def _nll(var: np.ndarray, sq: np.ndarray) -> float:
    return float(np.mean(0.5 * (np.log(2 * np.pi) + np.log(var) + sq / var)))


def _coverage_error(var: np.ndarray, sq: np.ndarray) -> float:
    """max over levels 0.5, 0.9 of |share of r² ≤ z²σ'² − level| (z = Φ⁻¹((1 + level)/2))."""
    return max(abs(float(np.mean(sq <= z * z * var)) - level) for level, z in _LEVELS)


def _fit_weights(terms: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Non-negative weights w (k,) minimising NLL(Σ_k w_k · terms_k) (Nelder–Mead on log w)."""

    def objective(theta: np.ndarray) -> float:
        return _nll(np.tensordot(np.exp(theta), terms, axes=1) + _VAR_FLOOR, sq)

    if len(terms) == 1:
        return np.array([max(float(np.mean(sq / terms[0])), _VAR_FLOOR)])  # closed form: mean(r²/σ²)
    # start: each term alone would explain an equal share of the mean squared residual
    start = np.log([max(float(np.mean(sq)) / max(float(np.mean(t)), _VAR_FLOOR), _VAR_FLOOR) / len(terms)
                    for t in terms])
    best = minimize(objective, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
    return np.exp(best.x)


def fit_calibration(
    mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray, change: np.ndarray, spread: np.ndarray, *,
    mode: CalibrationMode,
) -> SigmaCalibration:
    """Fit the calibration on validation predictions ``mean``, ``logvar``, predicted changes
    ``change`` and truths ``truth`` (all (C, G)); ``spread`` (G,) from training. ``mode="select"``
    fits the three nested forms (σ²; σ², s²; σ², s², Δ̂²) by NLL and keeps the one whose
    validation coverage of the 50% and 90% intervals is closest to nominal (ties within 0.01: lower NLL)."""
    shapes = {np.shape(mean), np.shape(logvar), np.shape(truth), np.shape(change)}
    if len(shapes) != 1 or np.shape(mean)[-1:] != np.shape(spread):
        raise ValueError(f"fit_calibration: shapes differ: mean/logvar/truth/change {sorted(shapes)}, "
                         f"spread {np.shape(spread)}")
    if np.size(mean) == 0:
        raise ValueError("fit_calibration: no validation values")
    sq = (np.asarray(truth, np.float64) - mean) ** 2  # (C, G) r²
    var = np.exp(np.asarray(logvar, np.float64))  # (C, G) σ²
    terms = np.stack([var, np.broadcast_to(spread, var.shape), np.asarray(change, np.float64) ** 2])  # (3, C, G)
    scored = []
    for k in ((1,) if mode == "scale" else (1, 2, 3)):
        w = np.zeros(3)
        w[:k] = _fit_weights(terms[:k], sq)
        fitted = np.tensordot(w, terms, axes=1) + _VAR_FLOOR
        scored.append((round(_coverage_error(fitted, sq) / 0.01), _nll(fitted, sq), k, w))
    _, _, _, (a, b, c) = min(scored, key=lambda item: item[:3])
    return SigmaCalibration(float(a), float(b), float(c), spread, int(sq.size))
