"""Cell-level split (the reference study's protocol): partition, manifest, derived data, pipeline."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from perturbench import pipeline
from perturbench.cell_split import (
    SEEN_CELLS,
    CellSplit,
    cell_split_data,
    cell_split_parts,
    make_cell_split,
    read_any_manifest,
    split_obs,
    write_cell_manifest,
)
from perturbench.data.conditions import CTRL
from perturbench.data.gears_source import load_gears_dataset
from perturbench.data.simulate import SimulationConfig, write_simulated
from perturbench.data.store import load_dataset, save_dataset
from perturbench.splits import Split, SplitError

TINY = SimulationConfig.tiny(seed=5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny simulated screen, prepared and restricted to every feature set (folders)."""
    from perturbench.data.de import annotate_de

    root = tmp_path_factory.mktemp("cellsplit")
    raw = write_simulated(TINY, root / "raw.h5ad")
    save_dataset(annotate_de(load_gears_dataset(raw, name="tiny")), root / "prepared")
    for fs in ("full", "no_mt", "no_mt_ribo"):
        pipeline.featureset(root / "prepared", fs, root / fs)
    return root


def _split(root, seed=0, **kw) -> CellSplit:
    names, conditions = split_obs(root / "prepared" / "cells.h5ad")
    return make_cell_split(names, conditions, seed=seed, **kw)


def test_parts_are_disjoint_and_cover_every_cell(prepared):
    sp = _split(prepared)
    names, _ = split_obs(prepared / "prepared" / "cells.h5ad")
    parts = [set(sp.cells[p]) for p in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(names)
    assert set().union(*parts) == set(names)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_every_condition_in_all_three_parts_in_the_right_proportions(prepared):
    sp = _split(prepared)
    names, conditions = split_obs(prepared / "prepared" / "cells.h5ad")
    of = dict(zip(names, conditions))
    counts = {p: Counter(of[c] for c in sp.cells[p]) for p in ("train", "val", "test")}
    for cond, n in Counter(conditions).items():  # 30 cells per perturbation, 300 control
        n_val, n_test = round(0.1 * n), round(0.1 * n)
        assert (counts["val"][cond], counts["test"][cond], counts["train"][cond]) == (n_val, n_test, n - n_val - n_test)
    assert set(sp.conditions) == set(conditions) - {CTRL}
    assert sp.test == {c: SEEN_CELLS for c in sp.conditions}


def test_deterministic_and_seed_dependent(prepared):
    assert _split(prepared, seed=3) == _split(prepared, seed=3)
    assert _split(prepared, seed=3).cells["test"] != _split(prepared, seed=4).cells["test"]


def test_identical_across_feature_sets(prepared):
    splits = []
    for fs in ("prepared", "full", "no_mt", "no_mt_ribo"):
        cells = load_dataset(prepared / fs).cells
        splits.append(make_cell_split(cells.obs_names, cells.obs["condition"], seed=1))
    assert all(s == splits[0] for s in splits)


def test_manifest_round_trip_and_checksum(prepared, tmp_path):
    sp = _split(prepared, seed=2, fractions=(0.7, 0.1, 0.2), zscore=True)
    path = tmp_path / "seed2.json"
    write_cell_manifest(sp, path, dataset="tiny")
    assert read_any_manifest(path, dataset="tiny") == sp
    raw = json.loads(path.read_text())
    raw["cells"]["test"] = raw["cells"]["test"][1:]
    path.write_text(json.dumps(raw))
    with pytest.raises(SplitError, match="checksum mismatch"):
        read_any_manifest(path)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"fractions": (0.8, 0.1)}, "three non-negative numbers"), ({"fractions": (0.9, 0.2, -0.1)}, "non-negative")],
)
def test_bad_fractions_rejected(prepared, kw, message):
    with pytest.raises(SplitError, match=message):
        _split(prepared, **kw)


def test_too_few_cells_rejected():
    with pytest.raises(SplitError, match="'A' has 2 cells"):
        make_cell_split(["c1", "c2", "c3", "c4", "c5"], ["ctrl", "ctrl", "ctrl", "A", "A"], seed=0)


def test_truth_is_the_test_cells_against_the_training_control(prepared):
    ds = load_dataset(prepared / "full")
    sp = _split(prepared)
    parts = cell_split_data(ds, sp)
    cells = ds.cells
    labels = cells.obs["condition"].astype(str)
    test, train = set(sp.cells["test"]), set(sp.cells["train"])
    cond = sp.conditions[0]
    rows = [i for i, (n, c) in enumerate(zip(cells.obs_names, labels)) if n in test and c == cond]
    np.testing.assert_allclose(parts.truth.expression([cond])[0], np.asarray(cells.X[rows].mean(axis=0)).ravel(),
                               rtol=1e-6)
    ctrl_rows = [i for i, (n, c) in enumerate(zip(cells.obs_names, labels)) if n in train and c == CTRL]
    np.testing.assert_allclose(parts.truth.ctrl, np.asarray(cells.X[ctrl_rows].mean(axis=0)).ravel(), rtol=1e-6)
    np.testing.assert_allclose(parts.truth.ctrl, parts.train.ctrl)
    assert set(parts.truth.de_genes("de20")) == set(sp.conditions)
    assert parts.train.cells.n_obs == len(sp.cells["train"])
    train_means = parts.train.expression(parts.train.conditions).mean(axis=0)
    np.testing.assert_allclose(parts.pert_ref, train_means)


