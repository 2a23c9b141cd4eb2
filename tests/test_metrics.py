"""Metrics: hand-computed values, invariants, one test per bad input, GEARS cross-check."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from perturbench.metrics import (
    METRICS,
    ConditionArrays,
    MetricInputError,
    compute_metrics,
    pearson_r,
    top_expressed,
    truth_distances,
)

# Hand example (G = 4): deltas p − c = [1, 2, 3, −1], t − c = [1, 3, 2, 0].
CTRL = np.array([1.0, 1.0, 1.0, 1.0])
PRED = np.array([2.0, 3.0, 4.0, 0.0])
TRUTH = np.array([2.0, 4.0, 3.0, 1.0])
PERT_REF = np.array([2.0, 3.0, 3.0, 0.0])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def hand(**changes) -> ConditionArrays:
    base = ConditionArrays(
        pred=PRED, truth=TRUTH, ctrl=CTRL, pert_ref=PERT_REF, top1000=np.array([1, 2]),
        de20=np.array([0, 1, 2]), de20_nondropout=np.array([3]), all_truths=TRUTH[None, :], index=0,
    )
    return dataclasses.replace(base, **changes)


def random_arrays(rng: np.random.Generator, n_genes: int = 50, n_test: int = 5, index: int = 2) -> ConditionArrays:
    truths = rng.normal(size=(n_test, n_genes))
    return ConditionArrays(
        pred=rng.normal(size=n_genes), truth=truths[index], ctrl=rng.normal(size=n_genes),
        pert_ref=rng.normal(size=n_genes), top1000=np.arange(0, n_genes, 2), de20=np.arange(20),
        de20_nondropout=np.arange(5, 25), all_truths=truths, index=index,
    )


def metric(name: str, x: ConditionArrays) -> float:
    return METRICS[name].fn(x)


# -- hand-computed values -------------------------------------------------------------------
def test_mse_and_rmse_by_hand():
    # p − t = [0, −1, 1, −1] → mean square 3/4
    assert metric("mse", hand()) == pytest.approx(0.75)
    assert metric("rmse", hand()) == pytest.approx(math.sqrt(0.75))


def test_l2_top1000_by_hand():
    # genes 1, 2: differences −1, 1
    assert metric("l2_top1000", hand()) == pytest.approx(math.sqrt(2.0))


def test_pearson_delta_by_hand():
    # centred a = [−.25, .75, 1.75, −2.25], b = [−.5, 1.5, .5, −1.5]: Σab = 5.5, Σa² = 8.75, Σb² = 5
    assert metric("pearson_delta", hand()) == pytest.approx(5.5 / math.sqrt(8.75 * 5))
    assert metric("pearson", hand()) == pytest.approx(5.5 / math.sqrt(8.75 * 5))  # c is constant


def test_pearson_delta_de20_by_hand():
    # genes 0..2: a = [1, 2, 3], b = [1, 3, 2] → centred [−1, 0, 1], [−1, 1, 0] → 1 / 2
    assert metric("pearson_delta_de20", hand()) == pytest.approx(0.5)


def test_pearson_delta_top1000_by_hand():
    # genes 1, 2: a = [2, 3], b = [3, 2]
    assert metric("pearson_delta_top1000", hand()) == pytest.approx(-1.0)


def test_mse_de20_by_hand():
    assert metric("mse_de20", hand()) == pytest.approx(2 / 3)  # (0 + 1 + 1) / 3


def test_mse_de20_nondropout_by_hand():
    assert metric("mse_de20_nondropout", hand()) == pytest.approx(1.0)  # gene 3: (0 − 1)²


def test_direction_de20_by_hand():
    assert metric("direction_de20", hand()) == 1.0  # genes 0..2 all up in both
    # gene 3: predicted down (−1), truly unchanged (0) → disagrees; genes 0, 1 agree
    assert metric("direction_de20", hand(de20=np.array([0, 1, 3]))) == pytest.approx(2 / 3)


def test_pearson_delta_pertref_by_hand():
    # p − r = [0, 0, 1, 0], t − r = [0, 1, 0, 1]: Σab = −.5, Σa² = .75, Σb² = 1
    assert metric("pearson_delta_pertref", hand()) == pytest.approx(-0.5 / math.sqrt(0.75))


def test_rank_score_by_hand():
    far = TRUTH + 10.0
    exact = PRED.copy()  # another truth at distance 0 from the prediction
    assert metric("rank_score", hand(all_truths=np.stack([TRUTH, far, far + 1]))) == 0.0
    assert metric("rank_score", hand(all_truths=np.stack([TRUTH, exact, far]))) == pytest.approx(0.5)
    assert metric("rank_score", hand(all_truths=np.stack([exact, far, TRUTH]), index=2)) == pytest.approx(0.5)


def test_rank_score_ties_are_pessimistic():
    mirror = 2 * PRED - TRUTH  # same distance to the prediction as the truth
    assert metric("rank_score", hand(all_truths=np.stack([TRUTH, mirror]))) == 1.0


def test_truth_distances_match_the_per_condition_reference(rng):
    truths, preds = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))  # G = 4, as hand()
    dists = truth_distances(preds, truths)
    for i, (l2, l1) in enumerate(dists):
        np.testing.assert_allclose(l2, np.sqrt(((truths - preds[i]) ** 2).sum(axis=1)), rtol=1e-12)
        np.testing.assert_allclose(l1, np.abs(truths - preds[i]).sum(axis=1), rtol=1e-12)
        x = hand(pred=preds[i], truth=truths[i], all_truths=truths, index=i)
        given = dataclasses.replace(x, truth_distances=dists[i])
        for name in ("rank_score", "discrimination_l1"):
            assert metric(name, given) == metric(name, x), name


def test_truth_distances_of_the_wrong_length_are_refused():
    with pytest.raises(MetricInputError, match="truth_distances"):
        hand(truth_distances=(np.zeros(2), np.zeros(2)))


def test_rank_score_single_test_condition_is_zero():
    assert metric("rank_score", hand()) == 0.0


# -- conventions and invariants --------------------------------------------------------------
def test_perfect_prediction(rng):
    x = random_arrays(rng)
    x = dataclasses.replace(x, pred=x.truth.copy())
    values = compute_metrics(x)
    for name in ("mse", "rmse", "l2_top1000", "mse_de20", "mse_de20_nondropout", "rank_score"):
        assert values[name] == 0.0, name
    for name in ("pearson", "pearson_delta", "pearson_delta_top1000", "pearson_delta_de20", "pearson_delta_pertref"):
        assert values[name] == pytest.approx(1.0), name
    assert values["direction_de20"] == 1.0


def test_pearson_delta_is_scale_invariant(rng):
    x = random_arrays(rng)
    scaled = dataclasses.replace(x, pred=x.ctrl + 3.7 * (x.pred - x.ctrl))
    flipped = dataclasses.replace(x, pred=x.ctrl - 0.5 * (x.pred - x.ctrl))
    r = metric("pearson_delta", x)
    assert metric("pearson_delta", scaled) == pytest.approx(r, abs=1e-12)
    assert metric("pearson_delta", flipped) == pytest.approx(-r, abs=1e-12)


def test_pearson_r_matches_scipy(rng):
    a, b = rng.normal(size=200), rng.normal(size=200) + 0.3
    assert pearson_r(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert pearson_r(a, b) == pytest.approx(pearson_r(b, a), abs=1e-15)


def test_control_prediction_gives_nan_delta_correlations(rng):
    x = random_arrays(rng)
    x = dataclasses.replace(x, pred=x.ctrl.copy())
    for name in ("pearson_delta", "pearson_delta_top1000", "pearson_delta_de20"):
        assert math.isnan(metric(name, x)), name
    assert not math.isnan(metric("pearson_delta_pertref", x))


def test_a_reference_prediction_stored_as_float32_is_not_a_correlation_of_rounding(rng):
    """The mean baseline predicts the perturbation reference in float64; stored as float32 it
    differs from r by rounding only, which must read as no change (NaN), not as a correlation."""
    x = random_arrays(rng)
    x = dataclasses.replace(x, pert_ref=x.pert_ref + 3.0, ctrl=x.ctrl + 3.0)  # log-expression magnitudes
    stored_ref = x.pert_ref.astype(np.float32).astype(np.float64)
    assert np.ptp(stored_ref - x.pert_ref) > 0  # rounding really moved the values
    assert not math.isnan(pearson_r(stored_ref - x.pert_ref, x.truth - x.pert_ref))  # the plain formula: noise
    assert math.isnan(metric("pearson_delta_pertref", dataclasses.replace(x, pred=stored_ref)))
    stored_ctrl = x.ctrl.astype(np.float32).astype(np.float64)
    for name in ("pearson_delta", "pearson_delta_top1000", "pearson_delta_de20"):
        assert math.isnan(metric(name, dataclasses.replace(x, pred=stored_ctrl))), name
    # a real change of 1e-3 on top of the reference is a change: its correlation is defined
    small = x.pert_ref + 1e-3 * (x.truth - x.pert_ref)
    assert metric("pearson_delta_pertref", dataclasses.replace(x, pred=small)) == pytest.approx(1.0)


def test_pearson_r_nan_for_constant_or_short_input():
    assert math.isnan(pearson_r(np.full(5, 0.1), np.arange(5.0)))
    assert math.isnan(pearson_r(np.array([1.0]), np.array([2.0])))


def test_empty_de_set_gives_nan_de_metrics():
    x = hand(de20=np.array([], dtype=np.int64), de20_nondropout=None)
    for name in ("pearson_delta_de20", "mse_de20", "direction_de20", "mse_de20_nondropout"):
        assert math.isnan(metric(name, x)), name


def test_top_expressed():
    ctrl = np.array([0.5, 3.0, 1.0, 3.0, 0.0])
    assert top_expressed(ctrl, k=2).tolist() == [1, 3]
    assert top_expressed(ctrl, k=3).tolist() == [1, 2, 3]
    assert top_expressed(ctrl, k=10).tolist() == [0, 1, 2, 3, 4]
    assert top_expressed(np.zeros(5), k=2).tolist() == [0, 1, 2, 3, 4]  # delta-only data


def test_registry():
    assert set(METRICS) == {
        "l2_top1000", "rmse", "mse", "pearson", "pearson_delta", "pearson_delta_top1000", "pearson_delta_de20",
        "mse_de20", "mse_de20_nondropout", "direction_de20", "pearson_delta_pertref", "rank_score",
        "overlap_at_20", "overlap_at_100", "precision_at_20", "precision_at_100", "de_direction_match",
        "de_spearman_lfc", "discrimination_l1",
    }
    descriptions = [m.description for m in METRICS.values()]
    assert len(set(descriptions)) == len(descriptions)
    for name, m in METRICS.items():
        assert m.name == name and m.direction in ("higher", "lower") and m.fn.__doc__, name


def test_compute_metrics_rejects_unknown_name():
    with pytest.raises(KeyError, match=r"unknown metric\(s\) \['r2'\]"):
        compute_metrics(hand(), ["rmse", "r2"])


# -- bad inputs: one case per kind --------------------------------------------------------------
BAD_INPUTS = {
    "pred_2d": (dict(pred=PRED[None, :]), r"pred: expected shape \(G,\), got \(1, 4\)"),
    "pred_length": (dict(pred=PRED[:3]), r"pred: shape \(3,\) != truth shape \(4,\)"),
    "ctrl_nan": (dict(ctrl=np.array([1.0, np.nan, 1, 1])), r"ctrl: NaN or inf at gene positions \[1\]"),
    "pert_ref_inf": (dict(pert_ref=np.array([0.0, 0, 0, np.inf])), r"pert_ref: NaN or inf at gene positions \[3\]"),
    "top1000_empty": (dict(top1000=np.array([], dtype=int)), r"top1000: empty gene index set"),
    "top1000_range": (dict(top1000=np.array([0, 4])), r"top1000: indices \[4\] outside \[0, 4\)"),
    "de20_negative": (dict(de20=np.array([-1, 2])), r"de20: indices \[-1\] outside \[0, 4\)"),
    "de20_float": (dict(de20=np.array([0.0, 1.0])), r"de20: expected a 1-D integer index array, got dtype float64"),
    "de20_repeated": (dict(de20=np.array([1, 1])), r"de20: repeated gene indices"),
    "nondropout_range": (dict(de20_nondropout=np.array([7])), r"de20_nondropout: indices \[7\] outside"),
    "all_truths_width": (dict(all_truths=np.zeros((2, 3))), r"all_truths: shape \(2, 3\) is not \(n_test >= 1, 4\)"),
    "all_truths_nan": (dict(all_truths=np.stack([TRUTH, np.full(4, np.nan)])), r"all_truths: contains NaN or inf"),
    "index_range": (dict(index=1), r"index: 1 outside \[0, 1\)"),
    "index_type": (dict(index=True), r"index: True is not an integer"),
    "truth_row": (dict(all_truths=np.stack([PRED, TRUTH])), r"all_truths: row 0 \(index\) differs from truth"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_condition_arrays_rejects(case):
    changes, message = BAD_INPUTS[case]
    with pytest.raises(MetricInputError, match=r"^ConditionArrays\." + message):
        hand(**changes)


def test_non_finite_truths_are_refused_through_the_given_distances():
    """With distances given, all_truths is not summed again (n_test² · G work in a large test set);
    its NaN row still fails, through the distances computed from it."""
    truths = np.stack([TRUTH, np.full(4, np.nan)])
    with pytest.raises(MetricInputError, match=r"^ConditionArrays\.truth_distances: NaN or inf"):
        hand(all_truths=truths, truth_distances=truth_distances(PRED[None, :], truths)[0])


@pytest.mark.parametrize("n", [1, 3, 20, 100, 999])
def test_top_abs_equals_the_stable_full_sort(rng, n):
    """Partition-based top-n = the first n of argsort(-|v|, stable), ties to the earlier gene."""
    from perturbench.metrics import _top_abs

    v = rng.integers(-4, 5, size=300).astype(float)  # many ties, at the cut too
    expected = np.argsort(-np.abs(v), kind="stable")[: min(n, v.size)]
    np.testing.assert_array_equal(_top_abs(v, n), expected)
    w = rng.normal(size=300)
    np.testing.assert_array_equal(_top_abs(w, n), np.argsort(-np.abs(w), kind="stable")[: min(n, w.size)])


# -- cross-check against GEARS's own evaluation code --------------------------------------------
def _gears_inputs(rng: np.random.Generator, n_genes: int = 30, n_perts: int = 3):
    """GEARS's ``test_res`` dict and cell AnnData for pseudobulk-level predictions (one row per condition)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    genes = [f"g{i}" for i in range(n_genes)]
    perts = [f"P{k}+ctrl" for k in range(n_perts)]
    ctrl_cells = rng.gamma(2.0, 1.0, size=(2, n_genes))
    truth = ctrl_cells.mean(0) + rng.normal(size=(n_perts, n_genes))
    pred = truth + rng.normal(scale=0.8, size=(n_perts, n_genes))
    de = [rng.permutation(n_genes)[:20] for _ in range(n_perts)]
    cells = ad.AnnData(
        X=sp.csr_matrix(np.vstack([ctrl_cells, truth])),
        obs=pd.DataFrame({"condition": ["ctrl", "ctrl", *perts]}, index=[f"c{i}" for i in range(2 + n_perts)]),
        var=pd.DataFrame({"gene_name": genes}, index=genes),
    )
    cells.obs["condition_name"] = [f"K562_{c}_1+1" for c in cells.obs["condition"]]
    cells.uns["rank_genes_groups_cov_all"] = {f"K562_{p}_1+1": [genes[i] for i in d] for p, d in zip(perts, de)}
    # two "cells" per condition around each pseudobulk (GEARS needs a spread), means unchanged
    spread = rng.normal(scale=0.1, size=(n_perts, n_genes))
    pred_cells, truth_cells = (np.concatenate([m + spread, m - spread]) for m in (pred, truth))
    de_cells = de + de
    test_res = {
        "pert_cat": np.array(perts + perts), "pred": pred_cells, "truth": truth_cells,
        "pred_de": np.stack([pred_cells[k, d] for k, d in enumerate(de_cells)]),
        "truth_de": np.stack([truth_cells[k, d] for k, d in enumerate(de_cells)]),
    }
    return cells, test_res, ctrl_cells.mean(0), pred, truth, de


