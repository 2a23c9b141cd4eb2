"""Tests of perturbench.graphs: GO table reading, GO Jaccard and co-expression graphs, Laplacian."""

from __future__ import annotations

import gzip
import pickle
import re

import numpy as np
import pandas as pd
import pytest

import perturbench.graphs as graphs
from perturbench.graphs import (
    GeneGraph,
    GraphError,
    coexpression_graph,
    go_similarity_graph,
    laplacian,
    read_gene2go,
    to_edge_index,
)


def _random_gene2go(rng: np.random.Generator, n_genes: int = 40, n_terms: int = 9) -> dict[str, frozenset[str]]:
    """Few terms, so many genes share identical sets (ties at the top-k boundary)."""
    table = {}
    for i in range(n_genes):
        size = int(rng.integers(1, 5))
        table[f"G{i:03d}"] = frozenset(f"GO:{t}" for t in rng.choice(n_terms, size=size, replace=False))
    return table


def _edges(graph: GeneGraph) -> list[tuple[str, str, float]]:
    triples = zip(graph.src, graph.dst, graph.weight, strict=True)
    return [(graph.genes[s], graph.genes[d], float(w)) for s, d, w in triples]


def reference_go_edges(gene2go, nodes, *, top_k: int, min_weight: float) -> list[tuple[str, str, float]]:
    """Slow reference: per target a self-loop + top_k sources by (−J, source position), J > min_weight."""
    edges = []
    for t, target in enumerate(nodes):
        terms = gene2go.get(target)
        if not terms:
            continue
        edges.append((target, target, 1.0))
        scored = []
        for s, source in enumerate(nodes):
            other = gene2go.get(source)
            if s != t and other and len(terms & other) / len(terms | other) > min_weight:
                scored.append((-len(terms & other) / len(terms | other), s))
        edges.extend((nodes[s], target, -negj) for negj, s in sorted(scored)[:top_k])
    return edges


# -- reading --------------------------------------------------------------------------------
def _write_table(path, rows, header=("entrez", "symbol", "go_id", "evidence", "ontology")) -> None:
    frame = pd.DataFrame(rows, columns=list(header))
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, sep="\t", index=False)


def test_read_gene2go_tsv_groups_terms(tmp_path) -> None:
    path = tmp_path / "gene2go.tsv.gz"
    rows = [(1, "A", "GO:1", "IDA", "BP"), (1, "A", "GO:2", "IEA", "CC"), (2, "B", "GO:1", "IDA", "BP"),
            (1, "A", "GO:1", "IEA", "BP")]
    _write_table(path, rows)
    assert read_gene2go(path) == {"A": frozenset({"GO:1", "GO:2"}), "B": frozenset({"GO:1"})}


def test_read_gene2go_missing_column_is_named(tmp_path) -> None:
    path = tmp_path / "gene2go.tsv.gz"
    _write_table(path, [(1, "A", "GO:1")], header=("entrez", "gene", "go_id"))
    message = re.escape(f"{path}: header ['entrez', 'gene', 'go_id'] lacks column(s) ['symbol']")
    with pytest.raises(GraphError, match=message):
        read_gene2go(path)


def test_read_gene2go_gears_pickle(tmp_path) -> None:
    path = tmp_path / "gene2go_all.pkl"
    path.write_bytes(pickle.dumps({"A": {"GO:1", "GO:2"}, "B": ["GO:3"]}))
    assert read_gene2go(path) == {"A": frozenset({"GO:1", "GO:2"}), "B": frozenset({"GO:3"})}


def test_read_gene2go_pickle_of_wrong_type(tmp_path) -> None:
    path = tmp_path / "gene2go_all.pkl"
    path.write_bytes(pickle.dumps(["A", "B"]))
    with pytest.raises(GraphError, match=re.escape(f"{path}: expected a dict symbol -> GO ids, got list")):
        read_gene2go(path)


