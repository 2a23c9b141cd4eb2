"""Inputs of the dual-stream network built from training data: the prior change, the perturbation
vocabulary, graphs as edge tensors, the spectral gene order and batch encoding."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh

from perturbench.data.conditions import multi_hot, targets
from perturbench.graphs import GeneGraph, laplacian, to_edge_index
from perturbench.linalg import ridge_solve
from perturbench.models.dual_stream_net import NetInput

_DENSE_EIGH_MAX = 400  # components up to this size use a dense eigensolver


@dataclass(frozen=True)
class PriorTable:
    """Additive prior change from training data::

        prior(c) = Σ_{g ∈ targets(c)} p_g,   p_g = δ_g               if g has a training single change
                                              p_g = fill, with fill[g] = s   otherwise ("hidden" targets)

    ``δ_g`` is the training single-gene change of ``g``; ``fill`` is the mean training single-gene
    change (without singles: the mean per-target change ``δ_c / |targets(c)|``); ``s`` (applied only
    when ``g`` is a measured gene) is the mean change of a perturbed gene's own expression over the
    training singles whose target is measured (0 when there are none).

    :meth:`ridge` replaces ``δ_g`` by ridge per-gene effects fitted on every training condition
    (singles and combinations), with leave-one-out effects for the training conditions themselves.
    """

    genes: tuple[str, ...]
    singles: dict[str, np.ndarray]
    fill: np.ndarray
    self_effect: float
    # training condition → (target → coefficient u_g, or None when only this condition has the
    # target, residual r): effects of the fit without the condition
    loo: dict[str, tuple[dict[str, float | None], np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_deltas(cls, conditions: Sequence[str], deltas: np.ndarray, genes: Sequence[str]) -> PriorTable:
        index = {g: i for i, g in enumerate(genes)}
        singles = {c: deltas[i] for i, c in enumerate(conditions) if len(targets(c)) == 1}
        if singles:
            fill = np.mean(list(singles.values()), axis=0)
        else:
            fill = np.mean([deltas[i] / max(len(targets(c)), 1) for i, c in enumerate(conditions)], axis=0)
        own = [v[index[g]] for g, v in singles.items() if g in index]
        return cls(tuple(genes), singles, fill, float(np.mean(own)) if own else 0.0)

    @classmethod
    def ridge(cls, conditions: Sequence[str], deltas: np.ndarray, genes: Sequence[str], *, lam: float) -> PriorTable:
        """Per-gene effects W = (XᵀX + λI)⁻¹ XᵀΔ of the multi-hot design X over the training targets.

        A training condition c must not see itself: its effects are those of the fit without c,
        W₋c = W − u_c r_cᵀ with u_c = (XᵀX + λI)⁻¹ x_c / (1 − h_c), r_c = δ_c − x_c W and
        h_c = x_cᵀ (XᵀX + λI)⁻¹ x_c (Sherman–Morrison); a target no other training condition has
        is hidden (``fill``) for c. ``fill`` and ``self_effect`` as in :meth:`from_deltas`.
        """
        base = cls.from_deltas(conditions, deltas, genes)
        design = sorted({g for c in conditions for g in targets(c)})
        col = {g: j for j, g in enumerate(design)}
        x = multi_hot(conditions, design)  # (n, p)
        a_inv_xt = ridge_solve(x, np.eye(len(conditions)), lam=lam)  # (p, n): (XᵀX + λI)⁻¹ Xᵀ
        w = a_inv_xt @ deltas  # (p, n_genes)
        lever = np.einsum("ij,ji->i", x, a_inv_xt)  # (n,) h_c
        resid = deltas - x @ w  # (n, n_genes)
        only = x.sum(axis=0) == 1  # targets of a single training condition: unknown without it
        loo = {c: ({g: None if only[col[g]] else a_inv_xt[col[g], i] / (1.0 - lever[i]) for g in targets(c)}, resid[i])
               for i, c in enumerate(conditions)}
        return cls(base.genes, {g: w[j] for g, j in col.items()}, base.fill, base.self_effect, loo)

    @classmethod
    def empty(cls, genes: Sequence[str]) -> PriorTable:
        """No prior (``prior="none"``): every target is hidden and the prior change is 0."""
        return cls(tuple(genes), {}, np.zeros(len(genes)), 0.0)

    def hidden_at_prediction(self, condition: str) -> frozenset[str]:
        """Targets of ``condition`` with no per-gene effect (their prior share is ``fill``)."""
        return self.hidden_targets(condition, ())

    def hidden_targets(self, condition: str, hidden: Collection[str]) -> frozenset[str]:
        """Targets whose prior share is ``fill``: asked to be hidden, without an effect, or known only
        from ``condition`` itself (a training condition under the ridge prior)."""
        coef = self.loo.get(condition, ({}, None))[0]
        return frozenset(g for g in targets(condition)
                         if g in hidden or g not in self.singles or coef.get(g, 0.0) is None)

    def prior(self, condition: str, hidden: Collection[str]) -> np.ndarray:
        out = np.zeros_like(self.fill)
        coef, resid = self.loo.get(condition, ({}, None))
        hide = self.hidden_targets(condition, hidden)
        for gene in targets(condition):
            if gene not in hide:
                out += self.singles[gene] if resid is None else self.singles[gene] - coef[gene] * resid
                continue
            out += self.fill
            if gene in self._index:
                out[self._index[gene]] += self.self_effect - self.fill[self._index[gene]]
        return out

    @cached_property
    def _index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}


def edge_tensors(graph: GeneGraph, nodes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``graph`` (``to_edge_index`` layout, messages ``src -> dst``) re-indexed onto ``nodes``; edges
    with an end outside ``nodes`` are dropped. Returns (edge_index (2, E) int64, |weight| (E,) float32)."""
    edge_index, weight = to_edge_index(graph)
    index = {g: i for i, g in enumerate(nodes)}
    pos = np.array([index.get(g, -1) for g in graph.genes], dtype=np.int64)
    mapped = pos[edge_index] if edge_index.size else edge_index
    keep = (mapped >= 0).all(axis=0)
    return torch.from_numpy(mapped[:, keep].copy()), torch.from_numpy(np.abs(weight[keep]).astype(np.float32))


