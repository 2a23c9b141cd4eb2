"""GO enrichment tables show term names next to ids when a term-name table (``go.terms``) is given."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbench.graphs import GraphError, read_go_terms
from perturbench.report.learned import enrichment_section
from perturbench.report.loaders import DatasetResults, go_table_path
from tests._toydata import GENES, toy_dataset, write_go_table


def write_terms(path, names: dict[str, str]):
    pd.DataFrame({"go_id": list(names), "ontology": "BP", "term": list(names.values())}).to_csv(
        path, sep="\t", index=False)
    return path


def test_read_go_terms(tmp_path):
    path = write_terms(tmp_path / "t.tsv", {"GO:0000001": "mitochondrion inheritance"})
    assert read_go_terms(path) == {"GO:0000001": "mitochondrion inheritance"}
    (tmp_path / "bad.tsv").write_text("id\tname\nGO:1\tx\n")
    with pytest.raises(GraphError, match=r"bad\.tsv: header \['id', 'name'\] lacks column\(s\) \['go_id', 'term'\]"):
        read_go_terms(tmp_path / "bad.tsv")


def test_real_term_table_has_names(shared_file):
    names = read_go_terms(shared_file("go_terms_2022.tsv.gz"))
    assert names["GO:0000001"] == "mitochondrion inheritance"


def test_enrichment_rows_carry_names_or_none(tmp_path, rng):
    go = write_go_table(tmp_path / "gene2go.tsv", rng)
    res = DatasetResults("d", tmp_path, {}, pd.DataFrame(), pd.DataFrame(), ["full"], [], {1: None}, {},
                         pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    res._cache[("fs", "full")] = toy_dataset(rng, cells_per_condition=2)
    table = pd.DataFrame({"gene": GENES[:3], "count": [5, 5, 5], "n": 5})
    all_ids = sorted(pd.read_csv(go, sep="\t")["go_id"].unique())
    terms = write_terms(tmp_path / "terms.tsv", {t: f"name of {t}" for t in all_ids})
    with_names = enrichment_section(res, {"m": table}, go, terms)["rows"][0]["terms"]
    assert with_names and all(t["name"] == f"name of {t['term']}" for t in with_names)
    ids_only = enrichment_section(res, {"m": table}, go, None)["rows"][0]["terms"]
    assert [t["term"] for t in ids_only] == [t["term"] for t in with_names] and all(t["name"] == "" for t in ids_only)


def test_one_place_decides_the_go_table_path(tmp_path):
    results = tmp_path / "results"
    assert go_table_path(results, "d", {"go": {"source": "simulated"}}) == results / "d/raw/gene2go.tsv.gz"
    assert go_table_path(results, "d", {"go": {"source": "table", "gene2go": "/abs/g.tsv"}}) == tmp_path / "/abs/g.tsv"
    assert go_table_path(results, "d", {}) is None