def _load_gears_inference():
    """``gears/inference.py`` loaded on its own: ``import gears`` would JIT-compile dcor (~20 s)."""
    spec = importlib.util.find_spec("gears")
    if spec is None or spec.origin is None:
        pytest.skip("cell-gears not installed (extra 'gears')")
    path = Path(spec.origin).parent / "inference.py"
    module_spec = importlib.util.spec_from_file_location("_gears_inference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_agrees_with_gears_inference(rng):
    inference = _load_gears_inference()
    cells, test_res, ctrl, preds, truths, de = _gears_inputs(rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        deeper = inference.deeper_analysis(cells, test_res)
    _, per_pert = inference.compute_metrics(test_res)
    for k, pert in enumerate(test_res["pert_cat"][: len(de)]):
        x = ConditionArrays(
            pred=preds[k], truth=truths[k], ctrl=ctrl, pert_ref=np.zeros_like(ctrl),
            top1000=np.arange(ctrl.size), de20=de[k], de20_nondropout=None, all_truths=truths, index=k,
        )
        assert metric("pearson_delta", x) == pytest.approx(deeper[pert]["pearson_delta"], abs=1e-6)
        assert metric("pearson_delta_de20", x) == pytest.approx(deeper[pert]["pearson_delta_de"], abs=1e-6)
        assert metric("direction_de20", x) == pytest.approx(deeper[pert]["frac_correct_direction_20"], abs=1e-6)
        assert metric("mse_de20", x) == pytest.approx(per_pert[pert]["mse_de"], abs=1e-6)
        assert metric("mse", x) == pytest.approx(per_pert[pert]["mse"], abs=1e-6)
        assert metric("pearson", x) == pytest.approx(per_pert[pert]["pearson"], abs=1e-6)
