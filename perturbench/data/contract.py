"""The dataset contract: one validated object per dataset, cell-level or pseudobulk.

A :class:`PerturbDataset` always carries a *pseudobulk* AnnData (one row per canonical
condition, ``ctrl`` included, X = mean log-normalized expression) and, when the source has
them, the *cells* (obs ``condition`` canonical, X log-normalized, sparse CSR). Delta-only
sources (effects relative to control) have a ``ctrl`` row of zeros and ``delta_only=True``.

Annotations used downstream live in ``pseudobulk.uns``:

- ``de20``: condition → 20 DE genes (scanpy ``rank_genes_groups`` t-test vs ctrl, ``rankby_abs``;
  top-|delta| for pseudobulk-only sources);
- ``de20_nondropout``: condition → GEARS "non-dropout" top-20 DE genes (cells only);
- ``removed_genes``: feature set name and how many genes it removed.

Validation fails at construction with a message that names the source file and the field.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import scipy.sparse as sp

from perturbench.errors import PerturbenchError
from perturbench.data.conditions import CTRL, ConditionError, canonical_condition, targets


DE_KINDS = ("de20", "de20_nondropout", "de_ranking")  # uns keys holding condition → genes lists


class DatasetError(PerturbenchError, ValueError):
    """Invalid dataset content; the message names the file and the field."""


def _dense(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x)


def _index(
    adata: ad.AnnData, rows: np.ndarray | slice, cols: np.ndarray | slice, *, uns: dict | None = None
) -> ad.AnnData:
    """``adata[rows, cols].copy()`` holding the new X only once; ``uns`` replaces the deep copy of
    ``adata.uns`` when given.

    anndata copies a view's X through a transient second copy (twice the subset's size at
    peak); here the annotations go through anndata on a shell without X and uns, and X is
    indexed by scipy / numpy directly. A CSR X stays CSR with sorted column indices.
    """
    shell = ad.AnnData(
        obs=adata.obs, var=adata.var, obsm=adata.obsm, varm=adata.varm,
        obsp=adata.obsp, varp=adata.varp, layers=adata.layers,
    )
    out = shell[rows, cols].copy()
    x = adata.X
    if x is not None and not isinstance(rows, slice):
        x = x[rows]
    if x is not None and not isinstance(cols, slice):
        x = x[:, cols]
        if sp.issparse(x):
            x.sort_indices()
    out.X = x
    out.uns = copy.deepcopy(dict(adata.uns)) if uns is None else uns
    return out


@dataclass(frozen=True)
class PerturbDataset:
    """A validated perturbation dataset (see module docstring for the layout)."""

    name: str
    pseudobulk: ad.AnnData
    cells: ad.AnnData | None = None
    delta_only: bool = False
    source: str = "<memory>"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate_pseudobulk()
        if self.cells is not None:
            self._validate_cells()

    # -- validation -----------------------------------------------------------------------
    def _fail(self, where: str, msg: str) -> DatasetError:
        return DatasetError(f"{self.source}: {where}: {msg}")

    def _validate_pseudobulk(self) -> None:
        pb = self.pseudobulk
        if pb.var_names.has_duplicates:
            dups = sorted(set(pb.var_names[pb.var_names.duplicated()]))[:5]
            raise self._fail("var_names", f"duplicate gene names {dups}")
        for name in pb.obs_names:
            try:
                canon = canonical_condition(name, where=f"{self.source}: pseudobulk obs_names")
            except ConditionError as err:
                raise DatasetError(str(err)) from None
            if canon != name:
                raise self._fail("pseudobulk obs_names", f"condition {name!r} is not canonical ({canon!r})")
        if pb.obs_names.has_duplicates:
            raise self._fail("pseudobulk obs_names", "duplicate condition rows")
        if CTRL not in pb.obs_names:
            raise self._fail("pseudobulk obs_names", f"no {CTRL!r} (control) row")
        x = _dense(pb.X)
        if not np.all(np.isfinite(x)):
            bad = pb.obs_names[~np.isfinite(x).all(axis=1)][:5].tolist()
            raise self._fail("pseudobulk X", f"NaN or inf expression in conditions {bad}")
        if self.delta_only and not np.allclose(x[pb.obs_names.get_loc(CTRL)], 0.0):
            raise self._fail("pseudobulk X", "delta-only source whose 'ctrl' row is not zero")

    def _validate_cells(self) -> None:
        cells = self.cells
        assert cells is not None
        if "condition" not in cells.obs:
            raise self._fail("cells obs", "missing column 'condition'")
        if list(cells.var_names) != list(self.pseudobulk.var_names):
            raise self._fail("cells var_names", "genes differ from the pseudobulk's (order matters)")
        present = set(cells.obs["condition"].astype(str).unique())
        if CTRL not in present:
            raise self._fail("cells obs['condition']", f"no control cells ({CTRL!r})")
        missing = sorted(set(self.pseudobulk.obs_names) - present)
        if missing:
            raise self._fail("cells obs['condition']", f"conditions with no cells: {missing[:5]}")

    # -- views ----------------------------------------------------------------------------
    @property
    def genes(self) -> list[str]:
        return list(self.pseudobulk.var_names)

    @property
    def conditions(self) -> list[str]:
        """Perturbation conditions (``ctrl`` excluded), in pseudobulk row order."""
        return [c for c in self.pseudobulk.obs_names if c != CTRL]

    @property
    def ctrl(self) -> np.ndarray:
        """Control mean expression, shape (n_genes,) (zeros for delta-only sources)."""
        return self.expression([CTRL])[0]

    def expression(self, conditions: Sequence[str]) -> np.ndarray:
        """Pseudobulk rows for ``conditions``, shape (n_conditions, n_genes), float64."""
        missing = [c for c in conditions if c not in self.pseudobulk.obs_names]
        if missing:
            raise KeyError(f"{self.source}: conditions not in dataset: {missing[:5]}")
        idx = self.pseudobulk.obs_names.get_indexer(list(conditions))
        return _dense(self.pseudobulk.X[idx]).astype(np.float64)

    def de_genes(self, kind: str = "de20") -> dict[str, list[str]]:
        """Condition → DE gene list from ``pseudobulk.uns[kind]`` (empty dict when absent)."""
        raw = self.pseudobulk.uns.get(kind, {})
        return {str(k): [str(g) for g in v] for k, v in raw.items()}

    def subset(self, conditions: Sequence[str]) -> PerturbDataset:
        """A dataset with only ``ctrl`` and ``conditions`` (cells filtered alike)."""
        keep = [CTRL] + [c for c in conditions if c != CTRL]
        rows = self.pseudobulk.obs_names.get_indexer(keep)
        if (rows < 0).any():
            missing = [c for c, i in zip(keep, rows, strict=True) if i < 0]
            raise KeyError(f"{self.source}: conditions not in dataset: {missing[:5]}")
        kept = set(keep)  # DE lists of the kept conditions only, not a deep copy of every list
        uns = {
            key: {c: list(v) for c, v in value.items() if c in kept} if key in DE_KINDS else copy.deepcopy(value)
            for key, value in self.pseudobulk.uns.items()
        }
        pb = _index(self.pseudobulk, rows, slice(None), uns=uns)
        cells = None
        if self.cells is not None:
            rows = np.flatnonzero(self.cells.obs["condition"].astype(str).isin(keep).to_numpy())
            cells = _index(self.cells, rows, slice(None))
        return PerturbDataset(self.name, pb, cells, self.delta_only, self.source, dict(self.meta))

    def select_genes(self, genes: Sequence[str]) -> PerturbDataset:
        """A dataset restricted to ``genes``, in that order (DE lists filtered to the kept genes)."""
        keep = list(genes)
        cols = self.pseudobulk.var_names.get_indexer(keep)
        if (cols < 0).any():
            missing = [g for g, i in zip(keep, cols, strict=True) if i < 0]
            raise KeyError(f"{self.source}: genes not in dataset: {missing[:5]}")
        kept = set(keep)
        uns = {
            key: {c: [g for g in v if g in kept] for c, v in self.de_genes(key).items()}
            if key in DE_KINDS
            else copy.deepcopy(value)
            for key, value in self.pseudobulk.uns.items()
        }
        pb = _index(self.pseudobulk, slice(None), cols, uns=uns)
        cells = _index(self.cells, slice(None), cols) if self.cells is not None else None
        return PerturbDataset(self.name, pb, cells, self.delta_only, self.source, dict(self.meta))

    def targets_missing_from_genes(self) -> dict[str, list[str]]:
        """Condition → its target genes that are not measured genes of this dataset."""
        measured = set(self.genes)
        out = {}
        for c in self.conditions:
            miss = [g for g in targets(c) if g not in measured]
            if miss:
                out[c] = miss
        return out