def test_zscore_uses_training_cell_moments(prepared):
    ds = load_dataset(prepared / "full")
    plain = cell_split_data(ds, _split(prepared))
    scaled = cell_split_data(ds, _split(prepared, zscore=True))
    x = plain.train.cells.X.toarray().astype(np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    np.testing.assert_allclose(scaled.train.cells.X.mean(axis=0), 0.0, atol=1e-5)
    cond = plain.truth.conditions[0]
    np.testing.assert_allclose(scaled.truth.expression([cond])[0], (plain.truth.expression([cond])[0] - mean) / sd,
                               rtol=1e-4, atol=1e-5)
    assert scaled.truth.de_genes("de20") == plain.truth.de_genes("de20")


def test_pseudobulk_only_dataset_rejected(prepared):
    ds = load_dataset(prepared / "full", with_cells=False)
    with pytest.raises(SplitError, match="needs cells"):
        cell_split_data(ds, _split(prepared))


def test_condition_manifest_still_read(prepared, tmp_path):
    out = tmp_path / "seed0.json"
    pipeline.split(prepared / "prepared", 0, out, dataset="tiny", params={"seen_gene_fraction": 0.75})
    assert isinstance(read_any_manifest(out), Split)


def test_split_takes_the_pseudobulk_file_the_rule_declares(prepared, tmp_path):
    by_folder, by_file = tmp_path / "a.json", tmp_path / "b.json"
    pipeline.split(prepared / "prepared", 0, by_folder, dataset="tiny", params={"kind": "cells"})
    pipeline.split(prepared / "prepared" / "pseudobulk.h5ad", 0, by_file, dataset="tiny", params={"kind": "cells"})
    assert by_file.read_text() == by_folder.read_text()


@pytest.mark.parametrize("model", ["mean", "ridge", "additive", "linear_embedding"])
def test_pipeline_fit_and_evaluate_under_a_cell_split(prepared, tmp_path, model):
    split_path = tmp_path / "seed0.json"
    pipeline.split(prepared / "prepared", 0, split_path, dataset="tiny", params={"kind": "cells"})
    pred = tmp_path / f"{model}.h5ad"
    pipeline.fit_predict(prepared / "full", split_path, model, {"model": model, "params": {}}, pred,
                         go_graph_path=None, go_table=None, log_dir=tmp_path / "log", device="cpu")
    metrics = tmp_path / f"{model}.tsv"
    pipeline.evaluate(prepared / "full", split_path, pred, metrics, featureset="full", model=model, seed=0)
    table = pd.read_csv(metrics, sep="\t")
    assert set(table["subgroup"]) == {SEEN_CELLS}
    assert table["condition"].nunique() == TINY.n_conditions
    pearson = table.loc[table["metric"] == "pearson_delta", "value"]
    assert len(pearson) == TINY.n_conditions and pearson.notna().all()


def test_stored_parts_serve_pseudobulk_jobs(prepared, tmp_path):
    split_path = tmp_path / "seed0.json"
    pipeline.split(prepared / "prepared", 0, split_path, dataset="tiny", params={"kind": "cells"})
    sp = read_any_manifest(split_path)
    folder = prepared / "no_mt" / "seed0" / "cellsplit"
    pipeline.cell_split_data(prepared / "no_mt", split_path, folder)
    stored = cell_split_parts(prepared / "no_mt", sp, with_cells=False)
    derived = cell_split_parts(prepared / "no_mt", sp, with_cells=True)
    assert stored.train.cells is None and derived.train.cells is not None
    by_file = cell_split_parts(prepared / "no_mt" / "pseudobulk.h5ad", sp, with_cells=False)  # as the rules pass it
    assert by_file.train.cells is None and by_file.truth.source == stored.truth.source
    for part in ("train", "val", "truth"):
        a, b = getattr(stored, part), getattr(derived, part)
        np.testing.assert_allclose(a.expression([CTRL, *a.conditions]), b.expression([CTRL, *b.conditions]))
        assert a.de_genes("de20") == b.de_genes("de20")


def test_split_card_shows_cells_per_part_and_no_relabelling(prepared):
    """Condition and cell splits share one interface (relabelled, cell_counts) the split card reads."""
    from types import SimpleNamespace

    from perturbench.report.sections import split_card

    sp = _split(prepared)
    names, _ = split_obs(prepared / "prepared" / "cells.h5ad")
    assert sp.relabelled() == {}
    assert sp.cell_counts() == {p: len(sp.cells[p]) for p in ("train", "val", "test")}
    assert sum(sp.cell_counts().values()) == len(names)
    row = split_card(SimpleNamespace(splits={0: sp}, checksums={0: "0" * 64}))["rows"][0]
    assert (row["relabelled"], row["moves"], row["cells"]) == (0, [], sp.cell_counts())
    assert row["test"] == len(sp.conditions)
    cond = Split(0, "single", ("A",), (), {"B": "unseen_single"})
    assert cond.cell_counts() is None and cond.relabelled() == {}
