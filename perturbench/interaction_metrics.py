"""Metrics comparing a model's genetic-interaction parameters with the truth's, over test doubles.

Inputs are per-double tables of :func:`perturbench.interactions.gi_table` (truth: measured Δ_AB;
model: predicted Δ̂_AB, both regressed on the *measured* singles). Pure functions of arrays and
tables; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from perturbench.interactions import PLANTED_CLASS, GIConfig

NAN = float("nan")
CURVE_COLUMNS = ["n_called", "tpr", "fdp"]
_TIE_DECIMALS = 4  # scores equal to 1e-4 are ties (the additive model's fits differ by solver tolerance)


def magnitude_spearman(true_magnitude: np.ndarray, pred_magnitude: np.ndarray) -> float:
    """Spearman ρ of predicted vs true magnitude (average ranks for ties).

    NaN with fewer than 3 doubles or a constant side (e.g. the additive model, whose magnitude
    is √2 for every double).
    """
    t = np.round(np.asarray(true_magnitude, dtype=np.float64), _TIE_DECIMALS)
    p = np.round(np.asarray(pred_magnitude, dtype=np.float64), _TIE_DECIMALS)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return NAN
    return float(spearmanr(t, p)[0])


def precision_at_k(true_score: np.ndarray, pred_score: np.ndarray, k: int, *, largest: bool = True) -> float:
    """|top-k by truth ∩ top-k by prediction| / k (top = largest, or smallest with ``largest=False``).

    Scores are rounded to 4 decimals; ties at the prediction's cut-off are resolved in expectation over a uniformly random order:
    with S the doubles strictly inside the cut-off, T those tied at it and r = k − |S| places
    left, the overlap is |S ∩ true| + r · |T ∩ true| / |T|. Ties at the truth's cut-off go to the
    earlier double. NaN when there are no more than k doubles (the top-k would be everything).
    """
    t = np.asarray(true_score, dtype=np.float64) * (1 if largest else -1)
    p = np.round(np.asarray(pred_score, dtype=np.float64) * (1 if largest else -1), _TIE_DECIMALS)
    if t.size <= k or k < 1:
        return NAN
    true_top = np.zeros(t.size, dtype=bool)
    true_top[np.argsort(-t, kind="stable")[:k]] = True
    cut = np.sort(p)[::-1][k - 1]
    inside, tied = p > cut, p == cut
    left = k - int(inside.sum())
    overlap = true_top[inside].sum() + left * true_top[tied].sum() / tied.sum()
    return float(overlap / k)


def interacting(true_deviation: np.ndarray, noise: np.ndarray, factor: float) -> np.ndarray:
    """A double interacts when its true deviation from additivity exceeds ``factor`` × its noise level."""
    return np.asarray(true_deviation, dtype=np.float64) > factor * np.asarray(noise, dtype=np.float64)


def detection_curve(is_interacting: np.ndarray, pred_score: np.ndarray) -> pd.DataFrame:
    """Ahlmann-Eltze et al.'s interaction-detection curve: TPR vs false discovery proportion.

    Doubles are called in decreasing ``pred_score`` (the predicted deviation from additivity);
    at each distinct score the n_called doubles at or above it give TPR = TP / P and
    FDP = (n_called − TP) / n_called, P = number of truly interacting doubles (TPR NaN when P = 0).
    Tied scores enter together, so the additive model (score 0 everywhere) has one point,
    (TPR 1, FDP 1 − P/n).
    """
    truth = np.asarray(is_interacting, dtype=bool)
    score = np.round(np.asarray(pred_score, dtype=np.float64), _TIE_DECIMALS)
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(truth[order])
    called = np.arange(1, truth.size + 1)
    last_of_tie = np.r_[score[order][1:] != score[order][:-1], True]
    positives = truth.sum()
    tpr = tp / positives if positives else np.full(tp.shape, NAN)
    curve = pd.DataFrame({"n_called": called, "tpr": tpr, "fdp": (called - tp) / called})
    return curve[last_of_tie].reset_index(drop=True)


def tpr_at_fdp(curve: pd.DataFrame, level: float = 0.2) -> float:
    """Largest TPR among curve points with FDP ≤ ``level`` (0 when none; NaN when TPR is undefined)."""
    if curve.empty or curve["tpr"].isna().all():
        return NAN
    ok = curve[curve["fdp"] <= level]
    return float(ok["tpr"].max()) if len(ok) else 0.0


def class_recall(classes: pd.Series, planted: pd.Series) -> dict[str, float]:
    """Per planted type t: #(doubles of type t classified as PLANTED_CLASS[t]) / #(type t).

    ``classes`` and ``planted`` are indexed by condition; only shared conditions count; NaN for
    a type without doubles.
    """
    shared = classes.index.intersection(planted.index)
    got, want = classes.loc[shared], planted.loc[shared]
    out = {}
    for kind, cls in PLANTED_CLASS.items():
        mask = (want == kind).to_numpy()
        out[f"recall_{kind}"] = float(np.mean(got[mask] == cls)) if mask.any() else NAN
    return out


def interaction_metrics(
    truth: pd.DataFrame, pred: pd.DataFrame, noise: Mapping[str, float], *, cfg: GIConfig
) -> dict[str, float]:
    """Metrics of one model run over the doubles both tables have (indexed by condition).

    ``magnitude_spearman``; ``precision_at_k_synergy`` / ``_suppression`` (top-k largest /
    smallest true magnitude, k = ``cfg.top_k``); ``tpr_at_fdp20`` of the detection curve (truth:
    :func:`interacting` with ``noise[condition]``; score: predicted ``deviation``);
    ``class_agreement`` = fraction of doubles with the true GI class; ``n_doubles``.
    """
    shared = truth.index.intersection(pred.index)
    t, p = truth.loc[shared], pred.loc[shared]
    hits = interacting(t["deviation"], np.array([noise[c] for c in shared]), cfg.noise_factor)
    curve = detection_curve(hits, p["deviation"].to_numpy())
    k = cfg.top_k
    return {
        "n_doubles": float(len(shared)),
        "magnitude_spearman": magnitude_spearman(t["magnitude"], p["magnitude"]),
        "precision_at_k_synergy": precision_at_k(t["magnitude"], p["magnitude"], k, largest=True),
        "precision_at_k_suppression": precision_at_k(t["magnitude"], p["magnitude"], k, largest=False),
        "tpr_at_fdp20": tpr_at_fdp(curve, 0.2),
        "class_agreement": float(np.mean(t["gi_class"] == p["gi_class"])) if len(shared) else NAN,
    }
