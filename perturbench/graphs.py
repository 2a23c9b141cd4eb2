"""Gene–gene graphs: GO-term Jaccard similarity and co-expression.

A :class:`GeneGraph` is a weighted directed edge list over named genes (``src -> dst``). Both
builders follow GEARS (Roohani et al. 2023): for every *target* gene ``dst`` keep a self-loop of
weight 1 plus the ``top_k`` *source* genes with the highest similarity strictly above a threshold.

- GO graph: similarity = Jaccard index of GO-term sets, J(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b|.
  Intersections for all pairs come from the gene × term incidence matrix A as I = A Aᵀ, in row
  blocks (dense BLAS over the most frequent terms, sparse over the rest);
  |T_a ∪ T_b| = |T_a| + |T_b| − I_ab. The full 20.7k-gene table takes a few seconds.
- Co-expression graph: similarity = |Pearson r| between genes across samples.

Differences from GEARS: the self-loop is always kept (GEARS keeps the ``top_k + 1`` largest
scores, so a gene with several identical-GO partners can lose its self-loop); ties are broken by
the lower gene index, so graphs are deterministic; genes without GO terms (or with constant
expression) stay in the node list as isolated nodes instead of being dropped.

This module imports nothing else of ours.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturbench.errors import PerturbenchError

_BLOCK_ROWS = 1024  # rows of the similarity matrix held densely at a time
_HEAVY_TERMS = 48  # most frequent GO terms handled by a dense product (the rest: sparse)


class GraphError(PerturbenchError, ValueError):
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


def save_graph(graph: GeneGraph, path: str | Path) -> None:
    """Write ``graph`` as ``.npz`` (genes, src, dst, weight), atomically."""
    from perturbench.data.io import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, genes=np.array(graph.genes, dtype=str), src=graph.src, dst=graph.dst, weight=graph.weight)


def load_graph(path: str | Path) -> GeneGraph:
    """Read a graph written by :func:`save_graph`."""
    with np.load(path) as z:
        return GeneGraph(tuple(str(g) for g in z["genes"]), z["src"], z["dst"], z["weight"])


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


def read_go_terms(path: str | Path) -> dict[str, str]:
    """GO term id → term name, from a gzip (or plain) TSV with header ``go_id ontology term``."""
    frame = _read_tsv(Path(path), ["go_id", "term"])
    return dict(zip(frame["go_id"], frame["term"], strict=True))


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

    J(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b| over GO-term sets T, computed in float64 like GEARS.
    Nodes are ``genes`` (in that order; similarities are computed among them only) or, when
    None, every annotated gene, sorted. Genes without GO terms are isolated nodes.

    Cost: J > w ⇔ I_ab − c(|T_a| + |T_b|) > 0 with I = A Aᵀ and c = w / (1 + w). That slack is
    computed in row blocks as one dense float32 BLAS product over the most frequent terms
    (``protein binding`` alone covers 60% of genes), augmented by two columns carrying
    −c|T|, plus a sparse product over the other terms; pairs with slack > −1e-3 get an exact
    float64 J, and the ``top_k`` largest per target are kept.
    """
    _check_top_k(top_k, min_weight, "min_weight")
    nodes = _node_list(sorted(gene2go) if genes is None else genes)
    annotated = np.array([i for i, g in enumerate(nodes) if gene2go.get(g)], dtype=np.int64)
    terms = _GoTerms.build([gene2go[nodes[i]] for i in annotated], min_weight)
    n = len(annotated)
    buffer = np.empty((min(_BLOCK_ROWS, n), n), dtype=np.float32)
    parts = []
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        r, b, jac = terms.jaccard_candidates(start, stop, buffer[: stop - start], min_weight)
        r, b, jac = _top_k_edges(r, b, jac, top_k, n_rows=stop - start)
        parts.append((annotated[start + r], annotated[b], jac))
    return _assemble(nodes, annotated, parts)


