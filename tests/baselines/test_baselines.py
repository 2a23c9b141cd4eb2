"""Tests of the closed-form baselines: hand-computed predictions, fast vs slow solvers, invariants."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _toydata import GENES, toy_dataset

from baselines.linear import (
    GRNRidgeModel,
    LinearEmbeddingModel,
    RidgeModel,
    TwoStageModel,
    grn_ridge_solve,
    linear_embedding_solve,
    centred_fit,
    output_laplacian,
    ridge_intercept_reference,
    ridge_solve,
    top_eigenvectors,
)
from baselines.simple import AdditiveModel, BaselineError, ControlModel, MeanModel, multi_hot
from perturbench.data.conditions import ConditionError, canonical_condition, targets
from perturbench.data.contract import PerturbDataset
from perturbench.errors import ConfigError
from perturbench.graphs import coexpression_graph, go_similarity_graph, laplacian
from perturbench.linalg import design_ridge_fit
from perturbench.models.base import FitContext
from perturbench.models.registry import get_model

TRAIN = ["G00", "G01", "G02", "G03", "G00+G01", "G01+G02"]
TEST = ["G04", "G00+G02", "G01+G03", "G04+G05", "G00"]


@pytest.fixture
def data(rng: np.random.Generator) -> PerturbDataset:
    return toy_dataset(rng)


@pytest.fixture
def train(data: PerturbDataset) -> PerturbDataset:
    return data.subset(TRAIN)


def _random_laplacian(rng: np.random.Generator, n: int) -> sp.csr_matrix:
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.4)
    w = np.triu(w, 1) + np.triu(w, 1).T
    return sp.csr_matrix(np.diag(w.sum(axis=1)) - w)


def _problem(rng: np.random.Generator, n: int = 9, p: int = 5, genes: int = 7) -> tuple[np.ndarray, np.ndarray]:
    x = (rng.random((n, p)) < 0.4).astype(float)
    x[:, 4] = x[:, 3]  # collinear columns: XᵀX is singular
    return x, rng.normal(size=(n, genes))


# -- simple baselines -----------------------------------------------------------------------
def test_control_predicts_control(train: PerturbDataset) -> None:
    pred = ControlModel().fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_array_equal(pred.mean, np.tile(train.ctrl, (len(TEST), 1)))
    assert pred.conditions == TEST and pred.genes == GENES and pred.model == "control"


def test_mean_predicts_mean_training_perturbation(train: PerturbDataset) -> None:
    pred = MeanModel().fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(pred.mean, np.tile(train.expression(TRAIN).mean(axis=0), (len(TEST), 1)))


def test_additive_sums_single_deltas(train: PerturbDataset) -> None:
    pred = AdditiveModel().fit(train, context=FitContext()).predict(["G00+G02", "G04", "G01+G04", "G00"])
    ctrl = train.ctrl
    delta = {g: train.expression([g])[0] - ctrl for g in ("G00", "G01", "G02")}
    np.testing.assert_allclose(pred.mean[0], ctrl + delta["G00"] + delta["G02"])
    np.testing.assert_allclose(pred.mean[1], ctrl)  # no training single: contributes 0
    np.testing.assert_allclose(pred.mean[2], ctrl + delta["G01"])
    np.testing.assert_allclose(pred.mean[3], train.expression(["G00"])[0])


def test_mean_needs_training_perturbations(data: PerturbDataset) -> None:
    with pytest.raises(BaselineError, match=r"mean: training set '<toy>' has no perturbation conditions"):
        MeanModel().fit(data.subset([]), context=FitContext())


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(BaselineError, match=r"ridge: predict\(\) called before fit\(\)"):
        RidgeModel().predict(["G00"])


def test_predict_rejects_non_canonical_condition(train: PerturbDataset) -> None:
    model = AdditiveModel().fit(train, context=FitContext())
    with pytest.raises(ConditionError, match=r"additive.predict: condition 'G02\+G00' is not canonical"):
        model.predict(["G02+G00"])


def test_multi_hot_ignores_unknown_targets() -> None:
    np.testing.assert_array_equal(multi_hot(["A+B", "C", "B+Z"], ["A", "B", "C"]), [[1, 1, 0], [0, 0, 1], [0, 1, 0]])


# -- configs ------------------------------------------------------------------------------------
def test_non_positive_lambda_is_rejected() -> None:
    with pytest.raises(BaselineError, match=r"RidgeConfig.lam must be > 0, got 0.0"):
        RidgeModel(lam=0.0)


def test_unknown_solver_is_rejected() -> None:
    with pytest.raises(BaselineError, match=r"GRNRidgeConfig.solver must be one of \('fast', 'reference'\), got 'lu'"):
        GRNRidgeModel(solver="lu")


def test_unknown_hyper_parameter_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"model 'two_stage': params: unknown hyper-parameter\(s\) \['alpha'\]"):
        get_model("two_stage", alpha=1.0)


# -- ridge ------------------------------------------------------------------------------------
def test_ridge_fast_matches_reference(rng: np.random.Generator) -> None:
    x, y = _problem(rng)
    np.testing.assert_allclose(ridge_solve(x, y, lam=0.1), ridge_solve(x, y, lam=0.1, solver="reference"), atol=1e-8)


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("design", ["one_hot", "multi_hot"])
def test_design_ridge_fit_matches_the_augmented_least_squares(
    rng: np.random.Generator, design: str, intercept: bool
) -> None:
    """Sherman–Morrison (one target per row, unequal counts, an all-zero row) and the Cholesky
    path (targets sharing rows) both equal least squares on the augmented system."""
    if design == "one_hot":
        x = np.eye(6)[[0, 0, 0, 1, 2, 2, 3, 4, 5, 5]]
        x[-1] = 0.0  # a row none of whose targets is in the design (control-like)
    else:
        x, _ = _problem(rng, n=12)
    y = rng.normal(size=(x.shape[0], 9))
    w, b = design_ridge_fit(x, y, lam=0.3, intercept=intercept)
    if intercept:
        w_ref, b_ref = ridge_intercept_reference(x, y, lam=0.3)
    else:
        w_ref, b_ref = ridge_solve(x, y, lam=0.3, solver="reference"), np.zeros(9)
    np.testing.assert_allclose(w, w_ref, atol=1e-10)
    np.testing.assert_allclose(b, b_ref, atol=1e-10)


def test_ridge_model_fast_and_reference_agree(train: PerturbDataset) -> None:
    fast = RidgeModel().fit(train, context=FitContext()).predict(TEST)
    slow = RidgeModel(solver="reference").fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(fast.mean, slow.mean, atol=1e-6)


def test_ridge_with_singles_only_reduces_to_additive(data: PerturbDataset) -> None:
    train = data.subset(["G00", "G01", "G02"])
    ridge = RidgeModel(lam=1e-9, intercept=False).fit(train, context=FitContext()).predict(TEST)
    additive = AdditiveModel().fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(ridge.mean, additive.mean, atol=1e-6)


def test_ridge_without_intercept_predicts_control_for_unseen_genes(train: PerturbDataset) -> None:
    pred = RidgeModel(intercept=False).fit(train, context=FitContext()).predict(["G04+G05"])
    np.testing.assert_allclose(pred.mean[0], train.ctrl)


def test_centred_ridge_matches_least_squares_with_an_intercept_column(rng: np.random.Generator) -> None:
    x, y = _problem(rng)
    w, b = centred_fit(x, y, lambda xx, yy: ridge_solve(xx, yy, lam=0.3))
    w_ref, b_ref = ridge_intercept_reference(x, y, lam=0.3)
    np.testing.assert_allclose(w, w_ref, atol=1e-8)
    np.testing.assert_allclose(b, b_ref, atol=1e-8)
    # the objective's gradients in W and b vanish at the solution
    resid = x @ w + b - y
    assert np.abs(x.T @ resid + 0.3 * w).max() < 1e-8 and np.abs(resid.sum(axis=0)).max() < 1e-8


def test_ridge_intercept_predicts_control_plus_b_for_unseen_genes(train: PerturbDataset) -> None:
    conditions = train.conditions
    x = multi_hot(conditions, sorted({g for c in conditions for g in targets(c)}))
    deltas = train.expression(conditions) - train.ctrl
    w, b = ridge_intercept_reference(x, deltas, lam=0.1)
    model = RidgeModel().fit(train, context=FitContext())
    pred = model.predict(["G04+G05", "G00+G02"])
    np.testing.assert_allclose(pred.mean[0], train.ctrl + b, atol=1e-8)
    np.testing.assert_allclose(pred.mean[1], train.ctrl + b + w[0] + w[2], atol=1e-8)
    assert np.abs(b).max() > 1e-3  # a real intercept: unseen conditions are no longer control


def test_grn_ridge_intercept_zeroes_both_gradients(rng: np.random.Generator) -> None:
    x, y = _problem(rng, n=20, p=6, genes=40)
    lap = _random_laplacian(rng, 40)
    w, b = centred_fit(x, y, lambda xx, yy: grn_ridge_solve(xx, yy, lap, lam=0.3, gamma=2.0))
    resid = x @ w + b - y
    assert np.abs(x.T @ resid + 0.3 * w + 2.0 * w @ lap.toarray()).max() < 1e-8
    assert np.abs(resid.sum(axis=0)).max() < 1e-8


# -- GRN ridge ----------------------------------------------------------------------------------
def test_grn_solvers_agree(rng: np.random.Generator) -> None:
    x, y = _problem(rng)
    lap = _random_laplacian(rng, y.shape[1])
    kron = grn_ridge_solve(x, y, lap, lam=0.1, gamma=0.7, solver="kronecker")
    for solver in ("cg", "eigen"):
        np.testing.assert_allclose(grn_ridge_solve(x, y, lap, lam=0.1, gamma=0.7, solver=solver), kron, atol=1e-8)


def test_grn_solution_zeroes_the_gradient(rng: np.random.Generator) -> None:
    x, y = _problem(rng, n=20, p=6, genes=40)
    lap = _random_laplacian(rng, 40)
    w = grn_ridge_solve(x, y, lap, lam=0.3, gamma=2.0)
    gradient = x.T @ (x @ w - y) + 0.3 * w + 2.0 * w @ lap.toarray()
    assert np.abs(gradient).max() < 1e-8


def test_grn_penalty_shrinks_graph_roughness(rng: np.random.Generator) -> None:
    x, y = _problem(rng, n=20, p=6, genes=30)
    lap = _random_laplacian(rng, 30)
    rough = [np.trace(w @ lap @ w.T) for w in (grn_ridge_solve(x, y, lap, lam=0.1, gamma=g) for g in (0.0, 0.5, 5.0))]
    assert rough[0] > rough[1] > rough[2]


def test_grn_ridge_without_graph_penalty_is_ridge(train: PerturbDataset) -> None:
    grn = GRNRidgeModel(gamma=0.0).fit(train, context=FitContext()).predict(TEST)
    ridge = RidgeModel().fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(grn.mean, ridge.mean, atol=1e-10)


def test_grn_ridge_fast_matches_reference_model(rng: np.random.Generator, train: PerturbDataset) -> None:
    table = {g: frozenset(f"GO:{t}" for t in rng.choice(10, size=3, replace=False)) for g in GENES}
    context = FitContext(go_graph=go_similarity_graph(table, top_k=5))
    fast = GRNRidgeModel().fit(train, context=context).predict(TEST)
    slow = GRNRidgeModel(solver="reference").fit(train, context=context).predict(TEST)
    np.testing.assert_allclose(fast.mean, slow.mean, atol=1e-8)


def test_grn_ridge_falls_back_to_coexpression_graph(train: PerturbDataset) -> None:
    coexpr = coexpression_graph(train.expression(list(train.pseudobulk.obs_names)), train.genes)
    implicit = GRNRidgeModel().fit(train, context=FitContext()).predict(TEST)
    explicit = GRNRidgeModel().fit(train, context=FitContext(go_graph=coexpr)).predict(TEST)
    np.testing.assert_array_equal(implicit.mean, explicit.mean)


def test_output_laplacian_isolates_genes_outside_the_go_graph(rng: np.random.Generator, train: PerturbDataset) -> None:
    table = {g: frozenset({"GO:1", "GO:2"}) for g in GENES[:3]}
    graph = go_similarity_graph(table)
    lap = output_laplacian(train, FitContext(go_graph=graph), top_k=20, min_abs_corr=0.3)
    np.testing.assert_array_equal(lap.toarray(), laplacian(graph, GENES).toarray())
    assert lap[3:].nnz == 0


# -- two-stage ------------------------------------------------------------------------------
def test_two_stage_fast_matches_reference(train: PerturbDataset) -> None:
    fast = TwoStageModel(rank=3).fit(train, context=FitContext()).predict(TEST)
    slow = TwoStageModel(rank=3, solver="reference").fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(fast.mean, slow.mean, atol=1e-8)


def test_two_stage_without_penalties_is_least_squares(train: PerturbDataset) -> None:
    for intercept in (True, False):
        two = TwoStageModel(rank=2, lam=1e-9, gamma=0.0, intercept=intercept).fit(train, context=FitContext())
        ridge = RidgeModel(lam=1e-9, intercept=intercept).fit(train, context=FitContext())
        np.testing.assert_allclose(two.predict(TEST).mean, ridge.predict(TEST).mean, atol=1e-6)


def test_two_stage_predicts_control_plus_global_component_for_unseen_genes(train: PerturbDataset) -> None:
    model = TwoStageModel(rank=2).fit(train, context=FitContext())
    pred = model.predict(["G04+G05"])
    np.testing.assert_allclose(pred.mean[0], train.ctrl + model.intercept, atol=1e-10)
    conditions = train.conditions
    x = multi_hot(conditions, model.pert_genes)
    deltas = train.expression(conditions) - train.ctrl
    np.testing.assert_allclose(model.intercept, deltas.mean(axis=0) - x.mean(axis=0) @ model.weights, atol=1e-10)


def test_top_eigenvectors_span_the_top_singular_subspace(rng: np.random.Generator) -> None:
    m = rng.normal(size=(6, 40))
    vt = np.linalg.svd(m, full_matrices=False)[2][:3]
    basis = np.linalg.qr(m.T @ top_eigenvectors(m @ m.T, 3))[0]
    np.testing.assert_allclose(basis @ basis.T, vt.T @ vt, atol=1e-10)


# -- linear embedding -------------------------------------------------------------------------
def test_linear_embedding_fast_matches_kronecker(rng: np.random.Generator) -> None:
    g, y, p = rng.normal(size=(12, 3)), rng.normal(size=(12, 8)), rng.normal(size=(8, 4))
    np.testing.assert_allclose(linear_embedding_solve(g, y, p, lam=0.1),
                               linear_embedding_solve(g, y, p, lam=0.1, solver="reference"), atol=1e-8)


def test_linear_embedding_model_fast_matches_reference(train: PerturbDataset) -> None:
    fast = LinearEmbeddingModel(n_components=4).fit(train, context=FitContext()).predict(TEST)
    slow = LinearEmbeddingModel(n_components=4, solver="reference").fit(train, context=FitContext()).predict(TEST)
    np.testing.assert_allclose(fast.mean, slow.mean, atol=1e-8)


def test_linear_embedding_uses_pca_scores(train: PerturbDataset) -> None:
    model = LinearEmbeddingModel(n_components=3).fit(train, context=FitContext())
    y = train.expression(TRAIN).T
    u, s, _ = np.linalg.svd(y - y.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(np.abs(model.embedding), np.abs(u[:, :3] * s[:3]), atol=1e-9)


def test_linear_embedding_predicts_offset_for_unmeasured_target(train: PerturbDataset) -> None:
    pred = LinearEmbeddingModel().fit(train, context=FitContext()).predict(["NOTMEASURED"])
    np.testing.assert_allclose(pred.mean[0], train.expression(TRAIN).mean(axis=0))


# -- real data ----------------------------------------------------------------------------------
@pytest.fixture
def norman(shared_file) -> PerturbDataset:
    with np.load(shared_file("norman2019_pseudobulk_lfc.npz")) as z:
        names = [canonical_condition(str(c)) for c in [*z["sing_labels"], *z["doub_labels"]]]
        x = np.vstack([np.zeros((1, 2000)), z["lfc_s"], z["lfc_d"]]).astype(np.float64)
        genes = [str(g) for g in z["genes_hvg"]]
    pb = ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(["ctrl", *names], dtype=str)), var=pd.DataFrame(index=genes))
    return PerturbDataset("norman", pb, delta_only=True, source="norman2019_pseudobulk_lfc.npz")


def test_norman_combos_additive_and_ridge_beat_control(norman: PerturbDataset) -> None:
    combos = [c for c in norman.conditions if len(targets(c)) == 2]
    train = norman.subset([c for c in norman.conditions if len(targets(c)) == 1] + combos[::2])
    test = combos[1::2]
    truth = norman.expression(test)
    error = {}
    for model in (ControlModel(), AdditiveModel(), RidgeModel(), GRNRidgeModel()):
        error[model.name] = np.mean((model.fit(train, context=FitContext()).predict(test).mean - truth) ** 2)
    assert error["additive"] < error["control"] and error["ridge"] < error["control"]
    assert error["grn_ridge"] < error["control"]
