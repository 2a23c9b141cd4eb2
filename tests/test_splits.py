"""Tests of perturbench.splits: GEARS simulation split semantics and the checksummed manifest."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from perturbench.data.conditions import canonical_condition, perturbed_genes, targets
from perturbench.splits import (
    SUBGROUPS,
    Split,
    SplitError,
    make_split,
    read_manifest,
    training_labels,
    write_manifest,
)


def _screen(rng: np.random.Generator, n_genes: int = 20, n_pairs: int = 60) -> list[str]:
    """Singles of every gene plus random pairs (canonical names)."""
    genes = [f"GENE{i:02d}" for i in range(n_genes)]
    pairs = {"+".join(sorted(rng.choice(genes, size=2, replace=False))) for _ in range(n_pairs)}
    return genes + sorted(pairs)


def test_split_partitions_every_condition_once(rng: np.random.Generator) -> None:
    conds = _screen(rng)
    split = make_split(["ctrl", *conds], seed=1)
    parts = [*split.train, *split.val, *split.test]
    assert sorted(parts) == sorted(conds)
    assert split.kind == "simulation" and split.val and split.train


def test_gears_subgroups_follow_seen_genes(rng: np.random.Generator) -> None:
    conds = _screen(rng)
    split = make_split(conds, seed=3)
    seen = {c for c in (*split.train, *split.val) if len(targets(c)) == 1}
    assert len(seen) == int(0.75 * 20)
    for cond in (*split.train, *split.val):
        assert all(g in seen for g in targets(cond)), cond
    for cond, group in split.gears_test.items():
        n_seen = sum(g in seen for g in targets(cond))
        expected = ("unseen_single" if n_seen == 0 else None) if len(targets(cond)) == 1 else f"combo_seen{n_seen}"
        assert group == expected, cond
    seen2 = [c for c in conds if len(targets(c)) == 2 and all(g in seen for g in targets(c))]
    assert sum(g == "combo_seen2" for g in split.gears_test.values()) == len(seen2) - int(0.75 * len(seen2))


def test_subgroups_count_the_genes_of_training_conditions(rng: np.random.Generator) -> None:
    split = make_split(_screen(rng), seed=3)
    trained = set(perturbed_genes(list(split.train)))
    for cond, group in split.test.items():
        n = sum(g in trained for g in targets(cond))
        assert group == ("unseen_single" if len(targets(cond)) == 1 else f"combo_seen{n}"), cond
    assert split.test != split.gears_test  # the carve-out moved some labels on this screen
    moved = split.relabelled()
    assert sum(moved.values()) == sum(split.test[c] != split.gears_test[c] for c in split.test)
    assert all(int(k.split("→")[0][-1]) > int(k.split("→")[1][-1]) for k in moved)  # labels only move down


def test_a_gene_moved_to_validation_relabels_its_test_combos() -> None:
    train = ["A", "B", "A+B"]  # C was seen when the test set was drawn, then went to validation
    test = {"A+C": "combo_seen2", "C+D": "combo_seen1", "D": "unseen_single"}
    labels = training_labels(test, train)
    assert labels == {"A+C": "combo_seen1", "C+D": "combo_seen0", "D": "unseen_single"}
    split = Split(1, "simulation", tuple(train), ("C",), labels, test)
    assert split.relabelled() == {"combo_seen1→combo_seen0": 1, "combo_seen2→combo_seen1": 1}


def test_a_combo_gene_counts_as_seen_through_a_training_combo() -> None:
    assert training_labels(["B+C"], ["A", "A+B"]) == {"B+C": "combo_seen1"}
    with pytest.raises(SplitError, match="test single 'B' targets a gene of a training condition"):
        training_labels(["B"], ["A+B"])


def test_old_manifest_format_is_rejected_with_advice(rng: np.random.Generator, tmp_path) -> None:
    path = tmp_path / "seed1.json"
    write_manifest(make_split(_screen(rng), seed=1), path, dataset="toy")
    raw = json.loads(path.read_text())
    raw["format"] = "perturbench-split/1"
    path.write_text(json.dumps(raw))
    with pytest.raises(SplitError, match=r"seed1.json: field 'format' is 'perturbench-split/1'.*delete it and rerun"):
        read_manifest(path)


def test_validation_is_carved_like_the_test_set(rng: np.random.Generator) -> None:
    split = make_split(_screen(rng), seed=2)
    train_genes = {c for c in split.train if len(targets(c)) == 1}
    val_genes = {c for c in split.val if len(targets(c)) == 1}
    n_seen = len(train_genes) + len(val_genes)  # every gene of the screen has a single
    assert len(val_genes) == n_seen - int(0.9 * n_seen)
    for cond in split.train:
        assert all(g in train_genes for g in targets(cond)), cond


def test_split_is_deterministic_and_order_free(rng: np.random.Generator) -> None:
    conds = _screen(rng)
    shuffled = list(rng.permutation(conds))
    assert make_split(conds, seed=5) == make_split(shuffled, seed=5)
    assert make_split(conds, seed=5) != make_split(conds, seed=6)


def test_single_gene_screen_gets_single_kind() -> None:
    split = make_split([f"G{i}" for i in range(12)], seed=0)
    assert split.kind == "single"
    assert set(split.test.values()) == {"unseen_single"}
    assert len(split.test) == 12 - int(0.75 * 12)


def test_tiny_screen_keeps_training_when_validation_would_empty_it() -> None:
    split = make_split(["A", "B"], seed=0)
    assert len(split.train) == 1 and split.val == () and list(split.test.values()) == ["unseen_single"]


def test_no_training_condition_is_an_error() -> None:
    with pytest.raises(SplitError, match="leaves no training condition"):
        make_split(["A"], seed=0)


def test_single_kind_rejects_combinations() -> None:
    with pytest.raises(SplitError, match=r"kind 'single' but conditions include combinations such as 'A\+B'"):
        make_split(["A", "B", "A+B"], seed=0, kind="single")


def test_non_canonical_condition_is_rejected() -> None:
    with pytest.raises(SplitError, match=r"'B\+A' is not canonical \(expected 'A\+B'\)"):
        make_split(["A", "B", "B+A"], seed=0)


def test_malformed_condition_is_rejected() -> None:
    with pytest.raises(SplitError, match=r"malformed condition 'A\+\+B'"):
        make_split(["A", "A++B"], seed=0)


def test_repeated_condition_is_rejected() -> None:
    with pytest.raises(SplitError, match=r"repeated conditions \['A'\]"):
        make_split(["A", "B", "A"], seed=0)


def test_three_gene_condition_is_rejected() -> None:
    with pytest.raises(SplitError, match=r"'A\+B\+C' perturbs more than two genes"):
        make_split(["A", "B", "A+B+C"], seed=0)


def test_fraction_out_of_range_is_rejected() -> None:
    with pytest.raises(SplitError, match=r"seen_gene_fraction must lie in \[0, 1\], got 1.5"):
        make_split(["A", "B"], seed=0, seen_gene_fraction=1.5)


def test_split_rejects_overlapping_parts() -> None:
    with pytest.raises(SplitError, match=r"conditions in both train and test: \['A'\]"):
        Split(0, "single", ("A",), (), {"A": "unseen_single"})


def test_split_rejects_unknown_subgroup() -> None:
    with pytest.raises(SplitError, match=r"unknown test subgroup\(s\) \['seen3'\]"):
        Split(0, "single", ("A",), (), {"B": "seen3"})


# -- manifest ---------------------------------------------------------------------------------
def test_manifest_round_trips_sorted_with_checksum(rng: np.random.Generator, tmp_path) -> None:
    split = make_split(_screen(rng), seed=4)
    path = tmp_path / "splits" / "seed4.json"
    write_manifest(split, path, dataset="toy")
    assert read_manifest(path, dataset="toy") == split
    raw = json.loads(path.read_text())
    assert list(raw) == sorted(raw) and raw["train"] == sorted(raw["train"])
    assert list(raw["test"]) == sorted(raw["test"])
    assert len(raw["checksum"]) == 64 and raw["dataset"] == "toy"
    assert [p.name for p in path.parent.iterdir()] == ["seed4.json"]


def test_tampered_manifest_fails_checksum(rng: np.random.Generator, tmp_path) -> None:
    path = tmp_path / "seed1.json"
    write_manifest(make_split(_screen(rng), seed=1), path, dataset="toy")
    raw = json.loads(path.read_text())
    raw["val"] = raw["val"][1:]
    path.write_text(json.dumps(raw))
    with pytest.raises(SplitError, match=re.escape(f"{path}: checksum mismatch")):
        read_manifest(path)


def test_manifest_missing_field_is_named(rng: np.random.Generator, tmp_path) -> None:
    path = tmp_path / "seed1.json"
    write_manifest(make_split(_screen(rng), seed=1), path, dataset="toy")
    raw = json.loads(path.read_text())
    del raw["test"]
    path.write_text(json.dumps(raw))
    with pytest.raises(SplitError, match=re.escape(f"{path}: split manifest lacks field(s) ['test']")):
        read_manifest(path)


def test_manifest_that_is_not_json_is_named(tmp_path) -> None:
    path = tmp_path / "seed1.json"
    path.write_text("{not json")
    with pytest.raises(SplitError, match=re.escape(f"{path}: cannot read split manifest")):
        read_manifest(path)


def test_manifest_of_another_dataset_is_rejected(rng: np.random.Generator, tmp_path) -> None:
    path = tmp_path / "seed1.json"
    write_manifest(make_split(_screen(rng), seed=1), path, dataset="norman")
    with pytest.raises(SplitError, match=r"manifest is for dataset 'norman', not 'replogle'"):
        read_manifest(path, dataset="replogle")


def test_norman_split_has_every_subgroup(shared_file) -> None:
    with np.load(shared_file("norman2019_pseudobulk_lfc.npz")) as z:
        conds = [canonical_condition(str(c)) for c in [*z["sing_labels"], *z["doub_labels"]]]
    split = make_split(conds, seed=1)
    counts = Counter(split.test.values())
    assert set(counts) == set(SUBGROUPS)
    n_seen = int(0.75 * len(perturbed_genes(conds)))  # 105 genes: one has no single
    assert n_seen - 1 <= 104 - counts["unseen_single"] <= n_seen
    assert sum(len(targets(c)) == 2 for c in split.train) > 0
