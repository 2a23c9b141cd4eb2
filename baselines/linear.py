"""Linear baselines in closed form: ridge, graph-regularised ridge, two-stage, linear embedding.

Notation: X (n_conditions × p) multi-hot design over the p target genes seen in training,
Δ = Y − c the training deltas (n_conditions × n_genes) with c the control profile, W (p × n_genes).

Intercept (``intercept: true``, the default, as the reference study, Kavirayuni & Venturelli):
the ridge family fits ``min ‖Δ − XW − 1bᵀ‖² + λ‖W‖²`` (+ γ Tr(W L Wᵀ) for GRN ridge) with an
unpenalised intercept b. Minimising over b first gives b = Δ̄ − x̄ W (Δ̄, x̄ the column means of Δ
and X), and substituting leaves the same problem on the centred X − 1x̄ᵀ and Δ − 1Δ̄ᵀ, which is
what the fast path solves (:func:`centred_fit`). A condition none of whose targets trained is
predicted as control + b: the training conditions' shared change that the targets do not
explain. ``intercept: false`` fixes b = 0 (the intercept is the control profile c): such a
condition is then predicted as control, and with λ → 0 and only singles in training ridge
reduces to the additive baseline. (The mean baseline is a separate entry.)

Every solver has a slow reference next to the fast path (``solver="reference"``); the tests
check that they agree.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from baselines.simple import BaselineError, BaselineModel, multi_hot, require_conditions
from perturbench.data.conditions import perturbed_genes, targets
from perturbench.data.contract import PerturbDataset
from perturbench.graphs import coexpression_graph, laplacian
from perturbench.linalg import Solver, design_ridge_fit, ridge_solve
from perturbench.models.base import FitContext

GRNSolver = Literal["cg", "eigen", "kronecker"]
CG_TOL = 1e-12  # relative residual at which the block conjugate-gradient solve stops
CG_BLOCK = 256  # systems solved together: bounds the CG work arrays (n_genes × 256) and their copies


def _check_config(config: Any, positive: Sequence[str] = (), non_negative: Sequence[str] = ()) -> None:
    for name in positive:
        if not getattr(config, name) > 0:
            raise BaselineError(f"{type(config).__name__}.{name} must be > 0, got {getattr(config, name)!r}")
    for name in non_negative:
        if not getattr(config, name) >= 0:
            raise BaselineError(f"{type(config).__name__}.{name} must be >= 0, got {getattr(config, name)!r}")
    solver = config.solver
    if solver not in get_args(Solver):
        raise BaselineError(f"{type(config).__name__}.solver must be one of {get_args(Solver)}, got {solver!r}")


# -- solvers ----------------------------------------------------------------------------------
def ridge_intercept_reference(x: np.ndarray, y: np.ndarray, *, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) = argmin ‖Y − XW − 1bᵀ‖² + λ‖W‖² by least squares on the augmented system
    [X 1; √λ I 0] [W; bᵀ] = [Y; 0] (the intercept column is not penalised). Slow reference of
    :func:`centred_fit` with :func:`ridge_solve`."""
    n, p = x.shape
    design = np.vstack([np.hstack([x, np.ones((n, 1))]), np.hstack([np.sqrt(lam) * np.eye(p), np.zeros((p, 1))])])
    target = np.vstack([y, np.zeros((p, y.shape[1]))])
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    return coef[:p], coef[p]


