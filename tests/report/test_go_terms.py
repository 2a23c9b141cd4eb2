"""GO enrichment tables show term names next to ids when a term-name table (``go.terms``) is given."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbench.analysis_tables import go_enrichment_step, read_analysis, write_analysis
from perturbench.data.store import save_dataset
from perturbench.graphs import GraphError, read_go_terms
from perturbench.report.learned import enrichment_section
from perturbench.workflow import go_table
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
    save_dataset(toy_dataset(rng), tmp_path / "full")
    recurrent = tmp_path / "recurrent_genes.tsv"
    write_analysis(pd.DataFrame({"model": "m", "gene": GENES[:3], "count": 5, "n": 5, "fraction": 1.0}), recurrent,
                   top=5, models=["m"])
    all_ids = sorted(pd.read_csv(go, sep="\t")["go_id"].unique())
    terms = write_terms(tmp_path / "terms.tsv", {t: f"name of {t}" for t in all_ids})
    shown = {}
    for label, names in (("with", terms), ("without", None)):
        out = tmp_path / f"go_{label}.tsv"
        go_enrichment_step(recurrent, tmp_path / "full", out, gene2go=go, terms=names)
        shown[label] = enrichment_section(*read_analysis(out, "go_enrichment"), ["m"])["rows"][0]["terms"]
    assert shown["with"] and all(t["name"] == f"name of {t['term']}" for t in shown["with"])
    assert [t["term"] for t in shown["without"]] == [t["term"] for t in shown["with"]]
    assert all(t["name"] == "" for t in shown["without"])


def test_one_place_decides_the_go_table_path():
    assert go_table({"go": {"source": "simulated"}}, "d") == "results/d/raw/gene2go.tsv.gz"
    assert go_table({"go": {"source": "table", "gene2go": "/abs/g.tsv"}}, "d") == "/abs/g.tsv"
    assert go_table({"go": {"source": "gears"}}, "d") == "results/downloads/gene2go_all.pkl"
    assert go_table({}, "d") is None
