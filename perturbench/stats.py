"""Multiplicity correction and rank agreement, pure functions of arrays (ground floor).

- :func:`holm`: Holm (1979) step-down adjusted p-values, family-wise error control.
- :func:`kendall_tau`: Kendall's τ-b between two score vectors over the entries both define.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau

from perturbench.errors import PerturbenchError


class StatsError(PerturbenchError, ValueError):
    """Invalid input to a statistics helper; the message names the function and the value."""


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    With the m non-NaN p-values sorted ascending, p_(1) ≤ … ≤ p_(m):
    ``p_holm_(i) = min(1, max_{j ≤ i} (m − j + 1) · p_(j))``.
    NaN entries (tests that could not be run) stay NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise StatsError(f"holm: p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)][:3]}")
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> tuple[float, int]:
    """(Kendall τ-b, n) between ``a`` and ``b`` over the positions where both are non-NaN.

    τ-b = (n_c − n_d) / √((n₀ − n₁)(n₀ − n₂)), n₀ = n(n − 1)/2, n₁ / n₂ the tied pairs within
    ``a`` / ``b`` (scipy's ``kendalltau``). NaN when fewer than two shared entries or one side
    is constant.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise StatsError(f"kendall_tau: shapes differ {x.shape} vs {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    n = int(ok.sum())
    if n < 2 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), n
    return float(kendalltau(x[ok], y[ok]).statistic), n