def centred_fit(x: np.ndarray, y: np.ndarray, solve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with an unpenalised intercept: W = solve(X − 1x̄ᵀ, Y − 1ȳᵀ), b = ȳ − x̄ W.

    Exact for any penalty that does not involve b (ridge, GRN ridge): the optimal b given W is
    ȳ − x̄ W, and substituting it centres both sides.
    """
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    w = solve(x - x_mean, y - y_mean)
    return w, y_mean - x_mean @ w


def grn_ridge_solve(
    x: np.ndarray, y: np.ndarray, lap: sp.spmatrix, *, lam: float, gamma: float, solver: GRNSolver = "cg"
) -> np.ndarray:
    """W = argmin ‖Y − XW‖² + λ‖W‖² + γ Tr(W L Wᵀ), L the (n_genes × n_genes) output-gene Laplacian.

    Setting the gradient to zero gives the Sylvester equation (XᵀX + λI) W + γ W L = XᵀY. With
    XᵀX = U diag(s) Uᵀ and W̃ = UᵀW, row i of W̃ solves (γL + (s_i + λ)I) w̃_i = (UᵀXᵀY)_i.

    - ``cg``: those p sparse SPD systems by Jacobi-preconditioned conjugate gradients, all at
      once (one sparse × dense product per step), to relative residual ``CG_TOL``;
    - ``eigen``: also diagonalise L = V diag(l) Vᵀ (dense): W = U [(UᵀXᵀYV)_ij / (s_i + λ + γ l_j)] Vᵀ;
    - ``kronecker``: dense solve of (I ⊗ (XᵀX + λI) + γ Lᵀ ⊗ I) vec(W) = vec(XᵀY) (tiny problems).
    λ must be > 0 (L is singular).
    """
    if not lam > 0:
        raise BaselineError(f"grn_ridge_solve: lam must be > 0, got {lam!r}")
    gram, rhs = x.T @ x, x.T @ y
    if solver == "kronecker":
        p, n = rhs.shape
        system = np.kron(np.eye(n), gram + lam * np.eye(p)) + gamma * np.kron(lap.toarray().T, np.eye(p))
        return np.linalg.solve(system, rhs.reshape(-1, order="F")).reshape(p, n, order="F")
    s, u = np.linalg.eigh(gram)
    if solver == "eigen":
        ell, v = np.linalg.eigh(lap.toarray())
        return u @ ((u.T @ rhs @ v) / (s[:, None] + lam + gamma * ell[None, :])) @ v.T
    a, shifted = sp.csr_matrix(lap) * gamma, (u.T @ rhs).T  # (n_genes, p): one system per column
    blocks = [_shifted_cg(a, (s + lam)[j : j + CG_BLOCK], shifted[:, j : j + CG_BLOCK])
              for j in range(0, len(s), CG_BLOCK)]
    return u @ np.hstack(blocks).T


def _shifted_cg(a: sp.csr_matrix, shifts: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (A + shifts[j] I) x_j = rhs[:, j] for every column j by Jacobi-preconditioned CG.

    All columns advance together, updated in place. A converged column (‖r‖ ≤ CG_TOL ‖b‖) stops
    moving at once (its step is zero) and leaves the work arrays when a tenth of them has
    converged, so the arrays are copied a few times rather than at every step.
    """
    n, m = rhs.shape
    out = np.zeros((n, m))
    norms = np.linalg.norm(rhs, axis=0)
    active = np.flatnonzero(norms > 0)
    x, r = np.zeros((n, len(active))), rhs[:, active].copy()
    inv_m = 1.0 / (a.diagonal()[:, None] + shifts[None, active])
    z = inv_m * r
    d = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    live = np.ones(len(active), dtype=bool)
    for _ in range(10 * n + 100):
        if not len(active):
            return out
        ad = a @ d
        ad += d * shifts[active]  # (n, active)
        alpha = np.divide(rz, np.einsum("ij,ij->j", d, ad), out=np.zeros_like(rz), where=live)
        x += alpha * d
        ad *= alpha
        r -= ad
        live &= np.einsum("ij,ij->j", r, r) > (CG_TOL * norms[active]) ** 2
        if live.sum() <= 0.9 * len(live):
            out[:, active[~live]] = x[:, ~live]
            active, x, r, d, rz, inv_m, live = (
                active[live], x[:, live], r[:, live], d[:, live], rz[live], inv_m[:, live], live[live])
        z = inv_m * r
        rz_next = np.einsum("ij,ij->j", r, z)
        d *= np.divide(rz_next, rz, out=np.zeros_like(rz), where=live)
        d += z
        rz = rz_next
    raise BaselineError(f"conjugate gradients did not converge for {len(active)} of {m} systems")


def linear_embedding_solve(
    g: np.ndarray, y: np.ndarray, p: np.ndarray, *, lam: float, solver: Solver = "fast"
) -> np.ndarray:
    """W = (GᵀG + λI)⁻¹ Gᵀ Y P (PᵀP + λI)⁻¹ (Ahlmann-Eltze et al. 2024), Y ≈ G W Pᵀ.

    This two-sided ridge solves ((PᵀP + λI) ⊗ (GᵀG + λI)) vec(W) = vec(Gᵀ Y P); the reference
    solves that Kronecker system densely. With λ = 0 it is the least-squares W.
    """
    left, right = g.T @ g + lam * np.eye(g.shape[1]), p.T @ p + lam * np.eye(p.shape[1])
    rhs = g.T @ y @ p
    if solver == "reference":
        vec = np.linalg.solve(np.kron(right, left), rhs.reshape(-1, order="F"))
        return vec.reshape(rhs.shape, order="F")
    return np.linalg.solve(right, np.linalg.solve(left, rhs).T).T


def top_eigenvectors(gram: np.ndarray, k: int) -> np.ndarray:
    """Eigenvectors of the symmetric ``gram`` for its min(k, n) largest eigenvalues, as columns.

    For M with few rows (or columns) the top-k singular subspace comes from the small Gram
    matrix M Mᵀ (or MᵀM): far cheaper than an SVD of M, and exact up to rounding for the
    leading components.
    """
    n = gram.shape[0]
    _, vecs = sla.eigh(gram, subset_by_index=[n - min(k, n), n - 1])  # only the top k: ~10× faster at n = 1,000
    return vecs[:, ::-1]


# -- models -------------------------------------------------------------------------------------
class _DesignModel(BaselineModel):
    """Δ̂ = b + x W with x the multi-hot row over the target genes seen in training; b = 0 unless
    the config's ``intercept`` is true (then fitted unpenalised, see the module docstring)."""

    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        require_conditions(self.name, conditions, train)
        self.pert_genes = perturbed_genes(conditions)
        x = multi_hot(conditions, self.pert_genes)
        self.weights, self.intercept = self._fit_design(x, deltas, train=train, context=context)

    def _fit_design(
        self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """(W, b): :meth:`_solve` on the centred design (:func:`centred_fit`), or with b = 0."""

        def solve(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
            return self._solve(xx, yy, train=train, context=context)

        if self.config.intercept:
            return centred_fit(x, deltas, solve)
        return solve(x, deltas), np.zeros(deltas.shape[1])

    @abstractmethod
    def _solve(self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> np.ndarray:
        """W (p, n_genes) from the design x (n_conditions, p) and the deltas."""

    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        return self.intercept[None, :] + multi_hot(conditions, self.pert_genes) @ self.weights

    def attributions(self, output_gene: str) -> dict[str, float]:
        """|W[p, g]|: how strongly perturbing target gene p moves output gene g."""
        assert self.genes is not None
        column = self.weights[:, self.genes.index(output_gene)]
        return {gene: float(abs(w)) for gene, w in zip(self.pert_genes, column)}


@dataclass(frozen=True)
class RidgeConfig:
    """Hyper-parameters of :class:`RidgeModel`."""

    lam: float = 0.1  # λ: ridge penalty on W
    intercept: bool = True  # fit an unpenalised intercept b (reference study); false: b = 0
    solver: Solver = "fast"  # "reference": least squares on the augmented system

    def __post_init__(self) -> None:
        _check_config(self, positive=("lam",))


class RidgeModel(_DesignModel):
    """Δ̂ = b + x W, W = (X̃ᵀX̃ + λI)⁻¹ X̃ᵀΔ̃ on the centred X̃, Δ̃ (``intercept: false``: b = 0
    and no centring, see the module docstring)."""

    name = "ridge"
    Config = RidgeConfig

    def _fit_design(
        self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """fast: :func:`design_ridge_fit` (sparse normal equations; Sherman–Morrison on a
        single-gene screen); reference: :func:`ridge_solve`'s least squares on the centred design."""
        if self.config.solver == "fast":
            return design_ridge_fit(x, deltas, lam=self.config.lam, intercept=self.config.intercept)
        return super()._fit_design(x, deltas, train=train, context=context)

    def _solve(self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> np.ndarray:
        return ridge_solve(x, deltas, lam=self.config.lam, solver=self.config.solver)


@dataclass(frozen=True)
class GRNRidgeConfig:
    """Hyper-parameters of :class:`GRNRidgeModel`."""

    lam: float = 0.1  # λ: ridge penalty on W
    gamma: float = 1.0  # γ: weight of the graph smoothness penalty Tr(W L Wᵀ)
    intercept: bool = True  # fit an unpenalised intercept b (reference study); false: b = 0
    solver: Solver = "fast"  # fast: sparse CG per eigen-direction of XᵀX; reference: also eig(L)
    coexpr_top_k: int = 20  # fallback co-expression graph (no GO graph in the context)
    coexpr_min_abs_corr: float = 0.3

    def __post_init__(self) -> None:
        _check_config(self, positive=("lam", "coexpr_top_k"), non_negative=("gamma", "coexpr_min_abs_corr"))


def output_laplacian(train: PerturbDataset, context: FitContext, *, top_k: int, min_abs_corr: float) -> sp.csr_matrix:
    """Laplacian of the gene graph over the dataset's genes.

    ``context.go_graph`` restricted to the dataset genes (genes without GO terms isolated); when it
    is None, a co-expression graph over the training pseudobulks (ctrl included).
    """
    graph = context.go_graph
    if graph is None:
        expr = train.expression(list(train.pseudobulk.obs_names))
        graph = coexpression_graph(expr, train.genes, top_k=top_k, min_abs_corr=min_abs_corr)
    return laplacian(graph, train.genes)


def _grn_solver(solver: Solver) -> GRNSolver:
    return "cg" if solver == "fast" else "eigen"


class GRNRidgeModel(_DesignModel):
    """Δ̂ = b + x W, (W, b) = argmin ‖Δ − XW − 1bᵀ‖² + λ‖W‖² + γ Tr(W L Wᵀ) (see
    :func:`grn_ridge_solve`; ``intercept: false``: b = 0)."""

    name = "grn_ridge"
    Config = GRNRidgeConfig

    def _solve(self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> np.ndarray:
        cfg = self.config
        lap = output_laplacian(train, context, top_k=cfg.coexpr_top_k, min_abs_corr=cfg.coexpr_min_abs_corr)
        return grn_ridge_solve(x, deltas, lap, lam=cfg.lam, gamma=cfg.gamma, solver=_grn_solver(cfg.solver))


@dataclass(frozen=True)
class TwoStageConfig:
    """Hyper-parameters of :class:`TwoStageModel`."""

    rank: int = 10  # r: rank of the stage-1 global component
    lam: float = 0.1  # λ: ridge penalty of both stages
    gamma: float = 1.0  # γ: graph penalty of stage 2
    intercept: bool = True  # fit an unpenalised intercept b before both stages; false: b = 0
    solver: Solver = "fast"
    coexpr_top_k: int = 20
    coexpr_min_abs_corr: float = 0.3

    def __post_init__(self) -> None:
        _check_config(self, positive=("rank", "lam", "coexpr_top_k"), non_negative=("gamma", "coexpr_min_abs_corr"))


class TwoStageModel(_DesignModel):
    """Stage 1: Δ ≈ U_r S_r V_rᵀ (truncated SVD); A = ridge(X, Δ V_r), W₁ = A V_rᵀ (a rank-r
    response shared across perturbations). Stage 2: W₂ = GRN ridge of the residual Δ − X W₁.
    Δ̂ = b + x (W₁ + W₂). W₁ depends on V_r only through its span, taken as an orthonormal basis
    of Δᵀ U_r with U_r the top eigenvectors of ΔΔᵀ.

    With ``intercept: true`` (default) both stages see the centred X and Δ and b = Δ̄ − x̄ (W₁ + W₂)
    (:func:`centred_fit`): b plus the rank-r stage is the global response shared by the
    perturbations, stage 2 the perturbation-specific rest. A test condition none of whose target
    genes trained (x = 0) is predicted as control + b, the global component alone; one with
    trained targets adds their rows of W₁ + W₂. ``intercept: false``: b = 0, so such a condition
    is predicted as control.
    """

    name = "two_stage"
    Config = TwoStageConfig

    def _solve(self, x: np.ndarray, deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> np.ndarray:
        cfg = self.config
        basis = np.linalg.qr(deltas.T @ top_eigenvectors(deltas @ deltas.T, cfg.rank))[0]  # (n_genes, r): span of V_r
        w1 = ridge_solve(x, deltas @ basis, lam=cfg.lam, solver=cfg.solver) @ basis.T
        lap = output_laplacian(train, context, top_k=cfg.coexpr_top_k, min_abs_corr=cfg.coexpr_min_abs_corr)
        residual = deltas - x @ w1
        return w1 + grn_ridge_solve(x, residual, lap, lam=cfg.lam, gamma=cfg.gamma, solver=_grn_solver(cfg.solver))


@dataclass(frozen=True)
class LinearEmbeddingConfig:
    """Hyper-parameters of :class:`LinearEmbeddingModel`."""

    n_components: int = 10  # K: PCA dimensions of the gene embedding G
    lam: float = 0.1  # λ: two-sided ridge penalty
    solver: Solver = "fast"  # "reference": dense Kronecker solve

    def __post_init__(self) -> None:
        _check_config(self, positive=("n_components",), non_negative=("lam",))


class LinearEmbeddingModel(BaselineModel):
    """Ahlmann-Eltze, Huber & Anders (2024) linear baseline: Y ≈ G W Pᵀ + b.

    Y (genes × training conditions) = training pseudobulk expression (ctrl excluded); b = its
    row means; G = PCA scores of the genes (rows of Y, columns centred, as R's ``prcomp``), top
    K; P = perturbation embedding, row of condition k = Σ over its targets of that gene's row of
    G (a target that is not a measured gene adds 0, so an unmeasured target is predicted as b).
    W by :func:`linear_embedding_solve`. Prediction ŷ = b + G W p.
    """

    name = "linear_embedding"
    Config = LinearEmbeddingConfig

    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        require_conditions(self.name, conditions, train)
        assert self.ctrl is not None
        y = (deltas + self.ctrl).T  # (genes, conditions)
        self.offset = y.mean(axis=1)
        centred = y - y.mean(axis=0)
        self.embedding = centred @ top_eigenvectors(centred.T @ centred, self.config.n_components)  # G = U_K S_K
        p = self._pert_embedding(conditions)
        lam, solver = self.config.lam, self.config.solver
        self.weights = linear_embedding_solve(self.embedding, y - self.offset[:, None], p, lam=lam, solver=solver)

    def _pert_embedding(self, conditions: list[str]) -> np.ndarray:
        """P (n_conditions, K): sum of the targets' rows of G (0 for unmeasured targets)."""
        assert self.genes is not None
        index = {g: i for i, g in enumerate(self.genes)}
        p = np.zeros((len(conditions), self.embedding.shape[1]))
        for i, cond in enumerate(conditions):
            for gene in targets(cond):
                if gene in index:
                    p[i] += self.embedding[index[gene]]
        return p

    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        assert self.ctrl is not None
        pred = self.offset[:, None] + self.embedding @ self.weights @ self._pert_embedding(conditions).T
        return pred.T - self.ctrl

    def attributions(self, output_gene: str) -> dict[str, float]:
        """|(G W)[g] · G[p]|: the weight of measured target gene p on output gene g (0 if unmeasured)."""
        assert self.genes is not None
        row = self.embedding[self.genes.index(output_gene)] @ self.weights  # (K,)
        return {gene: float(abs(row @ self.embedding[i])) for i, gene in enumerate(self.genes)}
