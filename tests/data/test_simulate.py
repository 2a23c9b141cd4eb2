"""Tests for the simulated Perturb-seq generator (tiny configs; the whole file runs in seconds)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from perturbench.data.conditions import CTRL, canonical_condition, targets
from perturbench.data.simulate import (
    INTERACTION_TYPES,
    SIMULATION_PRESETS,
    SimulationConfig,
    gene2go_table,
    propagate,
    propagate_series,
    simulate,
    write_simulated,
)
from perturbench.report.analyses import top_up_shares

TINY = SimulationConfig(
    n_genes=80, n_perturbed_genes=8, n_singles=8, n_combos=12, cells_per_condition=30,
    n_ctrl_cells=120, n_ribo_genes=10, grn_density=0.15, frac_synergistic=0.25,
    frac_buffering=0.25, frac_epistatic=0.25, seed=3,
)


@pytest.fixture(scope="module")
def tiny() -> ad.AnnData:
    return simulate(TINY)


@pytest.fixture(scope="module")
def deep() -> ad.AnnData:
    """Few genes, many cells per condition: pseudobulks close to their expectation."""
    return simulate(SimulationConfig(
        n_genes=70, n_perturbed_genes=6, n_singles=6, n_combos=10, cells_per_condition=300,
        n_ctrl_cells=600, n_ribo_genes=6, grn_density=0.2, depth_mean=5000.0,
        stress_loading_mt=0.6, stress_loading_ribo=-0.3,
        frac_synergistic=0.3, frac_buffering=0.3, frac_epistatic=0.2, seed=11,
    ))


def _pseudobulk(adata: ad.AnnData) -> dict[str, np.ndarray]:
    """Canonical condition → mean log-normalized expression."""
    canon = np.array([canonical_condition(c) for c in adata.obs["condition"].astype(str)])
    return {c: np.asarray(adata.X[canon == c].mean(axis=0)).ravel() for c in np.unique(canon)}


def _truth_delta(adata: ad.AnnData) -> dict[str, np.ndarray]:
    truth = adata.uns["truth"]
    return dict(zip(truth["conditions"], truth["delta"]))


def test_same_seed_gives_identical_bytes(tiny: ad.AnnData) -> None:
    again = simulate(TINY)
    for part in ("data", "indices", "indptr"):
        assert getattr(tiny.X, part).tobytes() == getattr(again.X, part).tobytes()
    assert tiny.obs.equals(again.obs)


def test_different_seed_differs(tiny: ad.AnnData) -> None:
    other = simulate(SimulationConfig(**{**TINY.__dict__, "seed": 4}))
    assert other.X.shape == tiny.X.shape
    assert (other.X != tiny.X).nnz > 0


def test_gears_layout(tiny: ad.AnnData) -> None:
    obs = tiny.obs
    raw = obs["condition"].astype(str)
    canon = {canonical_condition(c, where="simulated obs['condition']") for c in raw}
    assert CTRL in canon
    assert len(canon) == TINY.n_conditions + 1
    assert tiny.n_obs == TINY.n_cells
    assert ((raw == CTRL) == (obs["control"] == 1)).all()
    singles = [c for c in raw.unique() if c.endswith("+ctrl")]
    assert len(singles) == TINY.n_singles
    combos = [c for c in raw.unique() if c != CTRL and not c.endswith("+ctrl")]
    assert any(c != canonical_condition(c) for c in combos), "combos should be in screen order"
    assert set(obs["cell_type"]) == {TINY.cell_type}
    assert obs["condition_name"].astype(str).iloc[0] == f"{TINY.cell_type}_{raw.iloc[0]}_" + (
        "1" if raw.iloc[0] == CTRL else "1+1")
    assert list(tiny.var["gene_name"]) == list(tiny.var_names)
    assert {g for c in canon for g in targets(c)} <= set(tiny.var_names)


def test_x_is_sparse_log_normalized(tiny: ad.AnnData) -> None:
    X = tiny.X
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert np.any(X.data != np.round(X.data))
    assert X.data.min() > 0 and X.data.max() < 12
    per_cell = np.expm1(X.toarray().astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(per_cell, 1e4, rtol=1e-3)


def test_genes_without_a_single_appear_in_combos() -> None:
    cfg = SimulationConfig(**{**TINY.__dict__, "n_singles": 5, "n_combos": 4, "cells_per_condition": 5})
    adata = simulate(cfg)
    conds = {canonical_condition(c) for c in adata.obs["condition"].astype(str)}
    assert len(conds) == 1 + 5 + 4
    assert {g for c in conds for g in targets(c)} == set(adata.uns["truth"]["perturbed_genes"])


def test_mt_and_ribo_genes_present(tiny: ad.AnnData) -> None:
    names = tiny.var_names.astype(str)
    assert names.str.startswith("MT-").sum() == TINY.n_mt_genes
    assert names.str.match(r"^RP[SL]\d+$").sum() == TINY.n_ribo_genes


def test_stress_shift_moves_mt_and_ribo_means(deep: ad.AnnData) -> None:
    pb = _pseudobulk(deep)
    truth = deep.uns["truth"]
    conds = list(truth["conditions"])
    names = deep.var_names.astype(str)
    mt = np.array([pb[c][names.str.startswith("MT-")].mean() for c in conds])
    ribo = np.array([pb[c][names.str.startswith("RP")].mean() for c in conds])
    shift = np.asarray(truth["stress_shift"])
    assert np.ptp(shift) > 0
    assert np.corrcoef(mt, shift)[0, 1] > 0.5
    assert np.corrcoef(ribo, shift)[0, 1] < -0.5
    # MT- up and RPS/RPL down: their difference cancels the normalization and tracks the shift
    assert np.corrcoef(mt - ribo, shift)[0, 1] > 0.95


def test_planted_interactions_in_truth(tiny: ad.AnnData) -> None:
    delta, table = _truth_delta(tiny), tiny.uns["interactions"]
    for cond, kind, coef, dom in zip(table["condition"], table["type"], table["coefficient"], table["dominant"]):
        a, b = targets(cond)
        both, additive = np.linalg.norm(delta[cond]), np.linalg.norm(delta[a] + delta[b])
        if kind == "synergistic":
            assert both > additive and coef > 1
        elif kind == "buffering":
            assert both < additive and coef < 1
        elif kind == "epistatic":
            other = b if dom == a else a
            assert np.linalg.norm(delta[cond] - delta[dom]) < np.linalg.norm(delta[cond] - delta[other])
        else:
            np.testing.assert_allclose(delta[cond], delta[a] + delta[b], atol=1e-5)


def test_planted_interactions_in_realised_pseudobulk(deep: ad.AnnData) -> None:
    pb, table = _pseudobulk(deep), deep.uns["interactions"]
    names = deep.var_names.astype(str)
    regular = ~(names.str.startswith("MT-") | names.str.startswith("RP"))
    seen = set()
    for cond, kind in zip(table["condition"], table["type"]):
        a, b = targets(cond)
        observed = np.linalg.norm((pb[cond] - pb[CTRL])[regular])
        additive = np.linalg.norm((pb[a] + pb[b] - 2 * pb[CTRL])[regular])
        if kind == "synergistic":
            assert observed > additive, cond
        elif kind == "buffering":
            assert observed < additive, cond
        seen.add(kind)
    assert {"synergistic", "buffering"} <= seen


def test_demo_has_all_interaction_types() -> None:
    demo = simulate(SIMULATION_PRESETS["demo"])
    assert set(demo.uns["interactions"]["type"]) == set(INTERACTION_TYPES)
    assert demo.var_names.str.startswith("MT-").sum() == 13
    assert demo.var_names.str.match(r"^RP[SL]\d+$").sum() == 40


def test_preset_sizes() -> None:
    assert set(SIMULATION_PRESETS) == {"tiny", "demo", "norman", "k562"}
    assert SIMULATION_PRESETS["tiny"].n_cells < 2000
    norman, k562 = SIMULATION_PRESETS["norman"], SIMULATION_PRESETS["k562"]
    assert 85_000 <= norman.n_cells <= 95_000 and norman.n_genes == 5000
    assert 155_000 <= k562.n_cells <= 165_000 and k562.n_genes == 5000
    assert k562.n_combos == 0 and k562.n_singles >= 1900
    assert not norman.store_truth_deltas and not k562.store_truth_deltas


def test_fast_propagation_matches_series(tiny: ad.AnnData) -> None:
    W = tiny.uns["truth"]["W"]
    effects = np.random.default_rng(0).normal(size=(W.shape[0], 3))
    np.testing.assert_allclose(propagate(W, effects), propagate_series(W, effects), atol=1e-10)


def test_ranges_from_json_lists_become_tuples() -> None:
    cfg = SimulationConfig.demo(synergy_range=[1.5, 2.0])
    assert cfg.synergy_range == (1.5, 2.0)
    assert cfg == SimulationConfig.demo(synergy_range=(1.5, 2.0))


def test_truth_deltas_are_optional() -> None:
    small = simulate(SimulationConfig(**{**TINY.__dict__, "store_truth_deltas": False}))
    assert "delta" not in small.uns["truth"]
    assert len(small.uns["truth"]["stress_shift"]) == TINY.n_conditions + 1


def test_write_simulated_round_trips(tmp_path) -> None:
    path = write_simulated(TINY, tmp_path / "sim" / "tiny.h5ad", go_path=tmp_path / "sim" / "go.tsv.gz")
    back = ad.read_h5ad(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["go.tsv.gz", "tiny.h5ad"]
    assert (back.X != simulate(TINY).X).nnz == 0
    assert list(back.uns["interactions"]["type"]) == list(simulate(TINY).uns["interactions"]["type"])


def test_gene2go_table_reflects_the_network(tiny: ad.AnnData) -> None:
    table = gene2go_table(tiny)
    assert list(table.columns) == ["entrez", "symbol", "go_id", "evidence", "ontology"]
    assert set(table["symbol"]) == set(tiny.var_names)
    W = tiny.uns["truth"]["W"].tocoo()
    terms = table.groupby("symbol")["go_id"].agg(set)
    genes = tiny.var_names
    for target, regulator in zip(W.row, W.col):
        assert f"SIM:REG:{genes[regulator]}" in terms[genes[target]] & terms[genes[regulator]]
    assert all(terms[g] >= {"SIM:MITO"} for g in genes if g.startswith("MT-"))


def test_gene2go_file_is_byte_reproducible(tmp_path) -> None:
    for name in ("a", "b"):
        write_simulated(TINY, tmp_path / f"{name}.h5ad", go_path=tmp_path / f"{name}.tsv.gz")
    assert (tmp_path / "a.tsv.gz").read_bytes() == (tmp_path / "b.tsv.gz").read_bytes()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_perturbed_genes": 100}, r"n_perturbed_genes=100: exceeds the 57 genes"),
        ({"n_mt_genes": 14}, r"n_mt_genes=14: must be in \[0, 13\]"),
        ({"n_singles": 9}, r"n_singles=9: must be in \[0, n_perturbed_genes\]"),
        ({"n_combos": 29}, r"n_combos=29: must be in \[0, 28\]"),
        ({"n_singles": 2, "n_combos": 2}, r"n_combos=2: too few combos to cover"),
        ({"frac_epistatic": 0.6}, r"frac_epistatic=0.6: frac_synergistic \+ frac_buffering"),
        ({"grn_density": 1.5}, r"grn_density=1.5: must be in \[0, 1\]"),
        ({"buffering_range": (0.6, 0.2)}, r"buffering_range=\(0.6, 0.2\): must be \(lo, hi\)"),
        ({"synergy_range": (1.0, 2.0, 3.0)}, r"synergy_range=\(1.0, 2.0, 3.0\): must be \(lo, hi\)"),
        ({"cascade_gain": 1.0}, r"cascade_gain=1.0: must be in \[0, 1\)"),
        ({"nb_theta": 0.0}, r"nb_theta=0.0: must be > 0"),
        ({"cells_per_condition": 0}, r"cells_per_condition=0: must be >= 1"),
    ],
)
def test_invalid_config_is_rejected(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=r"SimulationConfig\." + match):
        SimulationConfig(**{**TINY.__dict__, **overrides})


def _top_up_shares(adata: ad.AnnData) -> dict[str, float]:
    pb = _pseudobulk(adata)
    conds = [c for c in pb if c != CTRL]
    return top_up_shares(np.array([pb[c] - pb[CTRL] for c in conds]), list(adata.var_names), top=50)


def test_demo_preset_matches_replogle_k562_top_up_shares() -> None:
    """Replogle 2022 K562: ~9% MT- and ~14% RPS/RPL among each knockdown's top up-regulated genes."""
    shares = _top_up_shares(simulate(SIMULATION_PRESETS["demo"]))
    assert abs(shares["MT-"] - 0.09) <= 0.04, shares
    assert abs(shares["RPS/RPL"] - 0.14) <= 0.04, shares