def _fiedler_sort(lap: sp.csr_matrix) -> np.ndarray:
    """Positions of one connected component sorted by its Fiedler vector (sign fixed by index trend)."""
    m = lap.shape[0]
    if m <= 2:
        return np.arange(m)
    if m <= _DENSE_EIGH_MAX:
        vec = np.linalg.eigh(lap.toarray())[1][:, 1]
    else:
        # the two smallest eigenpairs of L are the two largest of cI − L (c = 2·max degree bounds
        # L's spectrum, Gershgorin); Lanczos on sparse matvecs, no factorisation of L
        shifted = sp.identity(m, format="csr") * (2.0 * lap.diagonal().max()) - lap
        vals, vecs = eigsh(shifted, k=2, which="LA", v0=np.linspace(1.0, 2.0, m), tol=1e-10)
        vec = vecs[:, np.argmin(vals)]
    if vec @ (np.arange(m) - (m - 1) / 2) < 0:
        vec = -vec
    return np.argsort(vec, kind="stable")


def spectral_order(graph: GeneGraph, genes: Sequence[str]) -> np.ndarray:
    """Positions in ``genes`` ordered by the Fiedler vector of the graph Laplacian ``L = D − S``
    (``perturbench.graphs.laplacian``).

    Each connected component is ordered by its own Fiedler vector (the eigenvector of the second
    smallest eigenvalue of its Laplacian); components follow each other by decreasing size
    (ties: smallest gene position first), so isolated genes come last in dataset order.
    """
    lap = laplacian(graph, genes)
    n_comp, labels = connected_components(lap != 0, directed=False)
    members = [np.flatnonzero(labels == c) for c in range(n_comp)]
    members.sort(key=lambda idx: (-len(idx), idx[0]))
    return np.concatenate([idx[_fiedler_sort(lap[idx][:, idx])] for idx in members]).astype(np.int64)


@dataclass(frozen=True)
class Encoder:
    """Turns (condition, hidden targets, input expression) into :class:`NetInput` tensors."""

    genes: tuple[str, ...]
    vocab: tuple[str, ...]
    prior: PriorTable

    @cached_property
    def _gene_pos(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}

    @cached_property
    def _vocab_pos(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.vocab)}

    def encode(self, conditions: Sequence[str], hidden: Sequence[Collection[str]], x: np.ndarray) -> NetInput:
        """``x``: (B, G) input expression. Targets outside the vocabulary get no embedding.
        Tensors keep float64 input values; :meth:`NetInput.to` casts them to the network's dtype."""
        b, g, v = len(conditions), len(self.genes), len(self.vocab)
        pert, hid = np.zeros((b, v), np.float32), np.zeros((b, v), np.float32)
        t_flag, h_flag = np.zeros((b, g), np.float32), np.zeros((b, g), np.float32)
        prior = np.zeros((b, g), np.float64)
        for i, (cond, hide) in enumerate(zip(conditions, hidden, strict=True)):
            prior[i] = self.prior.prior(cond, hide)
            unknown = self.prior.hidden_targets(cond, hide)
            for gene in targets(cond):
                hidden_gene = gene in unknown
                if gene in self._vocab_pos:
                    pert[i, self._vocab_pos[gene]] = 1.0
                    hid[i, self._vocab_pos[gene]] = float(hidden_gene)
                if gene in self._gene_pos:
                    t_flag[i, self._gene_pos[gene]] = 1.0
                    h_flag[i, self._gene_pos[gene]] = float(hidden_gene)
        tensors = (np.array(x, dtype=np.float64), prior, pert, hid, t_flag, h_flag)
        return NetInput(*(torch.from_numpy(np.ascontiguousarray(t)) for t in tensors))
