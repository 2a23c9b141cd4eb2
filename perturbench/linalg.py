"""Ground-floor linear algebra shared by the closed-form baselines and the dual-stream model's ridge
prior (numpy / scipy only: importing it loads neither torch nor the models)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg as sla

Solver = Literal["fast", "reference"]


def ridge_solve(x: np.ndarray, y: np.ndarray, *, lam: float, solver: Solver = "fast") -> np.ndarray:
    """W = argmin ‖Y − XW‖² + λ‖W‖² = (XᵀX + λI)⁻¹ XᵀY.

    fast: Cholesky of the p × p Gram matrix; reference: least squares on [X; √λ I] W = [Y; 0].
    With Y = I (n × n) it returns the ridge operator (XᵀX + λI)⁻¹ Xᵀ itself.
    """
    p = x.shape[1]
    if solver == "fast":
        return sla.cho_solve(sla.cho_factor(x.T @ x + lam * np.eye(p)), x.T @ y)
    augmented = np.vstack([x, np.sqrt(lam) * np.eye(p)])
    target = np.vstack([y, np.zeros((p, y.shape[1]))])
    return np.linalg.lstsq(augmented, target, rcond=None)[0]
