"""Ground-floor linear algebra shared by the closed-form baselines and the dual-stream model's ridge
prior (numpy / scipy only: importing it loads neither torch nor the models)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sparse

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


def design_ridge_fit(x: np.ndarray, y: np.ndarray, *, lam: float, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) = argmin ‖Y − XW − 1bᵀ‖² + λ‖W‖² for a 0/1 design X (b = 0 when not ``intercept``).

    With n rows and x̄, ȳ the column means, eliminating b leaves the normal equations
    (XᵀX − n x̄x̄ᵀ + λI) W = XᵀY − n x̄ȳᵀ, and b = ȳ − x̄ W (without intercept x̄ = ȳ = 0). XᵀX
    and XᵀY come from the sparse X (work ∝ its non-zeros × n_genes, not n · p · n_genes). When
    no two targets share a row (a single-gene screen) XᵀX = diag(c) with c the targets' row
    counts, and Sherman–Morrison inverts the rank-one update: with D = c + λ, u = √n x̄ and
    R the right-hand side, W = D⁻¹R + D⁻¹u (uᵀD⁻¹R) / (1 − uᵀD⁻¹u), O(p · n_genes); otherwise a
    Cholesky solve of the p × p system. Equal to :func:`ridge_solve` on the centred X, Y.
    """
    n, p = x.shape
    design = sparse.csr_matrix(x)
    gram = (design.T @ design).toarray()
    x_mean = np.asarray(design.mean(axis=0)).ravel() if intercept else np.zeros(p)
    y_mean = y.mean(axis=0) if intercept else np.zeros(y.shape[1])
    rhs = np.asarray(design.T @ y) - n * np.outer(x_mean, y_mean)  # (p, n_genes)
    u = np.sqrt(n) * x_mean
    counts = np.diag(gram)
    if np.array_equal(gram, np.diag(counts)):
        d = counts + lam
        d_inv_r, d_inv_u = rhs / d[:, None], u / d
        w = d_inv_r + np.outer(d_inv_u, u @ d_inv_r) / (1.0 - u @ d_inv_u)
    else:
        w = sla.cho_solve(sla.cho_factor(gram - np.outer(u, u) + lam * np.eye(p)), rhs)
    return w, y_mean - x_mean @ w