def test_read_gene2go_pickle_with_string_terms(tmp_path) -> None:
    path = tmp_path / "gene2go_all.pkl"
    path.write_bytes(pickle.dumps({"A": "GO:1"}))
    with pytest.raises(GraphError, match=r"entry 'A' -> 'GO:1' is not symbol -> collection of GO ids"):
        read_gene2go(path)


def test_aliases_add_unambiguous_old_names(tmp_path) -> None:
    table = tmp_path / "gene2go.tsv.gz"
    _write_table(table, [(1, "CBARP", "GO:1", "IDA", "BP"), (2, "B", "GO:2", "IDA", "BP"),
                         (3, "C", "GO:3", "IDA", "BP")])
    aliases = tmp_path / "alias.tsv.gz"
    _write_table(aliases, [(1, "CBARP", "C19orf26"), (2, "B", "OLD"), (3, "C", "OLD"), (2, "B", "C")],
                 header=("entrez", "symbol", "alias_symbol"))
    got = read_gene2go(table, aliases=aliases)
    assert got["C19orf26"] == frozenset({"GO:1"})
    assert "OLD" not in got  # ambiguous: B or C
    assert got["C"] == frozenset({"GO:3"})  # a current symbol is never overridden by an alias


# -- GO graph ---------------------------------------------------------------------------------
@pytest.mark.parametrize("heavy_terms", [0, 3, 1000])
def test_go_graph_matches_slow_reference(rng: np.random.Generator, monkeypatch, heavy_terms: int) -> None:
    monkeypatch.setattr(graphs, "_HEAVY_TERMS", heavy_terms)  # sparse only / mixed / dense only
    monkeypatch.setattr(graphs, "_BLOCK_ROWS", 7)
    table = _random_gene2go(rng)
    nodes = sorted(table)
    for top_k, min_weight in [(3, 0.1), (20, 0.1), (5, 0.5), (2, 0.0)]:
        graph = go_similarity_graph(table, top_k=top_k, min_weight=min_weight)
        assert graph.genes == tuple(nodes)
        assert _edges(graph) == sorted(reference_go_edges(table, nodes, top_k=top_k, min_weight=min_weight),
                                       key=lambda e: (nodes.index(e[1]), -e[2], nodes.index(e[0])))


def test_go_graph_restricted_to_genes_keeps_order_and_isolates_unannotated(rng: np.random.Generator) -> None:
    table = _random_gene2go(rng, n_genes=12)
    genes = ["G011", "NOGO", "G003", "G000", "G007"]
    graph = go_similarity_graph(table, genes, top_k=2)
    assert graph.genes == tuple(genes)
    assert 1 not in set(graph.src) | set(graph.dst)
    assert _edges(graph) == sorted(reference_go_edges(table, genes, top_k=2, min_weight=0.1),
                                   key=lambda e: (genes.index(e[1]), -e[2], genes.index(e[0])))


def test_go_graph_rejects_duplicate_genes(rng: np.random.Generator) -> None:
    with pytest.raises(GraphError, match=r"genes: duplicate gene names \['G001'\]"):
        go_similarity_graph(_random_gene2go(rng), ["G001", "G002", "G001"])


def test_go_graph_rejects_negative_top_k(rng: np.random.Generator) -> None:
    with pytest.raises(GraphError, match="top_k must be >= 0, got -1"):
        go_similarity_graph(_random_gene2go(rng), top_k=-1)


def test_go_graph_on_real_table_matches_reference(shared_file) -> None:
    table = read_gene2go(shared_file("human_gene2go_2022.tsv.gz"))
    genes = sorted(table)[::100]  # 208 real genes
    graph = go_similarity_graph(table, genes)
    expected = reference_go_edges(table, genes, top_k=20, min_weight=0.1)
    assert _edges(graph) == sorted(expected, key=lambda e: (genes.index(e[1]), -e[2], genes.index(e[0])))


