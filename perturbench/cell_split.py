"""Cell-level split (``split.kind: cells``): the protocol of the Replogle-K562 reference study.

Every condition's cells (control included) are partitioned into train / val / test by
``fractions`` (default 80 / 10 / 10%), so every perturbation is *seen* in training and the test
asks for its mean from held-out cells — test subgroup ``seen_cells``. For condition k with n_k
cells (sorted by cell name, permuted by ``numpy.random.default_rng(seed)``, conditions in sorted
order): n_val = max(1, round(f_val·n_k)), n_test = max(1, round(f_test·n_k)), the rest train
(at least one; a condition with fewer than 3 cells is an error). The partition depends only on
cell names, their conditions and the seed, so it is identical across feature sets.

Derived data (:func:`cell_split_data`):

- train: the training cells (control included), their pseudobulk and DE genes;
- val / truth: the validation / test cells of each perturbation, pseudobulk and DE genes
  (Welch t against the *training* control cells), control row = the training control mean;
- optional z-scoring (``zscore``): every gene g becomes (x − μ_g)/σ_g with μ_g, σ_g the mean and
  population sd over the training cells (σ_g = 0 → 1). The pseudobulk is linear in the cells, so
  the z-scored pseudobulk is (pb − μ)/σ exactly; DE rankings are unchanged (the Welch t of a gene
  is invariant to an affine rescaling of that gene). Cells are z-scored too (densified).

In the workflow :func:`write_cell_split_data` stores the three pseudobulks (with DE genes) once
per feature set and seed under ``{feature set}/seed{seed}/cellsplit/{train,val,truth}/``, so
pseudobulk-only models and every evaluation read those (:func:`cell_split_parts`) and only
models that train on cells re-derive the training cells from the manifest.

The manifest (:func:`write_cell_manifest`) lists the cell names of each part, the conditions
and the fractions, with a sha256 checksum like the condition split's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from perturbench.data.cells import pseudobulk_from_cells
from perturbench.data.conditions import CTRL
from perturbench.data.contract import PerturbDataset
from perturbench.data.de import annotate_de, group_sums
from perturbench.data.io import write_text_atomic
from perturbench.data.store import PSEUDOBULK, dataset_folder, load_dataset, save_dataset
from perturbench.splits import Split, SplitError, _checksum, checked_content, read_manifest

CELL_MANIFEST_FORMAT = "perturbench-cellsplit/1"
SEEN_CELLS = "seen_cells"
PARTS = ("train", "val", "test")
_FIELDS = ("format", "dataset", "seed", "kind", "fractions", "zscore", "conditions", "cells", "checksum")


@dataclass(frozen=True)
class CellSplit:
    """A partition of cells; ``train`` / ``val`` / ``test`` mirror :class:`~perturbench.splits.Split`
    (every perturbation in each; ``test`` maps condition → ``seen_cells``), ``cells`` the cell names."""

    seed: int
    fractions: tuple[float, float, float]
    cells: dict[str, tuple[str, ...]]
    conditions: tuple[str, ...]
    zscore: bool = False
    kind: str = "cells"

    def __post_init__(self) -> None:
        sets = {p: set(self.cells.get(p, ())) for p in PARTS}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = sorted(sets[a] & sets[b])
            if shared:
                raise SplitError(f"cells in both {a} and {b}: {shared[:5]}")

    @property
    def train(self) -> tuple[str, ...]:
        return self.conditions

    @property
    def val(self) -> tuple[str, ...]:
        return self.conditions

    @property
    def test(self) -> dict[str, str]:
        return {c: SEEN_CELLS for c in self.conditions}

    def relabelled(self) -> dict[str, int]:
        """No test condition has a GEARS label to differ from: always empty (``Split.relabelled``)."""
        return {}

    def cell_counts(self) -> dict[str, int]:
        """Cells per part (train / val / test), the unit this split assigns."""
        return {p: len(self.cells.get(p, ())) for p in PARTS}


def _part_sizes(n: int, fractions: tuple[float, float, float], condition: str) -> tuple[int, int, int]:
    n_val, n_test = max(1, round(fractions[1] * n)), max(1, round(fractions[2] * n))
    if n - n_val - n_test < 1:
        raise SplitError(f"condition {condition!r} has {n} cells; a cell split needs at least 3")
    return n - n_val - n_test, n_val, n_test


def make_cell_split(
    cell_names: Sequence[str],
    cell_conditions: Sequence[str],
    *,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    zscore: bool = False,
) -> CellSplit:
    """Partition cells per condition (see module docstring). Raises :class:`SplitError` for
    fractions that are not three non-negative numbers summing to 1, repeated cell names, no
    ``ctrl`` cells or a condition with fewer than 3 cells."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-9:
        raise SplitError(f"split.fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    names, labels = np.asarray(cell_names, dtype=str), np.asarray(cell_conditions, dtype=str)
    if names.size != labels.size or len(set(names.tolist())) != names.size:
        raise SplitError("cell split: cell names must be unique, one per cell condition")
    if CTRL not in set(labels.tolist()):
        raise SplitError(f"cell split: no control cells ({CTRL!r})")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for cond in sorted(set(labels.tolist())):
        members = np.sort(names[labels == cond])
        shuffled = members[rng.permutation(members.size)]
        n_train, n_val, _ = _part_sizes(members.size, fr, cond)
        parts["train"] += shuffled[:n_train].tolist()
        parts["val"] += shuffled[n_train : n_train + n_val].tolist()
        parts["test"] += shuffled[n_train + n_val :].tolist()
    conditions = tuple(sorted(set(labels.tolist()) - {CTRL}))
    return CellSplit(seed, fr, {p: tuple(sorted(v)) for p, v in parts.items()}, conditions, bool(zscore))


def split_obs(path: str | Path) -> tuple[list[str], list[str]]:
    """(cell names, conditions) of a cells h5ad, read backed (X is not loaded)."""
    backed = ad.read_h5ad(path, backed="r")
    try:
        return backed.obs_names.astype(str).tolist(), backed.obs["condition"].astype(str).tolist()
    finally:
        backed.file.close()


# -- manifest -------------------------------------------------------------------------------
def _content(split: CellSplit, dataset: str) -> dict:
    return {"format": CELL_MANIFEST_FORMAT, "dataset": dataset, "seed": int(split.seed), "kind": "cells",
            "fractions": list(split.fractions), "zscore": bool(split.zscore), "conditions": list(split.conditions),
            "cells": {p: list(split.cells[p]) for p in PARTS}}


def write_cell_manifest(split: CellSplit, path: str | Path, *, dataset: str) -> None:
    """Write ``split`` as JSON (sorted keys, plus ``checksum``) atomically."""
    content = _content(split, dataset)
    write_text_atomic(path, json.dumps({**content, "checksum": _checksum(content)}, sort_keys=True) + "\n")


def read_any_manifest(path: str | Path, *, dataset: str | None = None) -> Split | CellSplit:
    """A condition split (:func:`~perturbench.splits.read_manifest`) or a cell split manifest."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SplitError(f"{path}: cannot read split manifest ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != CELL_MANIFEST_FORMAT:
        return read_manifest(path, dataset=dataset)
    checked_content(path, raw, _FIELDS, dataset=dataset, what="cell split manifest")
    cells = {p: tuple(raw["cells"][p]) for p in PARTS}
    return CellSplit(int(raw["seed"]), tuple(raw["fractions"]), cells, tuple(raw["conditions"]), bool(raw["zscore"]))


# -- derived data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CellSplitData:
    """Train, validation and test-truth datasets of one cell split (module docstring)."""

    train: PerturbDataset
    val: PerturbDataset
    truth: PerturbDataset

    @property
    def pert_ref(self) -> np.ndarray:
        """Mean training pseudobulk over the perturbations: the evaluation's perturbation reference."""
        return self.train.expression(self.train.conditions).mean(axis=0)


def _rows(cells: ad.AnnData, names: Sequence[str], where: str) -> np.ndarray:
    rows = cells.obs_names.get_indexer(list(names))
    if (rows < 0).any():
        raise SplitError(f"{where}: {int((rows < 0).sum())} cells of the split are not in the dataset")
    return np.sort(rows)


def _dataset(ds: PerturbDataset, rows: np.ndarray, tag: str) -> PerturbDataset:
    cells = ds.cells[rows].copy()
    cells.obs["condition"] = cells.obs["condition"].astype(str)
    pb = pseudobulk_from_cells(cells)
    pb.uns.update({k: v for k, v in ds.pseudobulk.uns.items() if k == "removed_genes"})
    return annotate_de(PerturbDataset(ds.name, pb, cells, False, f"{ds.source}[{tag} cells]", dict(ds.meta)))


def _moments(x: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and population sd (0 → 1) of the rows of ``x``."""
    s1, s2 = group_sums(x, np.zeros(x.shape[0], dtype=np.int64), 1, squares=True)
    mean = s1[0] / x.shape[0]
    sd = np.sqrt(np.maximum(s2[0] / x.shape[0] - mean**2, 0.0))
    return mean, np.where(sd > 0, sd, 1.0)


def _zscored(ds: PerturbDataset, mean: np.ndarray, sd: np.ndarray) -> PerturbDataset:
    pb = ds.pseudobulk.copy()
    pb.X = ((np.asarray(pb.X, dtype=np.float64) - mean) / sd).astype(np.float32)
    cells = ds.cells.copy()
    dense = cells.X.toarray() if sp.issparse(cells.X) else np.asarray(cells.X)
    cells.X = ((dense - mean) / sd).astype(np.float32)
    return dataclasses.replace(ds, pseudobulk=pb, cells=cells)


def cell_split_data(ds: PerturbDataset, split: CellSplit) -> CellSplitData:
    """Train / val / truth datasets of ``split`` on ``ds`` (which must hold cells); z-scored
    on the training cells when ``split.zscore``."""
    if ds.cells is None:
        raise SplitError(f"{ds.source}: a cell split needs cells; this dataset has only a pseudobulk")
    train_rows = _rows(ds.cells, split.cells["train"], ds.source)
    labels = ds.cells.obs["condition"].astype(str).to_numpy()
    ctrl_train = train_rows[labels[train_rows] == CTRL]
    held = {}
    for part in ("val", "test"):
        rows = _rows(ds.cells, split.cells[part], ds.source)
        held[part] = np.sort(np.concatenate([rows[labels[rows] != CTRL], ctrl_train]))
    out = CellSplitData(_dataset(ds, train_rows, "train"), _dataset(ds, held["val"], "val"),
                        _dataset(ds, held["test"], "test"))
    if not split.zscore:
        return out
    mean, sd = _moments(out.train.cells.X)
    return CellSplitData(*(_zscored(d, mean, sd) for d in (out.train, out.val, out.truth)))


def write_cell_split_data(data_dir: str | Path, split: CellSplit, out_dir: str | Path) -> None:
    """Save the train / val / truth pseudobulks of ``split`` on the dataset in ``data_dir``."""
    parts = cell_split_data(load_dataset(data_dir), split)
    for name in ("train", "val", "truth"):
        save_dataset(dataclasses.replace(getattr(parts, name), cells=None), Path(out_dir) / name)


def cell_split_parts(data_dir: str | Path, split: CellSplit, *, with_cells: bool) -> CellSplitData:
    """The parts of ``split``: read from ``data_dir/seed{seed}/cellsplit`` (pseudobulks only)
    when it was written and no cells are wanted, else derived from the dataset's cells."""
    folder = dataset_folder(data_dir) / f"seed{split.seed}" / "cellsplit"
    stored = all((folder / name / PSEUDOBULK).exists() for name in ("train", "val", "truth"))
    if stored and not with_cells:
        return CellSplitData(*(load_dataset(folder / name, with_cells=False) for name in ("train", "val", "truth")))
    return cell_split_data(load_dataset(data_dir), split)
