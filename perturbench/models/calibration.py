"""σ as a calibrated error bar of the predicted *mean*, fitted on validation conditions only.

The network's ``log σ²`` head is trained on training targets: at cell level it learns the
cell-to-cell noise of single cells (far wider than the error of a predicted condition mean), on
pseudobulk the residuals of conditions it has fitted. Here σ² is re-expressed as the variance of
the error of the predicted mean of an *unseen* condition, by one of the forms below.

Additive (:class:`SigmaCalibration`)::

    σ'²_cg = a · σ²_cg + b · s²_g + c · Δ̂²_cg            (a, b, c ≥ 0)

``s²_g`` is gene g's spread of the change over the training conditions,
``s²_g = (1/n) Σ_c (δ_cg − δ̄_g)²`` (genes that respond strongly to perturbations are predicted
with larger errors), and ``Δ̂_cg = μ_cg − ctrl_g`` the predicted change (large predicted changes
err more in absolute terms).

Log-linear (:class:`LogLinearCalibration`), multiplicative in the same quantities plus the
condition's predicted effect size ``m_c = (1/G) Σ_g Δ̂²_cg`` (conditions predicted to move many
genes strongly are predicted worse) and optional per-condition covariates ``z_c`` (k values, e.g.
the model's count of targets it has no training effect for, and whether c is a combination)::

    log σ'²_cg = β₀ + β₁ log σ²_cg + β₂ log(s²_g + ε_s) + β₃ log(m_c + ε_Δ) + β₄ log(Δ̂²_cg + ε_Δ)
                 + Σ_j β₄₊ⱼ z_cj

with floors ``ε_s = 0.1 · mean_g s²_g`` and ``ε_Δ = 0.1 · mean(Δ̂²)`` over the validation
predictions (a gene with no training spread or a change predicted as 0 keeps a finite log).

Every form minimises the Gaussian NLL of the validation residuals ``r_cg = y_cg − μ_cg``::

    NLL = (1/N) Σ_cg ½ [log 2π + log σ'²_cg + r²_cg / σ'²_cg]

(convex in β for the log-linear form). ``mode="scale"`` fixes ``b = c = 0`` (one factor; closed
form ``a = mean(r² / σ²)``). ``mode="select"`` considers five forms: the nested additive forms σ²;
σ² + s²; σ² + s² + Δ̂², the log-linear form without condition-level terms (β₃ = 0, no ``z``) and
the full log-linear form. Each is scored *cross-fitted over validation conditions*: the
conditions are split into K = min(5, C) folds (condition i in fold i mod K), each fold is scored
with the form fitted on the other folds, and the pooled held-out NLL and 50% / 90% coverage are
computed. The lowest held-out NLL among forms whose held-out coverage lies within 0.05 of nominal
wins (none within: the form closest to nominal) and is refitted on every validation condition.
Cross-fitting by condition matters where validation holds few conditions (a condition-level
weight fitted on 4 conditions predicts noise), and the coverage guard where the NLL optimum
tracks |r| closely yet misses the Gaussian shape (most true changes ≈ 0 and |r| ≈ |Δ̂|).

Coverage matching (:class:`TemperedCalibration`): when even the form closest to nominal misses
it by more than 0.10 (the benchmark's coverage tolerance; (α, p) fitted on the held-out coverage
of few validation conditions is itself noisy, so smaller misses are left alone), that form is
tempered, ``log σ''² = 2α + p · log σ'²``, with (α, p) matching its held-out 50% and 90% coverage
(:func:`_coverage_match`). p > 0 keeps the ranking of σ', so ρ(σ, |error|) is
unchanged while the intervals get the width the residuals' (non-Gaussian) shape needs.
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
_FLOOR_FRACTION = 0.1  # ε_s, ε_Δ = 0.1 × the mean of s², Δ̂² (module docstring)
_COVERAGE_TOLERANCE = 0.05  # forms whose held-out validation coverage misses nominal by more are not chosen
_FOLDS = 5  # cross-fitting folds over validation conditions
_TEMPER_ABOVE = 0.10  # the chosen form is tempered when its held-out coverage misses nominal by more


@dataclass(frozen=True)
class SigmaCalibration:
    """σ'² = a·σ² + b·s² + c·Δ̂² (module docstring); ``n_val`` = validation values it was fitted on."""

    a: float
    b: float
    c: float
    spread: np.ndarray  # (G,) s²_g
    n_val: int

    def apply(self, logvar: np.ndarray, change: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Calibrated log σ'² for raw ``logvar`` and predicted change ``change`` (both (C, G));
        the additive form ignores ``covariates``."""
        return np.log(self.a * np.exp(logvar) + self.b * self.spread + self.c * change**2 + _VAR_FLOOR)

    def record(self) -> dict:
        return {"form": "additive", "a": self.a, "b": self.b, "c": self.c, "n_val": self.n_val,
                "mean_spread": float(np.mean(self.spread))}


@dataclass(frozen=True)
class LogLinearCalibration:
    """log σ'² = β·(1, log σ², log(s² + ε_s), log(m_c + ε_Δ), log(Δ̂² + ε_Δ), z_c) (module docstring)."""

    beta: tuple[float, ...]  # 5 + k weights
    spread: np.ndarray  # (G,) s²_g
    eps_spread: float
    eps_change: float
    n_val: int

    def apply(self, logvar: np.ndarray, change: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Calibrated log σ'² for raw ``logvar``, predicted change ``change`` (both (C, G)) and the
        (C, k) ``covariates`` it was fitted with."""
        design = loglinear_design(logvar, change, self.spread, self.eps_spread, self.eps_change, covariates)
        if design.shape[-1] != len(self.beta):
            raise ValueError(f"LogLinearCalibration: {design.shape[-1] - 5} covariates, fitted with {len(self.beta) - 5}")
        return design @ np.asarray(self.beta)

    def record(self) -> dict:
        return {"form": "loglinear", "beta": list(self.beta), "eps_spread": self.eps_spread,
                "eps_change": self.eps_change, "n_val": self.n_val, "mean_spread": float(np.mean(self.spread))}


@dataclass(frozen=True)
class TemperedCalibration:
    """log σ''² = 2α + p · log σ'² of a fitted ``base`` form (module docstring: coverage matching)."""

    base: SigmaCalibration | LogLinearCalibration
    alpha: float
    power: float

    def apply(self, logvar: np.ndarray, change: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        return 2.0 * self.alpha + self.power * self.base.apply(logvar, change, covariates)

    def record(self) -> dict:
        return {"form": "tempered", "alpha": self.alpha, "power": self.power, "base": self.base.record(),
                "n_val": self.base.n_val}


Calibration = SigmaCalibration | LogLinearCalibration | TemperedCalibration


def loglinear_design(logvar: np.ndarray, change: np.ndarray, spread: np.ndarray, eps_spread: float,
                     eps_change: float, covariates: np.ndarray | None = None) -> np.ndarray:
    """(C, G, 5 + k) features of the log-linear form: 1, log σ², log(s²_g + ε_s), log(m_c + ε_Δ),
    log(Δ̂²_cg + ε_Δ) with m_c = mean_g Δ̂²_cg (from the predictions alone, no truth), then the
    (C, k) ``covariates`` repeated over genes."""
    sq = np.asarray(change, np.float64) ** 2  # (C, G) Δ̂²
    m = np.broadcast_to(sq.mean(axis=1, keepdims=True), sq.shape)  # (C, G) m_c
    gene = np.broadcast_to(np.log(np.asarray(spread, np.float64) + eps_spread), sq.shape)  # (C, G)
    base = np.stack([np.ones_like(sq), np.asarray(logvar, np.float64), gene, np.log(m + eps_change),
                     np.log(sq + eps_change)], axis=-1)  # (C, G, 5)
    if covariates is None:
        return base
    z = np.asarray(covariates, np.float64)
    if z.ndim != 2 or len(z) != len(sq):
        raise ValueError(f"loglinear_design: covariates shape {z.shape}, expected ({len(sq)}, k)")
    return np.concatenate([base, np.broadcast_to(z[:, None, :], (*sq.shape, z.shape[1]))], axis=-1)


def _fit_loglinear(design: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """β minimising the NLL ½ mean(x·β + r² e^{−x·β}) + const (convex; L-BFGS with its gradient)."""
    x, y = design.reshape(-1, design.shape[-1]), sq.ravel()  # (N, 5), (N,)

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = x @ beta
        scaled = y * np.exp(-eta)
        return float(0.5 * np.mean(eta + scaled)), 0.5 * x.T @ (1.0 - scaled) / len(y)

    start = np.zeros(x.shape[1])
    start[0] = np.log(max(float(np.mean(y)), _VAR_FLOOR))
    return minimize(objective, start, jac=True, method="L-BFGS-B").x


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
    mode: CalibrationMode, covariates: np.ndarray | None = None,
) -> Calibration:
    """Fit the calibration on validation predictions ``mean``, ``logvar``, predicted changes
    ``change`` and truths ``truth`` (all (C, G)); ``spread`` (G,) from training; ``covariates``
    (C, k) enter the log-linear form only. ``mode="select"`` scores each form of
    :data:`_FORMS` by its cross-fitted NLL over validation conditions (module docstring) and
    refits the chosen one on every validation condition."""
    shapes = {np.shape(mean), np.shape(logvar), np.shape(truth), np.shape(change)}
    if len(shapes) != 1 or np.shape(mean)[-1:] != np.shape(spread):
        raise ValueError(f"fit_calibration: shapes differ: mean/logvar/truth/change {sorted(shapes)}, "
                         f"spread {np.shape(spread)}")
    if np.size(mean) == 0:
        raise ValueError("fit_calibration: no validation values")
    arrays = _Validation(np.asarray(logvar, np.float64), np.asarray(change, np.float64),
                         (np.asarray(truth, np.float64) - mean) ** 2, spread,
                         None if covariates is None else np.asarray(covariates, np.float64))
    if mode == "scale":
        return _fit_form("additive1", arrays)
    held = {form: _held_out_variance(form, arrays) for form in _FORMS}  # (C, G) held-out σ'² per form
    scored = [(_coverage_error(var, arrays.sq), _nll(var, arrays.sq), i, form)
              for i, (form, var) in enumerate(held.items())]
    admissible = [item for item in scored if item[0] <= _COVERAGE_TOLERANCE]
    best = min(admissible, key=lambda item: item[1:3]) if admissible else min(scored, key=lambda item: item[:3])
    fitted = _fit_form(best[3], arrays)
    if best[0] <= _TEMPER_ABOVE:
        return fitted
    alpha, power = _coverage_match(held[best[3]], arrays.sq)
    return TemperedCalibration(fitted, alpha, power)


@dataclass(frozen=True)
class _Validation:
    """Validation arrays of one calibration fit, (C, G) each but ``spread`` (G,), ``covariates`` (C, k)."""

    logvar: np.ndarray
    change: np.ndarray
    sq: np.ndarray  # r²
    spread: np.ndarray
    covariates: np.ndarray | None

    def rows(self, index: np.ndarray) -> _Validation:
        z = None if self.covariates is None else self.covariates[index]
        return _Validation(self.logvar[index], self.change[index], self.sq[index], self.spread, z)

    def variance(self, cal: Calibration) -> np.ndarray:
        return np.exp(cal.apply(self.logvar, self.change, self.covariates))  # (C, G) σ'²


_FORMS = ("additive1", "additive2", "additive3", "loglinear_gene", "loglinear")


def _fit_form(form: str, v: _Validation) -> Calibration:
    """One form of :data:`_FORMS` fitted by NLL on ``v``."""
    if form.startswith("additive"):
        k = int(form[-1])
        terms = np.stack([np.exp(v.logvar), np.broadcast_to(v.spread, v.sq.shape), v.change**2])  # (3, C, G)
        w = np.zeros(3)
        w[:k] = _fit_weights(terms[:k], v.sq)
        return SigmaCalibration(float(w[0]), float(w[1]), float(w[2]), v.spread, int(v.sq.size))
    eps_spread = max(_FLOOR_FRACTION * float(np.mean(v.spread)), _VAR_FLOOR)
    eps_change = max(_FLOOR_FRACTION * float(np.mean(v.change**2)), _VAR_FLOOR)
    design = loglinear_design(v.logvar, v.change, v.spread, eps_spread, eps_change, v.covariates)  # (C, G, 5 + k)
    # condition-level columns (m_c, covariates): none in loglinear_gene, and one constant over the
    # conditions is confounded with β₀; either way its weight stays 0
    level = np.r_[False, False, False, True, False, np.ones(design.shape[-1] - 5, bool)]
    varies = ~level | ((np.ptp(design[:, 0, :], axis=0) > 0) & (form == "loglinear"))
    beta = np.zeros(design.shape[-1])
    beta[varies] = _fit_loglinear(design[..., varies], v.sq)
    return LogLinearCalibration(tuple(float(b) for b in beta), v.spread, eps_spread, eps_change, int(v.sq.size))


def _held_out_variance(form: str, v: _Validation) -> np.ndarray:
    """(C, G) σ'² of ``form`` on validation conditions it was not fitted on: conditions in
    K = min(5, C) folds (c mod K), each predicted by a fit on the others; in-sample when C = 1."""
    n = len(v.sq)
    folds = min(_FOLDS, n)
    if folds < 2:
        return v.variance(_fit_form(form, v))
    var = np.empty_like(v.sq)
    for k in range(folds):
        held = np.arange(n) % folds == k
        var[held] = v.rows(held).variance(_fit_form(form, v.rows(~held)))
    return var


def _coverage_match(var: np.ndarray, sq: np.ndarray) -> tuple[float, float]:
    """(α, p) of σ''² = e^{2α} σ'^{2p} whose 50% / 90% coverage is closest to nominal: for each
    p on a grid 0.05 … 1.5, u = |r| / σ'^p and α = mean over levels of log(q_level(u) / z_level)
    (q: the empirical quantile at the level); ties go to p nearest 1. ρ(σ'', |r|) = ρ(σ', |r|)."""
    best: tuple[float, float, float, float] | None = None
    for power in np.round(np.arange(0.05, 1.5001, 0.05), 2):
        u = np.sqrt(sq) / var ** (power / 2)
        alpha = float(np.mean([np.log(max(float(np.quantile(u, level)), _VAR_FLOOR) / z) for level, z in _LEVELS]))
        error = _coverage_error(np.exp(2 * alpha) * var**power, sq)
        key = (round(error, 4), abs(power - 1.0), alpha, float(power))
        best = key if best is None or key < best else best
    return best[2], best[3]
