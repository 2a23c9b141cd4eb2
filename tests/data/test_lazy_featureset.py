"""Feature sets as gene masks: the cells are stored once (prepared) and read only when needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perturbench import pipeline
from perturbench.data.de import annotate_de, nondropout_de, nondropout_from_pseudobulk
from perturbench.data.features import apply_feature_set
from perturbench.data.gears_source import load_gears_dataset
from perturbench.data.simulate import SimulationConfig, write_simulated
from perturbench.data.store import CELLS, CELLS_REF, PSEUDOBULK, load_dataset, save_dataset


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy")
    raw = write_simulated(SimulationConfig.tiny(seed=2), root / "raw.h5ad")
    ds = annotate_de(load_gears_dataset(raw, name="tiny"))
    save_dataset(ds, root / "prepared")
    for fs in ("full", "no_mt", "no_mt_ribo"):
        pipeline.featureset(root / "prepared", fs, root / fs)
    return root, ds


@pytest.mark.parametrize("fs", ["full", "no_mt", "no_mt_ribo"])
def test_featureset_folder_equals_the_eager_restriction(tree, fs):
    root, ds = tree
    eager, _ = apply_feature_set(ds, fs)
    lazy = load_dataset(root / fs)
    assert lazy.genes == eager.genes
    assert (lazy.cells.X != eager.cells.X).nnz == 0
    assert list(lazy.cells.obs_names) == list(eager.cells.obs_names)
    assert lazy.pseudobulk.X.dtype == np.float32  # stored as float32: the eager values, rounded
    np.testing.assert_array_equal(np.asarray(lazy.pseudobulk.X), np.asarray(eager.pseudobulk.X, dtype=np.float32))
    for kind in ("de20", "de20_nondropout", "de_ranking"):
        assert lazy.de_genes(kind) == eager.de_genes(kind), kind


@pytest.mark.parametrize("fs", ["full", "no_mt_ribo"])
def test_cells_are_stored_once(tree, fs):
    root, _ = tree
    assert not (root / fs / CELLS).exists()
    ref = json.loads((root / fs / CELLS_REF).read_text())
    assert (root / fs / ref["cells"]).resolve() == (root / "prepared" / CELLS).resolve()
    assert (root / fs / CELLS_REF).stat().st_size + (root / fs / PSEUDOBULK).stat().st_size < (
        root / "prepared" / CELLS
    ).stat().st_size


def test_pseudobulk_only_load_skips_the_cells(tree):
    root, _ = tree
    moved = root / "elsewhere" / "no_mt"
    moved.parent.mkdir()
    (root / "no_mt").rename(moved)  # the reference is relative: now it points nowhere
    try:
        ds = load_dataset(moved, with_cells=False)
        assert ds.cells is None and len(ds.conditions) > 0
        with pytest.raises(ValueError, match=r"cells_ref.json: field 'cells': .* does not exist"):
            load_dataset(moved)
    finally:
        moved.rename(root / "no_mt")


def test_bad_reference_names_file_and_field(tree, tmp_path):
    root, _ = tree
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / PSEUDOBULK).write_bytes((root / "no_mt" / PSEUDOBULK).read_bytes())
    ref = json.loads((root / "no_mt" / CELLS_REF).read_text())
    ref["cells"] = str((root / "prepared" / CELLS).resolve())
    ref["genes"] = [*ref["genes"], "NOT_A_GENE"]
    (folder / CELLS_REF).write_text(json.dumps(ref))
    with pytest.raises(ValueError, match=r"cells_ref.json: field 'genes': 1 genes not in"):
        load_dataset(folder)


def test_nondropout_from_pseudobulk_matches_the_cell_rule(tree):
    _, ds = tree
    ranking = ds.de_genes("de_ranking")
    assert nondropout_from_pseudobulk(ds.pseudobulk, ranking) == nondropout_de(ds.cells, ranking)
