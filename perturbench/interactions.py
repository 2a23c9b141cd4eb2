"""Genetic-interaction (GI) parameters of two-gene perturbations, after Norman et al. 2019 / GEARS.

For a double ``A+B`` with measured single changes ``Δ_A``, ``Δ_B`` and double change ``Δ_AB``
(vectors over the G genes, each relative to control), the double is regressed on the singles
without intercept, ``Δ_AB ≈ c1·Δ_A + c2·Δ_B``:

- ``c1``, ``c2``: Theil–Sen coefficients (:func:`theil_sen_2d`); ``magnitude`` = √(c1² + c2²)
  (an additive double has c1 = c2 = 1, magnitude √2 ≈ 1.414);
- ``corr_fit`` = corr(c1·Δ_A + c2·Δ_B, Δ_AB) (Pearson), how well the singles explain the double;
- ``dominance`` = |log10(c1 / c2)| (NaN when c1/c2 ≤ 0 or undefined), one gene masking the other;
- ``dcor`` = dCor([Δ_A, Δ_B], Δ_AB), ``dcor_first`` = dCor(Δ_A, Δ_AB), ``dcor_second`` =
  dCor(Δ_B, Δ_AB), ``dcor_singles`` = dCor(Δ_A, Δ_B) (Székely's distance correlation, ``dcor``
  package), ``eq_contr`` = min(dcor_first, dcor_second) / max(dcor_first, dcor_second);
- ``ols_c1``, ``ols_c2``, ``ols_magnitude``: the same regression by least squares;
- ``deviation`` = √((1/G) Σ_g (Δ_AB,g − Δ_A,g − Δ_B,g)²), the RMS deviation from additivity.

These are GEARS ``get_coeffs``'s quantities (there Theil–Sen is scikit-learn's with
``max_subpopulation=1e5``, ``random_state=1000``). :func:`classify` turns them into GI classes
with the thresholds of :class:`GIConfig`; the metric functions at the end compare a model's
parameters with the truth's over test doubles. This module imports only the condition names of
perturbench.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dcor
import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from perturbench.data.conditions import targets
from perturbench.errors import ConfigError

NAN = float("nan")
GI_CLASSES = ("neomorphism", "epistasis", "synergy", "suppression", "additive")
# simulator's planted type (perturbench.data.simulate) -> the GI class that recovers it
PLANTED_CLASS = {"synergistic": "synergy", "buffering": "suppression", "epistatic": "epistasis",
                 "additive": "additive"}
PARAM_COLUMNS = ["c1", "c2", "magnitude", "corr_fit", "dominance", "dcor", "dcor_first", "dcor_second",
                 "dcor_singles", "eq_contr", "ols_c1", "ols_c2", "ols_magnitude", "deviation"]


@dataclass(frozen=True)
class GIConfig:
    """Thresholds and estimator settings of the GI analysis (config key ``interactions``).

    Classes are assigned in this order (first match wins), following the Norman et al. / GEARS
    categories: ``neomorphism`` when corr_fit < ``neomorphism_corr_fit`` (the singles do not
    explain the double); ``epistasis`` when dominance > ``epistasis_dominance`` (one coefficient
    ≥ 10^0.5 ≈ 3.2 times the other); ``synergy`` when magnitude > ``synergy_magnitude``;
    ``suppression`` when magnitude < ``suppression_magnitude``; ``additive`` otherwise. The
    magnitude defaults are ≈ 1.2·√2 and ≈ 0.78·√2 around the additive value √2.

    ``top_genes`` restricts the regression (not ``deviation``) to the genes the singles move
    most, chosen from the singles alone. Norman et al. fit all genes of deeply sampled
    conditions; with few cells per condition most genes are noise, and noise in the regressors
    shrinks c1, c2 towards 0 (errors in variables). ``noise_factor``: the RMS of pure noise over
    G genes has relative SD ≈ 1/√(2G), so 1.2 is several SDs above the noise for G ≥ 100.
    """

    synergy_magnitude: float = 1.7
    suppression_magnitude: float = 1.1
    neomorphism_corr_fit: float = 0.5
    epistasis_dominance: float = 0.5
    top_k: int = 10  # precision@k of the top-k synergistic / suppressive true pairs
    noise_factor: float = 1.2  # interacting pair: deviation > noise_factor × noise level
    top_genes: int | None = None  # regress on the genes with the largest Δ_A² + Δ_B² (None: all genes)
    max_subpopulation: int = 100_000  # Theil–Sen gene pairs sampled (all pairs when fewer)
    seed: int = 1000  # Theil–Sen pair sampling (GEARS's random_state)


def gi_config(params: Mapping[str, object]) -> GIConfig:
    """:class:`GIConfig` from the config's ``interactions`` mapping; unknown keys are an error."""
    known = set(GIConfig.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"interactions: unknown key(s) {unknown}; known: {sorted(known)}")
    return GIConfig(**params)


