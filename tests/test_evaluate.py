"""Evaluation layer: per-condition tables, summaries with bootstrap CIs, noise ceiling, Wilcoxon."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import wilcoxon

from perturbench.data.contract import PerturbDataset
from perturbench.evaluate import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    EvaluationError,
    evaluate,
    evaluate_prediction,
    evaluate_prediction_file,
    noise_ceiling,
    paired_wilcoxon,
    summarize,
)
from perturbench.metrics import METRICS, ConditionArrays, top_expressed
from perturbench.models.base import Prediction

GENES = [f"G{i}" for i in range(8)]
CONDS = ["A", "A+B", "B", "C", "D"]
TEST = ["A+B", "C", "D"]
TRAIN = ["A", "B"]
SUBGROUPS = {"A+B": "combo_seen2", "C": "single", "D": "single"}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def data(rng) -> PerturbDataset:
    x = rng.gamma(2.0, 1.0, size=(len(CONDS) + 1, len(GENES)))
    pb = ad.AnnData(X=x, obs=pd.DataFrame(index=["ctrl", *CONDS]), var=pd.DataFrame(index=GENES))
    pb.obs["n_cells"] = 10
    pb.uns["de20"] = {"A+B": ["G0", "G3", "G5"], "C": ["G1", "NOT_MEASURED", "G2", "G7"], "A": ["G4", "G6"]}
    return PerturbDataset("toy", pb, source="toy.h5ad")


def with_nondropout(data: PerturbDataset, lists: dict[str, list[str]]) -> PerturbDataset:
    pb = data.pseudobulk.copy()
    pb.uns["de20_nondropout"] = lists
    return PerturbDataset("toy", pb, source="toy.h5ad")


def run(data: PerturbDataset, pred: np.ndarray, conditions=TEST) -> pd.DataFrame:
    return evaluate_prediction(pred, list(conditions), data, subgroups=SUBGROUPS, train_conditions=TRAIN)


def value(table: pd.DataFrame, condition: str, metric: str) -> float:
    row = table[(table["condition"] == condition) & (table["metric"] == metric)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


# -- evaluate_prediction ----------------------------------------------------------------------
def test_table_layout_and_order(data, rng):
    table = run(data, rng.normal(size=(3, 8)))
    assert list(table.columns) == ["condition", "subgroup", "metric", "value"]
    assert len(table) == 3 * len(METRICS)
    assert list(table["condition"].unique()) == sorted(TEST)
    assert table.groupby("condition")["metric"].apply(list).map(lambda m: m == sorted(METRICS)).all()
    assert dict(zip(table["condition"], table["subgroup"])) == SUBGROUPS


def test_truth_as_prediction_is_perfect(data):
    table = run(data, data.expression(TEST))
    assert (table.loc[table["metric"] == "rmse", "value"] == 0).all()
    assert (table.loc[table["metric"] == "rank_score", "value"] == 0).all()
    assert value(table, "A+B", "pearson_delta") == pytest.approx(1.0)


def test_values_match_the_metric_functions(data, rng):
    pred = rng.normal(size=(3, 8)) + 2
    table = run(data, pred)
    truths = data.expression(TEST)
    x = ConditionArrays(
        pred=pred[1], truth=truths[1], ctrl=data.ctrl, pert_ref=data.expression(TRAIN).mean(0),
        top1000=top_expressed(data.ctrl), de20=np.array([1, 2, 7]), de20_nondropout=None,
        all_truths=truths, index=1,
    )
    for name, m in METRICS.items():
        expected, got = m.fn(x), value(table, "C", name)
        assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected), name


def test_de_metrics_nan_without_de_genes(data, rng):
    table = run(data, rng.normal(size=(3, 8)))
    for name in ("mse_de20", "pearson_delta_de20", "direction_de20", "mse_de20_nondropout"):
        assert math.isnan(value(table, "D", name)), name
    assert not math.isnan(value(table, "C", "mse_de20"))
    assert math.isnan(value(table, "C", "mse_de20_nondropout"))  # dataset has no non-dropout lists


def test_nondropout_de_genes_used_when_present(data, rng):
    pred = rng.normal(size=(3, 8))
    table = run(with_nondropout(data, {"C": ["G3", "G4"]}), pred)
    truth = data.expression(["C"])[0]
    assert value(table, "C", "mse_de20_nondropout") == pytest.approx(np.mean((pred[1, [3, 4]] - truth[[3, 4]]) ** 2))
    assert math.isnan(value(table, "D", "mse_de20_nondropout"))


def test_rejects_wrong_prediction_shape(data):
    with pytest.raises(EvaluationError, match=r"toy: prediction shape \(3, 7\) != \(3, 8\)"):
        run(data, np.zeros((3, 7)))


def test_rejects_condition_without_subgroup(data):
    with pytest.raises(EvaluationError, match=r"toy: conditions without a subgroup: \['A'\]"):
        run(data, np.zeros((1, 8)), conditions=["A"])


def test_rejects_repeated_conditions(data):
    with pytest.raises(EvaluationError, match="toy: repeated conditions"):
        run(data, np.zeros((2, 8)), conditions=["C", "C"])


def test_rejects_empty_training_reference(data):
    with pytest.raises(EvaluationError, match="toy: no training perturbations"):
        evaluate_prediction(data.expression(TEST), TEST, data, subgroups=SUBGROUPS, train_conditions=["ctrl"])


# -- evaluate(Prediction) -----------------------------------------------------------------------
def test_evaluate_prediction_object(data, rng):
    mean = rng.normal(size=(2, 8))
    pred = Prediction(model="ridge", conditions=["D", "C"], genes=GENES, mean=mean)
    got = evaluate(pred, data, subgroups=SUBGROUPS, train_conditions=TRAIN)
    expected = run(data, mean, conditions=["D", "C"])
    pd.testing.assert_frame_equal(got, expected)


def test_evaluate_prediction_file(data, rng, tmp_path):
    pred = Prediction(model="ridge", conditions=["C", "D"], genes=GENES, mean=rng.normal(size=(2, 8)))
    pred.write(tmp_path / "ridge.h5ad")
    got = evaluate_prediction_file(tmp_path / "ridge.h5ad", data, subgroups=SUBGROUPS, train_conditions=TRAIN)
    pd.testing.assert_frame_equal(got, run(data, pred.mean, conditions=["C", "D"]))  # stored as float64


def test_evaluate_rejects_gene_mismatch(data):
    pred = Prediction(model="gears", conditions=["C"], genes=GENES[::-1], mean=np.zeros((1, 8)))
    with pytest.raises(EvaluationError, match=r"model 'gears': predicted genes differ from dataset 'toy' genes"):
        evaluate(pred, data, subgroups=SUBGROUPS, train_conditions=TRAIN)


def test_evaluate_rejects_conditions_outside_subgroups(data):
    pred = Prediction(model="gears", conditions=["C", "B"], genes=GENES, mean=np.zeros((2, 8)))
    message = r"model 'gears': predicted conditions not in the test subgroups: \['B'\]"
    with pytest.raises(EvaluationError, match=message):
        evaluate(pred, data, subgroups=SUBGROUPS, train_conditions=TRAIN)


# -- summarize ---------------------------------------------------------------------------------------
def run_table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = []
    values = {("m1", 0): [1.0, 2.0, 3.0, np.nan], ("m1", 1): [2.0, 4.0, 6.0, 8.0], ("m2", 0): [0.5, 0.5, 0.5, 0.5]}
    for (model, seed), vals in values.items():
        for cond, v in zip(["c1", "c2", "c3", "c4"], vals):
            rows.append(("hvg", model, seed, cond, "single" if cond in ("c1", "c2") else "double", "rmse", v))
    return run_table(rows)


def test_summarize_means_counts_and_columns(runs):
    out = summarize(runs, n_boot=200, seed=0)
    assert list(out.columns) == SUMMARY_COLUMNS
    by = out.set_index(["model", "subgroup"])
    assert by.loc[("m1", "all"), "n"] == 7  # one NaN dropped
    assert by.loc[("m1", "all"), "mean"] == pytest.approx(26 / 7)
    assert by.loc[("m1", "single"), "mean"] == pytest.approx((1 + 2 + 2 + 4) / 4)
    assert by.loc[("m1", "double"), "n"] == 3
    assert by.loc[("m2", "all"), ["mean", "ci_low", "ci_high"]].tolist() == [0.5, 0.5, 0.5]
    for _, row in out.iterrows():
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert list(out["subgroup"][out["model"] == "m1"]) == ["all", "double", "single"]


def test_summarize_is_deterministic_and_order_independent(runs):
    first = summarize(runs, n_boot=300, seed=5)
    shuffled = runs.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, summarize(shuffled, n_boot=300, seed=5))
    assert first.to_csv(index=False) == summarize(runs, n_boot=300, seed=5).to_csv(index=False)


def test_summarize_all_nan_group():
    table = run_table([("hvg", "control", 0, "c1", "single", "pearson_delta", np.nan)])
    row = summarize(table, n_boot=10).iloc[0]
    assert row["n"] == 0 and math.isnan(row["mean"]) and math.isnan(row["ci_low"])


def test_summarize_rejects_missing_columns(runs):
    with pytest.raises(EvaluationError, match=r"summarize: table lacks columns \['featureset'\]"):
        summarize(runs.drop(columns="featureset"))


def test_summarize_rejects_reserved_subgroup(runs):
    with pytest.raises(EvaluationError, match="subgroup name 'all' is reserved"):
        summarize(runs.assign(subgroup="all"))


# -- noise ceiling -----------------------------------------------------------------------------------
def toy_cells(rng: np.random.Generator, *, sparse: bool) -> ad.AnnData:
    n_genes = 6
    ctrl = rng.gamma(2.0, 1.0, size=(5, n_genes))
    shift = np.array([1.0, -1.0, 2.0, 0.0, 0.5, -0.5])
    same = np.tile(ctrl.mean(0) + shift, (4, 1))  # 4 identical cells → identical halves
    noisy = ctrl.mean(0) + shift + rng.normal(scale=0.5, size=(7, n_genes))
    x = np.vstack([ctrl, same, noisy, ctrl[:1] + shift])
    labels = ["ctrl"] * 5 + ["SAME"] * 4 + ["NOISY"] * 7 + ["ONE"]
    cells = ad.AnnData(
        X=sp.csr_matrix(x) if sparse else x,
        obs=pd.DataFrame({"condition": labels}, index=[f"cell{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]),
    )
    return cells


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_noise_ceiling_identical_halves(rng, sparse):
    out = noise_ceiling(toy_cells(rng, sparse=sparse), ["SAME"], seed=0, de_genes={"SAME": ["G0", "G2"]})
    row = out.iloc[0]
    assert list(out.columns) == ["condition", "n_cells", "r_half", "r_full", "mse_de20_half", "mse_de20_floor"]
    assert row["n_cells"] == 4
    assert row["r_half"] == pytest.approx(1.0) and row["r_full"] == pytest.approx(1.0)
    assert row["mse_de20_half"] == pytest.approx(0.0, abs=1e-24)


def test_noise_ceiling_spearman_brown_and_determinism(rng):
    cells = toy_cells(rng, sparse=False)
    out = noise_ceiling(cells, ["NOISY", "ONE"], seed=3)
    r = out.loc[0, "r_half"]
    assert -1 < r < 1 and out.loc[0, "r_full"] == pytest.approx(2 * r / (1 + r))
    assert math.isnan(out.loc[0, "mse_de20_half"])  # no DE genes given
    assert out.loc[1, "n_cells"] == 1 and math.isnan(out.loc[1, "r_half"])  # one cell cannot be split
    alone = noise_ceiling(cells, ["NOISY"], seed=3)
    assert alone.loc[0, "r_half"] == r  # a condition's split does not depend on the others


def test_noise_ceiling_rejects_unknown_condition(rng):
    with pytest.raises(EvaluationError, match=r"noise_ceiling: conditions with no cells: \['ZZZ'\]"):
        noise_ceiling(toy_cells(rng, sparse=False), ["ZZZ"], seed=0)


def test_noise_ceiling_rejects_missing_control(rng):
    with pytest.raises(EvaluationError, match="noise_ceiling: no control cells labelled 'control'"):
        noise_ceiling(toy_cells(rng, sparse=False), ["SAME"], ctrl_label="control", seed=0)


# -- paired Wilcoxon ---------------------------------------------------------------------------------
@pytest.fixture
def paired(rng) -> pd.DataFrame:
    rows = []
    base = rng.normal(size=12)
    for i, b in enumerate(base):
        seed, cond = i % 2, f"c{i // 2}"
        rows.append(("hvg", "ref", seed, cond, "single", "mse", b))
        rows.append(("hvg", "new", seed, cond, "single", "mse", b - 0.3 + 0.1 * rng.normal()))
    rows.append(("hvg", "new", 9, "extra", "single", "mse", 1.0))  # unpaired: ignored
    rows.append(("hvg", "ref", 0, "c0", "single", "pearson", 0.1))
    return run_table(rows)


def test_paired_wilcoxon_matches_scipy(paired):
    stat, p, n = paired_wilcoxon(paired, model="new", reference="ref", metric="mse")
    sub = paired[paired["metric"] == "mse"]
    wide = sub.pivot(index=["seed", "condition"], columns="model", values="value").dropna()
    expected = wilcoxon(wide["new"] - wide["ref"])
    assert n == 12 and stat == expected.statistic and p == pytest.approx(expected.pvalue)


def test_paired_wilcoxon_identical_models_is_nan(paired):
    same = pd.concat([paired, paired[paired["model"] == "ref"].assign(model="copy")])
    stat, p, n = paired_wilcoxon(same, model="copy", reference="ref", metric="mse")
    assert math.isnan(stat) and math.isnan(p) and n == 12


def test_paired_wilcoxon_no_shared_pairs(paired):
    assert paired_wilcoxon(paired, model="new", reference="ref", metric="pearson")[2] == 0


def test_paired_wilcoxon_rejects_unknown_model(paired):
    with pytest.raises(EvaluationError, match=r"model 'gears' not in table \(models: \['new', 'ref'\]\)"):
        paired_wilcoxon(paired, model="gears", reference="ref", metric="mse")


def test_paired_wilcoxon_rejects_unknown_metric(paired):
    with pytest.raises(EvaluationError, match="metric 'r2' not in table"):
        paired_wilcoxon(paired, model="new", reference="ref", metric="r2")
