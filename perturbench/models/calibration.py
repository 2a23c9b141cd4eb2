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

``mode="scale"`` fixes ``b = c = 0`` (one factor; closed form ``a = mean(r² / σ²)``). Test
conditions never enter: :func:`fit_calibration` sees validation arrays and training changes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize

CalibrationMode = Literal["scale", "scale_spread"]
_VAR_FLOOR = 1e-12  # keeps σ'² > 0 where σ² and s² vanish together


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


def fit_calibration(
    mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray, change: np.ndarray, spread: np.ndarray, *,
    mode: CalibrationMode,
) -> SigmaCalibration:
    """Fit (a, b, c) on validation predictions ``mean``, ``logvar``, predicted changes ``change``
    and truths ``truth`` (all (C, G)); ``spread`` (G,) from training."""
    shapes = {np.shape(mean), np.shape(logvar), np.shape(truth), np.shape(change)}
    if len(shapes) != 1 or np.shape(mean)[-1:] != np.shape(spread):
        raise ValueError(f"fit_calibration: shapes differ: mean/logvar/truth/change {sorted(shapes)}, "
                         f"spread {np.shape(spread)}")
    if np.size(mean) == 0:
        raise ValueError("fit_calibration: no validation values")
    sq = (np.asarray(truth, np.float64) - mean) ** 2  # (C, G) r²
    var = np.exp(np.asarray(logvar, np.float64))  # (C, G) σ²
    a0 = max(float(np.mean(sq / var)), _VAR_FLOOR)  # the b = c = 0 optimum
    if mode == "scale":
        return SigmaCalibration(a0, 0.0, 0.0, spread, int(sq.size))
    terms = np.stack([var, np.broadcast_to(spread, var.shape), np.asarray(change, np.float64) ** 2])  # (3, C, G)

    def objective(theta: np.ndarray) -> float:
        return _nll(np.tensordot(np.exp(theta), terms, axes=1) + _VAR_FLOOR, sq)

    # start: each term alone would explain a third of the mean squared residual
    start = np.log([max(float(np.mean(sq)) / max(float(np.mean(t)), _VAR_FLOOR), _VAR_FLOOR) / 3 for t in terms])
    best = minimize(objective, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
    scale_only = np.log([a0, _VAR_FLOOR, _VAR_FLOOR])
    a, b, c = np.exp(best.x if objective(best.x) <= objective(scale_only) else scale_only)
    return SigmaCalibration(float(a), float(b), float(c), spread, int(sq.size))