def _weiszfeld_step(px: np.ndarray, py: np.ndarray, x_old: np.ndarray) -> np.ndarray:
    """One modified Weiszfeld step (Vardi & Zhang 2000) towards the spatial median of the points
    (px_i, py_i); points within machine epsilon of ``x_old`` get weight 0 and pull ``x_old`` in."""
    eps = np.finfo(np.float64).eps
    dx, dy = px - x_old[0], py - x_old[1]
    norm = np.hypot(dx, dy)
    keep = norm >= eps
    at_point = int(not keep.all())
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=keep)
    quotient = float(np.hypot(dx @ inv, dy @ inv))
    if quotient <= eps:
        return x_old
    direction = np.array([px @ inv, py @ inv]) / inv.sum()
    return max(0.0, 1.0 - at_point / quotient) * direction + min(1.0, at_point / quotient) * x_old


def spatial_median(points: np.ndarray, *, max_iter: int = 1000, tol: float = 1e-6) -> np.ndarray:
    """argmin_x Σ_i ‖p_i − x‖₂ over 2-D ``points`` (m, 2), modified Weiszfeld iterations from the mean.

    Stops when the squared step is below tol² (scikit-learn's ``_spatial_median`` rule). The
    tolerance is tighter than scikit-learn's default 1e-3, which leaves errors of that order: an
    exactly additive double (every pair solving to (1, 1) but a few ill-conditioned ones) would get
    magnitudes differing at 1e-4 and a spurious ranking.
    """
    px, py = np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
    x = points.mean(axis=0)
    for _ in range(max_iter):
        new = _weiszfeld_step(px, py, x)
        done = np.sum((new - x) ** 2) < tol**2
        x = new
        if done:
            break
    return x


def _gene_pairs(n: int, max_subpopulation: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j when C(n, 2) ≤ max_subpopulation, else that many random pairs i ≠ j."""
    if n * (n - 1) // 2 <= max_subpopulation:
        return np.triu_indices(n, k=1)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=max_subpopulation)
    j = (i + rng.integers(1, n, size=max_subpopulation)) % n
    return i, j


def theil_sen_2d(x: np.ndarray, y: np.ndarray, *, max_subpopulation: int = 100_000, seed: int = 1000) -> np.ndarray:
    """Theil–Sen coefficients of y ≈ X·c without intercept, X of shape (G, 2).

    Each gene pair (i, j) gives the exact solution of the 2×2 system X[[i, j]]·c = y[[i, j]]
    (minimum-norm least squares when singular); the estimate is the spatial median of these
    solutions (:func:`spatial_median`). With every pair used this equals scikit-learn's
    ``TheilSenRegressor(fit_intercept=False, tol=1e-6, max_iter=1000)`` (tested); with more than ``max_subpopulation``
    pairs both sample that many, here from ``default_rng(seed)``. Vectorised: fast enough for
    every double × model × seed, where the scikit-learn loop takes seconds per fit.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    i, j = _gene_pairs(x.shape[0], max_subpopulation, seed)
    a = np.stack([x[i], x[j]], axis=1)  # (m, 2, 2): rows are the two genes
    b = np.stack([y[i], y[j]], axis=1)  # (m, 2)
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    scale = np.abs(a).reshape(len(det), -1).max(axis=1) ** 2
    regular = np.abs(det) > 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny)
    sol = np.empty((len(det), 2))
    ar, br, dr = a[regular], b[regular], det[regular]
    sol[regular, 0] = (br[:, 0] * ar[:, 1, 1] - ar[:, 0, 1] * br[:, 1]) / dr
    sol[regular, 1] = (ar[:, 0, 0] * br[:, 1] - br[:, 0] * ar[:, 1, 0]) / dr
    if not regular.all():
        sol[~regular] = np.einsum("mij,mj->mi", np.linalg.pinv(a[~regular]), b[~regular])
    return spatial_median(sol)


