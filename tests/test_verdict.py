"""Tests of perturbench.stats (Holm, Kendall τ) and perturbench.verdict (comparisons, rank stability, verdicts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, wilcoxon

from perturbench.stats import StatsError, holm, kendall_tau
from perturbench.verdict import (
    best_of,
    comparisons,
    decide,
    rank_stability,
    ranking_scores,
    verdicts,
)


def test_holm_matches_a_hand_computed_example() -> None:
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m = 4) → 4·0.01, 3·0.02, 2·0.03, 1·0.04 = 0.04, 0.06, 0.06, 0.04
    # step-down running max → 0.04, 0.06, 0.06, 0.06; NaN stays NaN and does not count in m
    out = holm([0.03, np.nan, 0.01, 0.04, 0.02])
    np.testing.assert_allclose(out, [0.06, np.nan, 0.04, 0.06, 0.06])


def test_holm_caps_at_one_and_rejects_bad_values() -> None:
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    assert holm([]).size == 0
    with pytest.raises(StatsError, match="holm: p-values must lie in"):
        holm([0.2, 1.5])


def test_kendall_tau_matches_scipy_on_shared_entries(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=12), rng.normal(size=12)
    b[3] = np.nan
    tau, n = kendall_tau(a, b)
    keep = ~np.isnan(b)
    assert n == 11 and tau == pytest.approx(kendalltau(a[keep], b[keep]).statistic)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == (-1.0, 3)
    assert np.isnan(kendall_tau([1.0, 1.0], [1.0, 2.0])[0])


def _table(values: dict[str, list[float]], *, metric: str = "pearson_delta", featureset: str = "full",
           subgroups: list[str] | None = None) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    subgroups = subgroups or ["combo_seen1"] * n
    rows = [{"featureset": featureset, "model": m, "seed": 1, "condition": f"C{i}", "subgroup": subgroups[i],
             "metric": metric, "value": v} for m, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_undefined_correlations_count_as_zero_for_ranking() -> None:
    # "ridge" is undefined on the two hard conditions; skipping them would rank it first (mean 0.9)
    table = _table({"ridge": [0.9, 0.9, np.nan, np.nan], "mean": [0.5, 0.5, 0.5, 0.5]})
    scores, n = ranking_scores(table, ["ridge", "mean"], "pearson_delta")
    assert n == 4 and scores["ridge"] == pytest.approx(0.45) and scores["mean"] == pytest.approx(0.5)
    assert best_of(table, ["ridge", "mean"], "pearson_delta") == "mean"


def test_non_correlation_metrics_rank_on_the_pairs_all_candidates_have() -> None:
    table = _table({"a": [1.0, 1.0, 9.0], "b": [2.0, 2.0, np.nan]}, metric="mse_de20")
    scores, n = ranking_scores(table, ["a", "b"], "mse_de20")
    assert n == 2 and scores["a"] == 1.0 and best_of(table, ["a", "b"], "mse_de20") == "a"


def test_comparisons_test_against_the_best_baseline_and_adjust_by_holm(rng: np.random.Generator) -> None:
    base = rng.normal(0.4, 0.05, size=20)
    model = base + 0.1 + rng.normal(0, 0.01, size=20)
    table = pd.concat([
        _table({"mean": base, "control": base - 0.3, "net": model, "net2": base + rng.normal(0, 0.01, size=20)},
               subgroups=["combo_seen1"] * 10 + ["combo_seen0"] * 10),
    ])
    comp = comparisons(table, baselines=["control", "mean"], metrics=["pearson_delta"])
    assert set(comp["reference"]) == {"mean"}
    assert len(comp) == 2 * 3  # 2 models × (2 subgroups + all)
    row = comp[(comp["model"] == "net") & (comp["subgroup"] == "combo_seen1")].iloc[0]
    diff = model[:10] - base[:10]
    assert row["n"] == 10 and row["median_diff"] == pytest.approx(np.median(diff))
    assert row["p"] == pytest.approx(wilcoxon(diff).pvalue)
    np.testing.assert_allclose(comp["p_holm"], holm(comp["p"]))
    assert decide(row) == "better"


def test_verdict_follows_p_holm_and_direction_and_checks_no_mt_ribo(rng: np.random.Generator) -> None:
    base = rng.normal(1.0, 0.1, size=12)
    full = _table({"mean": base, "net": base + 0.5}, metric="mse_de20")  # worse (mse is lower-better)
    other = _table({"mean": base, "net": base + rng.normal(0, 0.1, size=12)}, metric="mse_de20",
                   featureset="no_mt_ribo")
    comp = comparisons(pd.concat([full, other]), baselines=["mean"], metrics=["mse_de20"])
    table = verdicts(comp).set_index("subgroup")
    assert table.loc["combo_seen1", "verdict"] == "worse"
    assert table.loc["combo_seen1", "verdict_no_mt_ribo"] in {"tie", "worse", "better"}
    expect = "yes" if table.loc["combo_seen1", "verdict_no_mt_ribo"] == "worse" else "no"
    assert table.loc["combo_seen1", "holds_no_mt_ribo"] == expect


def test_few_pairs_are_a_tie() -> None:
    comp = comparisons(_table({"mean": [0.1, 0.2, 0.3], "net": [0.5, 0.6, 0.7]}), baselines=["mean"],
                       metrics=["pearson_delta"])
    assert (comp["n"] == 3).all() and (verdicts(comp)["verdict"] == "tie").all()


def test_rank_stability_kendall_between_feature_sets_and_metrics() -> None:
    models = {"a": [0.9, 0.8], "b": [0.5, 0.6], "c": [0.1, 0.2]}
    reversed_ = {"a": [0.1, 0.2], "b": [0.5, 0.6], "c": [0.9, 0.8]}
    table = pd.concat([
        _table(models), _table(reversed_, featureset="no_mt"),
        _table({m: [10 * (1 - v) for v in vs] for m, vs in models.items()}, metric="mse_de20"),
        _table({m: [10 * (1 - v) for v in vs] for m, vs in reversed_.items()}, metric="mse_de20",
               featureset="no_mt"),
    ])
    out = rank_stability(table, metrics=["pearson_delta", "mse_de20"]).set_index(["kind", "subgroup", "a", "b"])
    assert out.loc[("featureset", "all", "full:pearson_delta", "no_mt:pearson_delta"), "tau"] == pytest.approx(-1.0)
    # lower mse is better: the mse ranking equals the pearson ranking on each feature set
    assert out.loc[("metric", "all", "full:pearson_delta", "full:mse_de20"), "tau"] == pytest.approx(1.0)
    assert out.loc[("metric", "combo_seen1", "no_mt:pearson_delta", "no_mt:mse_de20"), "n"] == 3
