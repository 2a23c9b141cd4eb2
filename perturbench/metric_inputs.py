"""The input of every per-condition metric, :class:`ConditionArrays`, validated at construction
(shapes, finiteness, index sets); :mod:`perturbench.metrics` re-exports it. Imports nothing of
perturbench but its error base class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perturbench.errors import PerturbenchError


class MetricInputError(PerturbenchError, ValueError):
    """Invalid metric input; the message names the field and quotes the bad value."""


@dataclass(frozen=True, eq=False)
class ConditionArrays:
    """Prediction and truth for one condition, validated at construction.

    ``pred``, ``truth``, ``ctrl``, ``pert_ref``: shape (G,), finite. ``top1000``: gene indices of
    the control's most expressed genes (non-empty). ``de20``: the condition's top-20 DE gene
    indices (may be empty). ``de20_nondropout``: GEARS non-dropout top-20 indices, or None when
    the dataset has none. ``all_truths``: (n_test, G) true pseudobulks of every test condition,
    whose row ``index`` is ``truth``. ``truth_distances``: optionally the (L2, L1) distances
    ‖T_j − p‖ from the prediction to every row of ``all_truths``, each (n_test,), as
    :func:`truth_distances` computes them for a whole test set at once; None → computed here.
    """

    pred: np.ndarray
    truth: np.ndarray
    ctrl: np.ndarray
    pert_ref: np.ndarray
    top1000: np.ndarray
    de20: np.ndarray
    de20_nondropout: np.ndarray | None
    all_truths: np.ndarray
    index: int
    truth_distances: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        n_genes = _vector("truth", self.truth, None).shape[0]
        for name in ("pred", "truth", "ctrl", "pert_ref"):
            object.__setattr__(self, name, _vector(name, getattr(self, name), n_genes))
        object.__setattr__(self, "top1000", _indices("top1000", self.top1000, n_genes, empty_ok=False))
        object.__setattr__(self, "de20", _indices("de20", self.de20, n_genes, empty_ok=True))
        if self.de20_nondropout is not None:
            nondrop = _indices("de20_nondropout", self.de20_nondropout, n_genes, empty_ok=True)
            object.__setattr__(self, "de20_nondropout", nondrop)
        object.__setattr__(self, "all_truths", self._checked_all_truths(n_genes))
        if self.truth_distances is not None:
            l2, l1 = (_vector("truth_distances", d, self.all_truths.shape[0]) for d in self.truth_distances)
            object.__setattr__(self, "truth_distances", (l2, l1))

    def _checked_all_truths(self, n_genes: int) -> np.ndarray:
        arr = np.asarray(self.all_truths, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != n_genes:
            raise MetricInputError(
                f"ConditionArrays.all_truths: shape {arr.shape} is not (n_test >= 1, {n_genes})"
            )
        # any NaN / inf makes the sum non-finite (one pass, no copy); given finite distances from the
        # finite prediction to every row, every row is finite already (skips n_test² · G work)
        if self.truth_distances is None and not np.isfinite(arr.sum()):
            raise MetricInputError("ConditionArrays.all_truths: contains NaN or inf")
        if isinstance(self.index, bool) or not isinstance(self.index, int | np.integer):
            raise MetricInputError(f"ConditionArrays.index: {self.index!r} is not an integer")
        if not 0 <= self.index < arr.shape[0]:
            raise MetricInputError(
                f"ConditionArrays.index: {self.index} outside [0, {arr.shape[0]}) (rows of all_truths)"
            )
        if not np.array_equal(arr[self.index], self.truth):
            raise MetricInputError(f"ConditionArrays.all_truths: row {self.index} (index) differs from truth")
        return arr


def _vector(name: str, value: np.ndarray, n_genes: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise MetricInputError(f"ConditionArrays.{name}: expected shape (G,), got {arr.shape}")
    if n_genes is not None and arr.shape[0] != n_genes:
        raise MetricInputError(f"ConditionArrays.{name}: shape {arr.shape} != truth shape ({n_genes},)")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise MetricInputError(f"ConditionArrays.{name}: NaN or inf at gene positions {bad}")
    return arr


def _indices(name: str, value: np.ndarray, n_genes: int, *, empty_ok: bool) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        if not empty_ok:
            raise MetricInputError(f"ConditionArrays.{name}: empty gene index set")
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise MetricInputError(
            f"ConditionArrays.{name}: expected a 1-D integer index array, got dtype {arr.dtype} shape {arr.shape}"
        )
    out = arr[(arr < 0) | (arr >= n_genes)]
    if out.size:
        raise MetricInputError(f"ConditionArrays.{name}: indices {out[:5].tolist()} outside [0, {n_genes})")
    if np.unique(arr).size != arr.size:
        raise MetricInputError(f"ConditionArrays.{name}: repeated gene indices")
    return arr.astype(np.int64)
