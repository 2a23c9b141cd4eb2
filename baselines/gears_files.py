"""The three files GEARS (cell-gears 0.1.2) would download, built offline from a GO table.

GEARS only checks whether a path exists before downloading it, so writing these into its
``data_path`` keeps it off the network:

- ``gene2go_all.pkl``: pickled dict gene symbol → set of GO ids (GEARS reads only the keys
  that are in the node list, so only the nodes are written);
- ``essential_all_data_pert_genes.pkl``: pickled list of gene symbols, the GO-graph nodes
  (GEARS keeps those present in ``gene2go_all.pkl`` and sorts them);
- ``go_essential_all/go_essential_all.csv``: columns ``source,target,importance``; per
  target gene a self-loop of 1.0 plus up to ``top_k`` sources with the highest GO Jaccard
  J(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b| above ``min_weight`` (computed among the nodes only,
  by :func:`perturbench.graphs.go_similarity_graph`). Every gene in it is a node, else GEARS
  raises ``KeyError``.

Node lists (:func:`graph_nodes`): ``'full'`` = every gene with GO terms (~20.7k genes with the
2022 table; GEARS's default large graph), ``'dataset'`` = the given genes that have GO terms
(the dataset's genes plus perturbed genes; the small graph GEARS builds with
``default_pert_graph=False``, ~4x cheaper per epoch on CPU).

The GO table comes from :func:`perturbench.graphs.read_gene2go`: our shared TSV (``entrez symbol
go_id evidence ontology``) or GEARS's own downloaded ``gene2go_all.pkl`` (its checksum verified
by the caller before unpickling).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from perturbench.data.io import atomic_path
from perturbench.graphs import go_similarity_graph

GENE2GO_FILE = "gene2go_all.pkl"
NODES_FILE = "essential_all_data_pert_genes.pkl"
GO_EDGES_FILE = "go_essential_all/go_essential_all.csv"

GoGraphKind = Literal["full", "dataset"]
GO_GRAPH_KINDS: tuple[str, ...] = ("full", "dataset")


def graph_nodes(
    gene2go: Mapping[str, frozenset[str]], *, kind: GoGraphKind, genes: Iterable[str] = ()
) -> list[str]:
    """Sorted GO-graph nodes: every annotated gene (``'full'``) or the annotated ones among ``genes``.

    A gene is annotated when it has at least one GO term. Raises ``ValueError`` for an unknown
    ``kind`` or an empty node list.
    """
    if kind not in GO_GRAPH_KINDS:
        raise ValueError(f"go_graph: unknown kind {kind!r}; expected one of {GO_GRAPH_KINDS}")
    pool = gene2go.keys() if kind == "full" else set(genes)
    nodes = sorted(g for g in pool if gene2go.get(g))
    if not nodes:
        raise ValueError(f"go_graph {kind!r}: no gene has GO terms, so GEARS has no graph nodes")
    return nodes


def go_edge_table(
    gene2go: Mapping[str, frozenset[str]], nodes: Sequence[str], *, top_k: int = 20, min_weight: float = 0.1
) -> pd.DataFrame:
    """GEARS's ``go_essential_all.csv`` table (source, target, importance) over ``nodes``.

    Per target: the self-loop (importance 1.0) and ≤ ``top_k`` sources with J > ``min_weight``.
    Raises ``ValueError`` naming the genes in ``nodes`` that have no GO terms.
    """
    bare = [g for g in nodes if not gene2go.get(g)]
    if bare:
        raise ValueError(f"GEARS GO nodes without GO terms: {bare[:5]} ({len(bare)} in all)")
    graph = go_similarity_graph(gene2go, list(nodes), top_k=top_k, min_weight=min_weight)
    names = pd.Series(graph.genes, dtype=object)
    return pd.DataFrame(
        {
            "source": names.iloc[graph.src].to_numpy(),
            "target": names.iloc[graph.dst].to_numpy(),
            "importance": graph.weight,
        }
    )


def write_gears_files(
    folder: str | Path,
    gene2go: Mapping[str, frozenset[str]],
    nodes: Sequence[str],
    *,
    top_k: int = 20,
    min_weight: float = 0.1,
) -> dict[str, Path]:
    """Write the three GEARS files for ``nodes`` into ``folder``; return name → path.

    Use a fresh folder per fit: GEARS caches cell graphs holding indices into the node list,
    which silently misalign when the node list changes under an existing cache.
    """
    folder = Path(folder)
    edges = go_edge_table(gene2go, nodes, top_k=top_k, min_weight=min_weight)
    paths = {name: folder / name for name in (GENE2GO_FILE, NODES_FILE, GO_EDGES_FILE)}
    _write_pickle(paths[GENE2GO_FILE], {g: set(gene2go[g]) for g in nodes})
    _write_pickle(paths[NODES_FILE], list(nodes))
    with atomic_path(paths[GO_EDGES_FILE]) as tmp:
        edges.to_csv(tmp, index=False)
    return paths


def _write_pickle(path: Path, obj: object) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
