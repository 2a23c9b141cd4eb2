"""DE-set metrics (cell-eval's): hand-computed values and a cross-check against cell-eval itself.

The cross-check needs the ``cell-eval`` package; it pins numpy/scipy versions newer than this
project's, so it usually lives in its own environment (run this file there with perturbench on
PYTHONPATH) and the cross-check tests skip here.
"""

from __future__ import annotations

import numpy as np
import pytest

from perturbench.metrics import (
    ConditionArrays,
    de_direction_match,
    de_spearman_lfc,
    discrimination_l1,
    overlap_at_20,
    overlap_at_100,
    precision_at_20,
    precision_at_100,
    rank_score,
)


def _arrays(pred, truth, *, de20=None, all_truths=None, index=0):
    g = len(truth)
    truth = np.asarray(truth, dtype=float)
    return ConditionArrays(
        pred=np.asarray(pred, dtype=float), truth=truth, ctrl=np.zeros(g), pert_ref=np.zeros(g),
        top1000=np.arange(g), de20=np.arange(0) if de20 is None else np.asarray(de20),
        de20_nondropout=None, all_truths=truth[None] if all_truths is None else all_truths, index=index,
    )


def test_overlap_and_precision_hand_computed():
    truth = np.r_[np.arange(30, 0, -1), np.zeros(170)]  # top-20 true genes: 0..19
    pred = np.zeros(200)
    pred[10:40] = -np.arange(30, 0, -1)  # top-20 predicted by |Δ̂|: 10..29
    x = _arrays(pred, truth, de20=np.arange(5))
    assert overlap_at_20(x) == pytest.approx(10 / 20)
    # ties at |Δ| = 0 go to the earlier gene: true top-100 = 0..99; predicted = 10..39, then 0..9, 40..99
    assert overlap_at_100(x) == 1.0
    assert precision_at_20(x) == 0.0  # de20 = 0..4, none in 10..29
    assert precision_at_100(x) == pytest.approx(5 / 100)
    assert np.isnan(precision_at_20(_arrays(pred, truth)))


def test_direction_and_spearman_hand_computed():
    truth = np.r_[np.linspace(-2, 2, 20), np.zeros(5)]  # top-20 by |Δ|: genes 0..19
    pred = truth.copy()
    pred[:4] *= -1  # 4 of 20 flipped
    x = _arrays(pred, truth)
    assert de_direction_match(x) == pytest.approx(16 / 20)
    assert de_spearman_lfc(_arrays(truth**3, truth)) == pytest.approx(1.0)
    assert de_spearman_lfc(_arrays(-truth, truth)) == pytest.approx(-1.0)
    assert np.isnan(de_spearman_lfc(_arrays(np.zeros(25), truth)))


def test_discrimination_l1_hand_computed_and_rank_score_relation():
    truths = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    pred = np.array([1.2, 0.0])  # L1 distances 1.2, 0.2, 1.8, 6.2: row 0 is second nearest
    x = _arrays(pred, truths[0], all_truths=truths, index=0)
    assert discrimination_l1(x) == pytest.approx(1 - 1 / 4)  # only row 1 is nearer
    assert rank_score(x) == pytest.approx(1 / 3)  # L2 also ranks row 0 second
    assert discrimination_l1(x) == pytest.approx(1 - rank_score(x) * 3 / 4)  # 1 − rank_score (n − 1) / n


# -- cross-check against cell-eval's own functions -------------------------------------------------
def _de_results(frame_rows):
    pl = pytest.importorskip("polars")
    from cell_eval._types import DEResults

    return DEResults(data=pl.DataFrame(frame_rows, schema=["target", "feature", "log2_fold_change", "p_value", "fdr"],
                                       orient="row"))


def _de_rows(pert, delta, significant):
    return [(pert, f"g{i}", float(d), 0.0 if s else 1.0, 0.0 if s else 1.0)
            for i, (d, s) in enumerate(zip(delta, significant))]


@pytest.fixture
def case(rng):
    pytest.importorskip("cell_eval", reason="cell-eval not installed (conflicts with scipy<1.15; see module docstring)")
    truths = rng.normal(size=(6, 150)) * rng.gamma(0.5, size=150)
    preds = truths + rng.normal(scale=0.8, size=truths.shape)
    return truths, preds


def test_overlap_precision_match_cell_eval(case):
    from cell_eval._types import DEComparison
    from cell_eval.metrics import de_overlap_metric

    truths, preds = case
    for i, (t, p) in enumerate(zip(truths, preds)):
        de20 = np.argsort(-np.abs(t), kind="stable")[:20][::-1]  # any order: a set
        x = _arrays(p, t, de20=de20, all_truths=truths, index=i)
        all_sig = np.ones(t.size, bool)
        comp = DEComparison(real=_de_results(_de_rows("P", t, all_sig)), pred=_de_results(_de_rows("P", p, all_sig)))
        for n, ours in ((20, overlap_at_20), (100, overlap_at_100)):
            assert de_overlap_metric(comp, k=n, metric="overlap")["P"] == pytest.approx(ours(x))
        sig = np.isin(np.arange(t.size), de20)
        comp = DEComparison(real=_de_results(_de_rows("P", t, sig)), pred=_de_results(_de_rows("P", p, all_sig)))
        for n, ours in ((20, precision_at_20), (100, precision_at_100)):
            assert de_overlap_metric(comp, k=n, metric="precision")["P"] == pytest.approx(ours(x))


def test_direction_spearman_match_cell_eval(case):
    from cell_eval._types import DEComparison
    from cell_eval.metrics import DEDirectionMatch, DESpearmanLFC

    truths, preds = case
    for t, p in zip(truths, preds):
        x = _arrays(p, t)
        sig = np.isin(np.arange(t.size), np.argsort(-np.abs(t), kind="stable")[:20])
        comp = DEComparison(real=_de_results(_de_rows("P", t, sig)),
                            pred=_de_results(_de_rows("P", p, np.ones(t.size, bool))))
        assert DEDirectionMatch()(comp)["P"] == pytest.approx(de_direction_match(x))
        assert DESpearmanLFC()(comp)["P"] == pytest.approx(de_spearman_lfc(x), abs=1e-6)


def test_discrimination_matches_cell_eval(case):
    import anndata as ad
    import pandas as pd
    from cell_eval._types import PerturbationAnndataPair
    from cell_eval.metrics import discrimination_score

    truths, preds = case
    names = [f"P{i}" for i in range(len(truths))]
    obs = pd.DataFrame({"condition": ["ctrl", *names]}, index=[f"c{i}" for i in range(len(names) + 1)])
    var = pd.DataFrame(index=[f"g{i}" for i in range(truths.shape[1])])
    zero = np.zeros((1, truths.shape[1]))
    pair = PerturbationAnndataPair(real=ad.AnnData(np.vstack([zero, truths]), obs=obs, var=var),
                                   pred=ad.AnnData(np.vstack([zero, preds]), obs=obs, var=var),
                                   pert_col="condition", control_pert="ctrl")
    theirs = discrimination_score(pair, metric="l1", exclude_target_gene=False)
    for i, name in enumerate(names):
        x = _arrays(preds[i], truths[i], all_truths=truths, index=i)
        assert theirs[name] == pytest.approx(discrimination_l1(x))