# -- co-expression graph ----------------------------------------------------------------------
def test_coexpression_graph_matches_slow_reference(rng: np.random.Generator, monkeypatch) -> None:
    monkeypatch.setattr(graphs, "_BLOCK_ROWS", 4)
    expr = rng.normal(size=(15, 10))
    expr[:, 3] = 2.0  # constant gene: isolated
    expr[:, 5] = -expr[:, 0] + 0.01 * rng.normal(size=15)
    genes = [f"g{i}" for i in range(10)]
    graph = coexpression_graph(expr, genes, top_k=3, min_abs_corr=0.2)
    corr = np.abs(np.corrcoef(expr[:, [i for i in range(10) if i != 3]].T))
    kept = [i for i in range(10) if i != 3]
    expected = []
    for t_pos, t in enumerate(kept):
        expected.append((t, t, 1.0))
        scored = sorted((-corr[t_pos, s_pos], s) for s_pos, s in enumerate(kept) if s != t and corr[t_pos, s_pos] > 0.2)
        expected.extend((s, t, -c) for c, s in scored[:3])
    got = list(zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist(), strict=True))
    expected.sort(key=lambda e: (e[1], -e[2], e[0]))
    assert [(s, d) for s, d, _ in got] == [(s, d) for s, d, _ in expected]
    np.testing.assert_allclose([w for *_, w in got], [w for *_, w in expected], rtol=1e-12)
    assert 3 not in set(graph.src) | set(graph.dst)


def test_coexpression_graph_shape_mismatch_is_named(rng: np.random.Generator) -> None:
    with pytest.raises(GraphError, match=r"expr shape \(5, 3\) does not match 4 genes"):
        coexpression_graph(rng.normal(size=(5, 3)), ["a", "b", "c", "d"])


# -- views ----------------------------------------------------------------------------------
def _small_graph() -> GeneGraph:
    # A->B 1.0, B->A 0.5, B->C 2.0, C->C 1.0 (self-loop), X->A 3.0 (X not in the gene order)
    return GeneGraph(("A", "B", "C", "X"), np.array([0, 1, 1, 2, 3]), np.array([1, 0, 2, 2, 0]),
                     np.array([1.0, 0.5, 2.0, 1.0, 3.0]))


def test_laplacian_by_hand() -> None:
    lap = laplacian(_small_graph(), ["C", "A", "B", "D"]).toarray()
    s = np.zeros((4, 4))
    s[1, 2] = s[2, 1] = (1.0 + 0.5) / 2  # A–B
    s[0, 2] = s[2, 0] = 2.0 / 2  # B–C
    np.testing.assert_allclose(lap, np.diag(s.sum(axis=1)) - s)


def test_laplacian_is_symmetric_psd_with_zero_row_sums(rng: np.random.Generator) -> None:
    graph = go_similarity_graph(_random_gene2go(rng), top_k=4)
    lap = laplacian(graph, list(graph.genes)).toarray()
    np.testing.assert_allclose(lap, lap.T)
    np.testing.assert_allclose(lap.sum(axis=1), 0.0, atol=1e-12)
    assert np.linalg.eigvalsh(lap).min() > -1e-10


def test_to_edge_index_layout() -> None:
    edge_index, weight = to_edge_index(_small_graph())
    assert edge_index.shape == (2, 5) and edge_index.dtype == np.int64 and weight.dtype == np.float64
    assert edge_index[:, 2].tolist() == [1, 2]  # B -> C: row 0 = source, row 1 = target


def test_gene_graph_rejects_out_of_range_edges() -> None:
    with pytest.raises(ValueError, match="edge index out of range"):
        GeneGraph(("A",), np.array([1]), np.array([0]), np.array([1.0]))


def test_save_and_load_graph_round_trip(tmp_path):
    from perturbench.graphs import load_graph, save_graph

    graph = GeneGraph(("A", "B", "C"), np.array([0, 1]), np.array([1, 2]), np.array([0.5, 0.25]))
    save_graph(graph, tmp_path / "g.npz")
    back = load_graph(tmp_path / "g.npz")
    assert back.genes == graph.genes
    np.testing.assert_array_equal(back.src, graph.src)
    np.testing.assert_array_equal(back.dst, graph.dst)
    np.testing.assert_array_equal(back.weight, graph.weight)