@dataclass(frozen=True)
class _GoTerms:
    """Gene × term incidence prepared for blocked Jaccard slack products (see go_similarity_graph)."""

    left: np.ndarray  # (n, h + 2) float32: [heavy-term indicators of a, 1, −c|T_a|]
    right: np.ndarray  # (n, h + 2) float32: [heavy-term indicators of b, −c|T_b|, 1]
    light: sp.csr_matrix  # (n, n_terms − h) float32: the other terms
    light_t: sp.csr_matrix  # its transpose
    sizes: np.ndarray  # (n,) float32: |T|
    c: np.float32  # w / (1 + w)

    @classmethod
    def build(cls, term_sets: Sequence[frozenset[str]], min_weight: float) -> _GoTerms:
        heavy, light = _incidence(term_sets)
        sizes = heavy.sum(axis=1) + np.asarray(light.sum(axis=1), dtype=np.float32).ravel()
        c = np.float32(min_weight / (1.0 + min_weight))
        ones = np.ones((len(sizes), 1), dtype=np.float32)
        left = np.hstack([heavy, ones, -c * sizes[:, None]])
        right = np.hstack([heavy, -c * sizes[:, None], ones])
        return cls(left, right, light, light.T.tocsr(), sizes, c)

    def jaccard_candidates(
        self, start: int, stop: int, out: np.ndarray, min_weight: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block row, column, J) of the pairs with J > min_weight, rows start..stop, self excluded."""
        np.matmul(self.left[start:stop], self.right.T, out=out)  # I_heavy − c(|T_a| + |T_b|)
        extra = (self.light[start:stop] @ self.light_t).tocoo()
        out[extra.row, extra.col] += extra.data  # + I_light
        r, b = np.nonzero(out > np.float32(-1e-3))
        a = start + r
        inter = np.rint(out[r, b] + self.c * (self.sizes[a] + self.sizes[b])).astype(np.float64)
        jac = inter / (self.sizes[a].astype(np.float64) + self.sizes[b] - inter)
        keep = (jac > min_weight) & (b != a)
        return r[keep], b[keep], jac[keep]


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
    parts = []
    for start in range(0, len(nodes), _BLOCK_ROWS):
        corr = np.abs(z[:, start : start + _BLOCK_ROWS].T @ z)  # (block, genes) |r|
        np.fill_diagonal(corr[:, start:], 0.0)
        r, c = np.nonzero(corr > min_abs_corr)
        r, c, w = _top_k_edges(r, c, np.minimum(corr[r, c], 1.0), top_k, n_rows=corr.shape[0])
        parts.append((start + r, c, w))
    return _assemble(nodes, np.flatnonzero(varying), parts)


def _check_top_k(top_k: int, threshold: float, name: str) -> None:
    if top_k < 0:
        raise GraphError(f"top_k must be >= 0, got {top_k!r}")
    if threshold < 0:
        raise GraphError(f"{name} must be >= 0, got {threshold!r}")


def _node_list(genes: Sequence[str]) -> tuple[str, ...]:
    nodes = tuple(str(g) for g in genes)
    if len(set(nodes)) != len(nodes):
        dups = sorted(g for g, n in Counter(nodes).items() if n > 1)[:5]
        raise GraphError(f"genes: duplicate gene names {dups}")
    return nodes


def _incidence(term_sets: Sequence[frozenset[str]]) -> tuple[np.ndarray, sp.csr_matrix]:
    """Binary gene × term incidence as (dense float32 over the ``_HEAVY_TERMS`` most frequent
    terms, sparse float32 CSR over the others)."""
    lengths = np.fromiter((len(t) for t in term_sets), dtype=np.int64, count=len(term_sets))
    codes, names = pd.factorize(pd.Series(list(chain.from_iterable(term_sets)), dtype=object))
    counts = np.bincount(codes, minlength=len(names))
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.lexsort((np.asarray(names, dtype=str), -counts))] = np.arange(len(names))
    row, col = np.repeat(np.arange(len(term_sets)), lengths), rank[codes]
    n_heavy = min(_HEAVY_TERMS, len(names))
    heavy = np.zeros((len(term_sets), n_heavy), dtype=np.float32)
    is_heavy = col < n_heavy
    heavy[row[is_heavy], col[is_heavy]] = 1.0
    data = np.ones(int((~is_heavy).sum()), dtype=np.float32)
    shape = (len(term_sets), len(names) - n_heavy)
    return heavy, sp.csr_matrix((data, (row[~is_heavy], col[~is_heavy] - n_heavy)), shape=shape)


_BINS = 256


def _kth_lower_bound(rows: np.ndarray, vals: np.ndarray, k: int, *, n_rows: int) -> np.ndarray:
    """Per row, a number ≤ its k-th largest value (values in [0, 1]; 0 for rows with < k entries).

    It is the lower edge b/256 of the histogram bin holding the k-th largest value.
    """
    binned = np.minimum((vals * _BINS).astype(np.int64), _BINS - 1)
    counts = np.bincount(rows * _BINS + binned, minlength=n_rows * _BINS).reshape(n_rows, _BINS)
    reaching = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # entries in bin >= b
    return np.maximum((reaching >= k).sum(axis=1) - 1, 0) / _BINS


def _top_k_edges(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int, *, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the ``k`` entries with the largest value in [0, 1]; ties: lower column first.

    ``rows``/``cols`` must come row-major sorted (as from ``np.nonzero``). Entries below
    :func:`_kth_lower_bound` are dropped first; a stable sort on 2·row + (1 − val) then ranks
    the rest within each row.
    """
    pre = vals >= _kth_lower_bound(rows, vals, k, n_rows=n_rows)[rows]
    rows, cols, vals = rows[pre], cols[pre], vals[pre]
    order = np.argsort(2.0 * rows + (1.0 - vals), kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    keep = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") < k
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64), vals[keep].astype(np.float64)


def _assemble(nodes: tuple[str, ...], self_loops: np.ndarray, parts: list[tuple[np.ndarray, ...]]) -> GeneGraph:
    """GeneGraph from (target, source, weight) parts plus self-loops, sorted by (target, −weight, source)."""
    dst = np.concatenate([self_loops.astype(np.int64), *(p[0] for p in parts)])
    src = np.concatenate([self_loops.astype(np.int64), *(p[1] for p in parts)])
    weight = np.concatenate([np.ones(len(self_loops)), *(p[2] for p in parts)])
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