def gi_parameters(
    delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray, *, cfg: GIConfig, with_dcor: bool = True
) -> dict[str, float]:
    """The :data:`PARAM_COLUMNS` of one double (formulas in the module docstring).

    ``with_dcor=False`` leaves the distance correlations and ``eq_contr`` NaN (O(G²) each; the
    model-side metrics do not use them).
    """
    da_all, db_all, dab_all = (np.asarray(v, dtype=np.float64) for v in (delta_a, delta_b, delta_ab))
    genes = _regression_genes(da_all, db_all, cfg.top_genes)
    da, db, dab = da_all[genes], db_all[genes], dab_all[genes]
    x = np.column_stack([da, db])
    c1, c2 = theil_sen_2d(x, dab, max_subpopulation=cfg.max_subpopulation, seed=cfg.seed)
    ols = np.linalg.lstsq(x, dab, rcond=None)[0]
    fit = x @ np.array([c1, c2])
    ratio = c1 / c2 if c2 != 0 else NAN
    d_first, d_second = (_dcor(da, dab), _dcor(db, dab)) if with_dcor else (NAN, NAN)
    top = max(d_first, d_second)
    return {
        "c1": float(c1), "c2": float(c2), "magnitude": float(np.hypot(c1, c2)),
        "corr_fit": _pearson(fit, dab),
        "dominance": float(abs(np.log10(ratio))) if ratio > 0 else NAN,
        "dcor": _dcor(x, dab) if with_dcor else NAN, "dcor_first": d_first, "dcor_second": d_second,
        "dcor_singles": _dcor(da, db) if with_dcor else NAN,
        "eq_contr": float(min(d_first, d_second) / top) if top > 0 else NAN,
        "ols_c1": float(ols[0]), "ols_c2": float(ols[1]), "ols_magnitude": float(np.hypot(*ols)),
        "deviation": float(np.sqrt(np.mean((dab_all - da_all - db_all) ** 2))),
    }


def _regression_genes(da: np.ndarray, db: np.ndarray, top: int | None) -> np.ndarray:
    """All gene positions, or the ``top`` with the largest Δ_A² + Δ_B² (ties to the earlier gene)."""
    if top is None or top >= da.size:
        return np.arange(da.size)
    return np.sort(np.argsort(-(da**2 + db**2), kind="stable")[:top])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN
    return float(np.corrcoef(a, b)[0, 1])


def _dcor(a: np.ndarray, b: np.ndarray) -> float:
    """Distance correlation; NaN when either input is constant.

    1-D inputs: ``dcor.distance_correlation`` (its O(n log n) AVL algorithm). 2-D ``a`` (the two
    singles): :func:`distance_correlation_2d`, the same V-statistic without dcor's slow generic path.
    """
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN
    if a.ndim == 2:
        return distance_correlation_2d(a, b)
    return float(dcor.distance_correlation(a, b, method="avl"))


def _centred_distances(x: np.ndarray) -> np.ndarray:
    d = cdist(x.reshape(len(x), -1), x.reshape(len(x), -1))
    return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()


def distance_correlation_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's (biased, V-statistic) distance correlation dCor(x, y).

    A_ij = ‖x_i − x_j‖ double-centred (minus row and column means, plus the grand mean), B the same
    for y; dCov² = mean(A∘B), dCor = √(dCov²(x, y) / √(dCov²(x, x) · dCov²(y, y))). Equals
    ``dcor.distance_correlation`` (tested). O(n²) memory: n = genes.
    """
    a, b = _centred_distances(np.asarray(x, dtype=np.float64)), _centred_distances(np.asarray(y, dtype=np.float64))
    xy, xx, yy = np.mean(a * b), np.mean(a * a), np.mean(b * b)
    return float(np.sqrt(max(xy, 0.0) / np.sqrt(xx * yy)))


def classify(params: Mapping[str, float], cfg: GIConfig) -> str:
    """GI class of one double from its parameters (rules and order in :class:`GIConfig`)."""
    if params["corr_fit"] < cfg.neomorphism_corr_fit or np.isnan(params["corr_fit"]):
        return "neomorphism"
    if params["dominance"] > cfg.epistasis_dominance:
        return "epistasis"
    if params["magnitude"] > cfg.synergy_magnitude:
        return "synergy"
    if params["magnitude"] < cfg.suppression_magnitude:
        return "suppression"
    return "additive"


def double_pairs(conditions: list[str], singles: set[str]) -> list[tuple[str, str, str]]:
    """(double, gene A, gene B) for every two-gene condition whose two singles are in ``singles``."""
    out = []
    for cond in conditions:
        genes = targets(cond)
        if len(genes) == 2 and genes[0] in singles and genes[1] in singles:
            out.append((cond, genes[0], genes[1]))
    return out


def gi_table(
    singles: Mapping[str, np.ndarray], doubles: Mapping[str, np.ndarray], *, cfg: GIConfig, with_dcor: bool = True
) -> pd.DataFrame:
    """One row per double of ``doubles`` whose singles are in ``singles`` (gene → Δ).

    Columns: condition, gene_a, gene_b, :data:`PARAM_COLUMNS`, gi_class; sorted by condition.
    """
    rows = []
    for cond, a, b in double_pairs(sorted(doubles), set(singles)):
        params = gi_parameters(singles[a], singles[b], doubles[cond], cfg=cfg, with_dcor=with_dcor)
        rows.append({"condition": cond, "gene_a": a, "gene_b": b, **params, "gi_class": classify(params, cfg)})
    return pd.DataFrame(rows, columns=["condition", "gene_a", "gene_b", *PARAM_COLUMNS, "gi_class"])
