"""Gene–gene graphs: GO-term Jaccard similarity and co-expression.

A :class:`GeneGraph` is a weighted directed edge list over named genes (``src -> dst``). Both
builders follow GEARS (Roohani et al. 2023): for every *target* gene ``dst`` keep a self-loop of
weight 1 plus the ``top_k`` *source* genes with the highest similarity strictly above a threshold.

- GO graph: similarity = Jaccard index of GO-term sets, J(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b|.
  Intersections for all pairs come from one sparse product of the gene × term incidence matrix,
  I = A Aᵀ, taken in row blocks; |T_a ∪ T_b| = |T_a| + |T_b| − I_ab.
- Co-expression graph: similarity = |Pearson r| between genes across samples.

Differences from GEARS: the self-loop is always kept (GEARS keeps the ``top_k + 1`` largest
scores, so a gene with several identical-GO partners can lose its self-loop); ties are broken by
the lower gene index, so graphs are deterministic; genes without GO terms (or with constant
expression) stay in the node list as isolated nodes instead of being dropped.

This module imports nothing else of ours.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

GENE2GO_COLUMNS = ("entrez", "symbol", "go_id", "evidence", "ontology")
ALIAS_COLUMNS = ("entrez", "symbol", "alias_symbol")
_BLOCK_ROWS = 1024  # rows of the similarity matrix held densely at a time


class GraphError(ValueError):
    """Bad graph input; the message quotes the bad value and names the file or argument."""


@dataclass(frozen=True)
class GeneGraph:
    """Weighted edges ``src[i] -> dst[i]`` with ``weight[i]`` over ``genes`` (indices into it)."""

    genes: tuple[str, ...]
    src: np.ndarray  # (n_edges,) int64
    dst: np.ndarray  # (n_edges,) int64
    weight: np.ndarray  # (n_edges,) float64

    def __post_init__(self) -> None:
        n = len(self.genes)
        if not (len(self.src) == len(self.dst) == len(self.weight)):
            raise ValueError("GeneGraph: src, dst and weight must have the same length")
        if len(self.src) and (self.src.max() >= n or self.dst.max() >= n or min(self.src.min(), self.dst.min()) < 0):
            raise ValueError("GeneGraph: edge index out of range")


# -- reading GO annotations ------------------------------------------------------------------
def read_gene2go(path: str | Path, *, aliases: str | Path | None = None) -> dict[str, frozenset[str]]:
    """Gene symbol → set of GO term ids.

    ``path`` is either a gzip (or plain) TSV with header ``entrez symbol go_id evidence ontology``
    (one row per annotation; all evidence codes and ontologies kept, as GEARS does) or GEARS's
    ``gene2go_all.pkl`` (a pickled dict symbol → set of GO ids), recognised by the ``.pkl``
    suffix. Unpickling runs code from the file: pass a pickle only after verifying its checksum
    (e.g. with the download module's sha256 check) — this function does not.

    ``aliases``: a TSV with header ``entrez symbol alias_symbol``. Each alias that is not itself
    an annotated symbol and maps to exactly one annotated symbol is added as an extra key with
    that symbol's terms (old names such as ``C19orf26`` → ``CBARP``). The result then holds
    aliases too, so build graphs with an explicit ``genes`` list.
    """
    path = Path(path)
    table = _read_pickle_table(path) if path.suffix == ".pkl" else _read_tsv_table(path)
    if aliases is not None:
        table.update(_alias_entries(Path(aliases), table))
    return table


def _read_tsv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str)
    except (OSError, EOFError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise GraphError(f"{path}: cannot read TSV ({err})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise GraphError(f"{path}: header {list(frame.columns)} lacks column(s) {missing}")
    return frame.dropna(subset=list(required))


def _read_tsv_table(path: Path) -> dict[str, frozenset[str]]:
    frame = _read_tsv(path, ("symbol", "go_id"))
    grouped = frame.groupby("symbol", sort=True)["go_id"].agg(frozenset)
    return {str(k): v for k, v in grouped.items()}


def _read_pickle_table(path: Path) -> dict[str, frozenset[str]]:
    try:
        with path.open("rb") as handle:
            raw = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise GraphError(f"{path}: cannot unpickle gene2go table ({err})") from None
    if not isinstance(raw, Mapping):
        raise GraphError(f"{path}: expected a dict symbol -> GO ids, got {type(raw).__name__}")
    table = {}
    for gene, terms in raw.items():
        if not isinstance(gene, str) or isinstance(terms, str):
            raise GraphError(f"{path}: entry {gene!r} -> {terms!r} is not symbol -> collection of GO ids")
        table[gene] = frozenset(str(t) for t in terms)
    return table


def _alias_entries(path: Path, table: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    frame = _read_tsv(path, ("symbol", "alias_symbol"))
    frame = frame[frame["symbol"].isin(table.keys()) & ~frame["alias_symbol"].isin(table.keys())]
    targets = frame.groupby("alias_symbol")["symbol"].agg(lambda s: sorted(set(s)))
    return {str(alias): table[syms[0]] for alias, syms in targets.items() if len(syms) == 1}


# -- builders -------------------------------------------------------------------------------
def go_similarity_graph(
    gene2go: Mapping[str, frozenset[str]],
    genes: Sequence[str] | None = None,
    *,
    top_k: int = 20,
    min_weight: float = 0.1,
) -> GeneGraph:
    """GEARS-style GO graph: per target gene a self-loop (1.0) and ≤ ``top_k`` sources with J > ``min_weight``.

    J(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b| over GO-term sets T. Nodes are ``genes`` (in that order;
    similarities are computed among them only) or, when None, every annotated gene, sorted.
    Genes without GO terms are isolated nodes. Cost: one blocked sparse product A Aᵀ.
    """
    _check_top_k(top_k, min_weight, "min_weight")
    nodes = _node_list(sorted(gene2go) if genes is None else genes)
    incidence = _incidence(gene2go, nodes)
    sizes = np.asarray(incidence.sum(axis=1)).ravel()
    incidence_t = incidence.T.tocsr()
    rows, cols, weights = [], [], []
    for start in range(0, len(nodes), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(nodes))
        inter = (incidence[start:stop] @ incidence_t).toarray()
        union = sizes[start:stop, None] + sizes[None, :] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        r, c, w = _top_k_rows(jaccard, start, top_k=top_k, threshold=min_weight)
        rows.append(r), cols.append(c), weights.append(w)
    return _assemble(nodes, np.flatnonzero(sizes > 0), rows, cols, weights)


def coexpression_graph(
    expr: np.ndarray,
    genes: Sequence[str],
    *,
    top_k: int = 20,
    min_abs_corr: float = 0.3,
) -> GeneGraph:
    """Co-expression graph: per gene a self-loop and ≤ ``top_k`` sources with |r| > ``min_abs_corr``.

    r = Pearson correlation between gene columns of ``expr`` (samples × genes). Genes with zero
    variance across samples have r = 0 with everything and are isolated nodes.
    """
    _check_top_k(top_k, min_abs_corr, "min_abs_corr")
    nodes = _node_list(genes)
    x = np.asarray(expr, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(nodes):
        raise GraphError(f"coexpression_graph: expr shape {x.shape} does not match {len(nodes)} genes")
    centred = x - x.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    varying = norms > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))
    z = np.divide(centred, norms, out=np.zeros_like(centred), where=varying)
    rows, cols, weights = [], [], []
    for start in range(0, len(nodes), _BLOCK_ROWS):
        corr = np.abs(z[:, start : start + _BLOCK_ROWS].T @ z)
        r, c, w = _top_k_rows(corr, start, top_k=top_k, threshold=min_abs_corr)
        rows.append(r), cols.append(c), weights.append(w)
    return _assemble(nodes, np.flatnonzero(varying), rows, cols, weights)


def _check_top_k(top_k: int, threshold: float, name: str) -> None:
    if top_k < 0:
        raise GraphError(f"top_k must be >= 0, got {top_k!r}")
    if threshold < 0:
        raise GraphError(f"{name} must be >= 0, got {threshold!r}")


def _node_list(genes: Sequence[str]) -> tuple[str, ...]:
    nodes = tuple(str(g) for g in genes)
    if len(set(nodes)) != len(nodes):
        dups = sorted({g for g in nodes if nodes.count(g) > 1})[:5]
        raise GraphError(f"genes: duplicate gene names {dups}")
    return nodes


def _incidence(gene2go: Mapping[str, frozenset[str]], nodes: Sequence[str]) -> sp.csr_matrix:
    """Binary gene × term matrix (float64) for ``nodes`` (all-zero rows for unannotated genes)."""
    terms = sorted({t for g in nodes for t in gene2go.get(g, ())})
    term_index = {t: j for j, t in enumerate(terms)}
    indptr, indices = [0], []
    for gene in nodes:
        indices.extend(sorted(term_index[t] for t in gene2go.get(gene, ())))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(nodes), len(terms)))


def _top_k_rows(
    values: np.ndarray, row_offset: int, *, top_k: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row i of ``values``: the ≤ top_k columns j ≠ row_offset + i with value > threshold.

    Ties at the k-th value are broken by the lower column index. Returns (rows, cols, values)
    with rows offset by ``row_offset``.
    """
    n_rows, n_cols = values.shape
    values = values.copy()
    values[np.arange(n_rows), row_offset + np.arange(n_rows)] = -np.inf
    k = min(top_k, n_cols - 1)
    if k <= 0 or n_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(values, part, axis=1).min(axis=1)
    tied = ((values >= kth[:, None]).sum(axis=1) > k) & (kth > threshold)
    for r in np.flatnonzero(tied):
        cand = np.flatnonzero(values[r] >= kth[r])
        part[r] = cand[np.lexsort((cand, -values[r, cand]))[:k]]
    chosen = np.take_along_axis(values, part, axis=1)
    keep = chosen > threshold
    rows = np.broadcast_to(np.arange(n_rows)[:, None], part.shape)[keep] + row_offset
    return rows.astype(np.int64), part[keep].astype(np.int64), chosen[keep].astype(np.float64)


def _assemble(nodes: tuple[str, ...], self_loops: np.ndarray, rows: list, cols: list, weights: list) -> GeneGraph:
    """GeneGraph with edges source → target, sorted by (target, −weight, source)."""
    dst = np.concatenate([self_loops.astype(np.int64), *rows])
    src = np.concatenate([self_loops.astype(np.int64), *cols])
    weight = np.concatenate([np.ones(len(self_loops)), *weights])
    order = np.lexsort((src, -weight, dst))
    return GeneGraph(nodes, src[order], dst[order], weight[order])


# -- graph views ----------------------------------------------------------------------------
def laplacian(graph: GeneGraph, genes: Sequence[str]) -> sp.csr_matrix:
    """Combinatorial Laplacian L = D − S over ``genes`` (in that order), as CSR float64.

    S = (A + Aᵀ)/2 with A[dst, src] = weight (self-loops dropped, duplicate edges summed);
    D = diag(row sums of S). Graph genes not in ``genes`` and their edges are dropped; genes
    not in the graph are isolated (zero rows). L is symmetric positive semi-definite.
    """
    order = _node_list(genes)
    position = {g: i for i, g in enumerate(order)}
    node_pos = np.array([position.get(g, -1) for g in graph.genes], dtype=np.int64)
    src = node_pos[graph.src] if len(graph.src) else np.zeros(0, dtype=np.int64)
    dst = node_pos[graph.dst] if len(graph.dst) else np.zeros(0, dtype=np.int64)
    keep = (src >= 0) & (dst >= 0) & (src != dst)
    n = len(order)
    adj = sp.coo_matrix((graph.weight[keep], (dst[keep], src[keep])), shape=(n, n)).tocsr()
    sym = (adj + adj.T) * 0.5
    degree = np.asarray(sym.sum(axis=1)).ravel()
    return (sp.diags(degree) - sym).tocsr()


def to_edge_index(graph: GeneGraph) -> tuple[np.ndarray, np.ndarray]:
    """(edge_index (2, E) int64 with rows (src, dst), weight (E,) float64) — torch-geometric layout.

    Use ``torch.from_numpy`` on both; message passing flows ``src -> dst`` as in GEARS.
    """
    edge_index = np.stack([graph.src, graph.dst]).astype(np.int64)
    return edge_index, np.asarray(graph.weight, dtype=np.float64)
