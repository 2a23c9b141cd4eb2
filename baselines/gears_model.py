"""GEARS (Roohani et al. 2023; package ``cell-gears`` 0.1.2) behind our fit/predict contract, offline.

fit:
1. Needs cells (``train.cells``); pseudobulk-only data raise :class:`DatasetError`.
2. Builds GEARS's GO graph files from a GO table (``config.gene2go``, else
   ``FitContext.go_table``) with :mod:`baselines.gears_files` in a fresh temporary folder under
   ``FitContext.workdir`` (removed after fit), so GEARS never downloads anything. Nodes:
   ``go_graph='full'`` = every annotated gene; ``'dataset'`` = the annotated genes among the
   measured genes, the train/val target genes and ``FitContext.go_graph.genes`` (the workflow's
   graph covers every target gene of the dataset, so unseen test genes are nodes too).
3. Training conditions whose target genes are not graph nodes (no GO terms), or that have more
   than two targets, are dropped before GEARS sees them (GEARS would silently keep their cells
   as unperturbed); they are logged to stderr and kept in :attr:`GEARSModel.dropped`.
4. Cells go to ``PertData.new_data_process`` in GEARS's layout (obs ``condition`` =
   ``ctrl`` / ``A+ctrl`` / ``A+B``, one ``cell_type``, var ``gene_name``, sparse float32 X)
   with a custom split: train = training conditions + ``ctrl``, val = ``FitContext.val``
   conditions (their cells), test = val (GEARS requires one). Without usable validation
   conditions the training conditions serve as val (best-epoch choice on the training fit).
   GEARS ranks DE genes on the cells it is given: train + val, never test.
5. ``GEARS(pert_data, device=context.device)``, ``model_initialize``, ``train``; GEARS keeps
   the epoch with the lowest validation top-20-DE MSE. Its output goes to stderr.

predict: ``GEARS.predict`` on gene lists, i.e. the mean over 300 sampled control cells of the
predicted expression (the input's log-normalized scale), in the dataset's gene order. Test
conditions with a target outside the graph, and ``ctrl``, are reported in
``Prediction.skipped``.

Seeds: GEARS draws from the global numpy / torch / random generators; fit and predict seed them
from ``config.seed`` (else ``FitContext.seed``) and restore their previous state afterwards.

Metric conventions of GEARS's own evaluation (``gears.inference``) versus
:mod:`perturbench.metrics` (checked to agree in ``tests/baselines/test_gears_model.py``): GEARS
'pearson_delta' = corr(p − c, t − c) over all genes with c = mean of its control cells and p, t
= means over a condition's cells of per-cell predictions / truths (our truth is the pseudobulk,
the same mean); NaN → 0 in GEARS, NaN kept by us. GEARS 'mse_de' = MSE over the condition's
top-20 DE genes of ``uns['rank_genes_groups_cov_all']`` (scanpy t-test, ``rankby_abs``) —
our ``de20``, not the non-dropout list.

scipy >= 1.15 breaks ``GEARS(pert_data)`` (a sparse matrix indexed by a pandas Series); the
project pins scipy < 1.15 and the fit test catches the breakage.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.gears_files import GO_GRAPH_KINDS, graph_nodes, write_gears_files
from perturbench.data.conditions import CTRL, canonical_condition, perturbed_genes, targets
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.graphs import read_gene2go
from perturbench.models.base import FitContext, Prediction

N_DE = 20  # GEARS scores the top-20 DE genes and stacks them per cell: it needs >= 20 genes
_CELL_TYPE = "cells"  # one cell type: our contract pools cells per condition


@dataclass(frozen=True)
class GEARSConfig:
    """GEARS hyper-parameters (names of ``GEARS.model_initialize`` / ``GEARS.train`` where they exist)."""

    epochs: int = 20  # GEARS train(epochs); the LR halves every epoch (StepLR gamma 0.5)
    hidden_size: int = 64  # width of gene / perturbation embeddings (GEARS hidden_size)
    batch_size: int = 32  # cells per training batch (GEARS get_dataloader)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 5e-4  # Adam weight decay (GEARS default)
    go_graph: Literal["full", "dataset"] = "dataset"  # GO-graph nodes (see module docstring)
    top_k: int = 20  # GO sources per target gene (GEARS num_similar_genes_go_graph)
    min_weight: float = 0.1  # GO Jaccard threshold (GEARS: > 0.1)
    gene2go: str | None = None  # GO table (TSV or GEARS gene2go_all.pkl); None: FitContext.go_table
    aliases: str | None = None  # alias → symbol TSV for old gene names (perturbench.graphs.read_gene2go)
    seed: int | None = None  # None: FitContext.seed

    def __post_init__(self) -> None:
        for name in ("epochs", "hidden_size", "batch_size", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GEARSConfig.{name}: expected an integer >= 1, got {value!r}")
        for name, positive in (("lr", True), ("weight_decay", False), ("min_weight", False)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and bool(np.isfinite(value)) and (value > 0 if positive else value >= 0)
            if not ok:
                bound = "> 0" if positive else ">= 0"
                raise ValueError(f"GEARSConfig.{name}: expected a finite number {bound}, got {value!r}")
        if self.go_graph not in GO_GRAPH_KINDS:
            raise ValueError(f"GEARSConfig.go_graph: expected one of {GO_GRAPH_KINDS}, got {self.go_graph!r}")


def _log(msg: str) -> None:
    print(f"[gears] {msg}", file=sys.stderr, flush=True)


def _import_gears() -> tuple[Any, Any]:
    """``(GEARS, PertData)``; GEARS's import-time side effects (global warning filter) are undone."""
    try:
        with warnings.catch_warnings():
            from gears import GEARS, PertData
    except ImportError as err:
        raise ImportError("GEARSModel needs cell-gears 0.1.2: pip install -e '.[gears]'") from err
    return GEARS, PertData


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global random, numpy and torch generators; restore their state afterwards."""
    import torch

    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """GEARS prints progress to stdout; send it to stderr (the rule log)."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def gears_condition(condition: str) -> str:
    """GEARS's name of a canonical condition: ``ctrl``, ``A+ctrl`` or ``A+B``."""
    genes = targets(condition)
    if not genes:
        return CTRL
    return f"{genes[0]}+{CTRL}" if len(genes) == 1 else "+".join(genes)


def unusable_reason(condition: str, nodes: set[str], *, for_training: bool) -> str | None:
    """Why GEARS cannot use ``condition`` (None when it can)."""
    genes = targets(condition)
    missing = [g for g in genes if g not in nodes]
    if missing:
        return f"target gene(s) {missing} not in the GEARS GO graph (no GO terms)"
    if for_training and len(genes) > 2:
        return f"GEARS trains on at most two target genes, {condition!r} has {len(genes)}"
    return None


class GEARSModel:
    """GEARS through the perturbench model contract (see module docstring)."""

    name = "gears"
    Config = GEARSConfig

    def __init__(self, **params: Any) -> None:
        self.config = GEARSConfig(**params)
        self.dropped: dict[str, str] = {}  # training / val condition → why GEARS could not use it
        self.timings: dict[str, float] = {}  # prepare_s, train_s, epochs (set by fit)
        self._gears: Any = None
        self._genes: list[str] = []
        self._nodes: set[str] = set()
        self._seed = 0

    @property
    def gears(self) -> Any:
        """The fitted ``gears.GEARS`` object (for GEARS's own evaluation functions)."""
        if self._gears is None:
            raise RuntimeError("GEARSModel: not fitted yet; call fit() first")
        return self._gears

    # -- fit -------------------------------------------------------------------------------
    def fit(self, train: PerturbDataset, *, context: FitContext) -> Self:
        cells = _require_cells(train)
        val = _checked_val(train, context.val)
        gene2go = read_gene2go(self._go_table(context), aliases=self.config.aliases)
        pool = set(train.genes) | set(perturbed_genes(train.conditions + (val.conditions if val else [])))
        if context.go_graph is not None:
            pool |= set(context.go_graph.genes)
        nodes = graph_nodes(gene2go, kind=self.config.go_graph, genes=pool)
        train_conds, val_conds = self._usable(train.conditions, val.conditions if val else [], set(nodes))
        if not train_conds:
            raise DatasetError(f"{train.source}: GEARS can use none of the {len(train.conditions)} training conditions")
        if not val_conds:
            _log("no usable validation conditions: the training conditions serve as validation")
        adata = _gears_cells(cells, train_conds, val.cells if val_conds else None, val_conds)
        split = {"train": [gears_condition(c) for c in [CTRL, *train_conds]],
                 "val": [gears_condition(c) for c in (val_conds or train_conds)]}
        split["test"] = split["val"]
        self._seed = context.seed if self.config.seed is None else self.config.seed
        if context.workdir is not None:
            Path(context.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gears-", dir=context.workdir) as folder:
            write_gears_files(folder, gene2go, nodes, top_k=self.config.top_k, min_weight=self.config.min_weight)
            with _seeded(self._seed), _quiet():
                self._gears = self._train(Path(folder), adata, split, context.device)
        self._genes, self._nodes = list(train.genes), set(nodes)
        return self

    def _go_table(self, context: FitContext) -> Path:
        path = self.config.gene2go if self.config.gene2go is not None else context.go_table
        if path is None:
            raise ValueError("GEARSModel: no GO table; set gene2go=<path to gene2go TSV or GEARS gene2go_all.pkl> "
                             "or pass FitContext(go_table=...)")
        return Path(path)

    def _usable(self, train_conds: Sequence[str], val_conds: Sequence[str],
                nodes: set[str]) -> tuple[list[str], list[str]]:
        self.dropped = {}
        kept: dict[str, list[str]] = {"train": [], "val": []}
        for part, conds in (("train", train_conds), ("val", val_conds)):
            for cond in conds:
                reason = unusable_reason(cond, nodes, for_training=True)
                if reason is None:
                    kept[part].append(cond)
                else:
                    self.dropped[cond] = reason
                    _log(f"dropped {part} condition {cond!r}: {reason}")
        return kept["train"], kept["val"]

    def _train(self, folder: Path, adata: ad.AnnData, split: dict[str, list[str]], device: str) -> Any:
        gears_cls, pert_data_cls = _import_gears()
        start = time.perf_counter()
        pert_data = pert_data_cls(str(folder))
        pert_data.new_data_process(dataset_name="data", adata=adata)
        split_path = folder / "split.pkl"
        with split_path.open("wb") as handle:
            pickle.dump(split, handle)
        pert_data.prepare_split(split="custom", split_dict_path=str(split_path))
        pert_data.get_dataloader(batch_size=self.config.batch_size, test_batch_size=self.config.batch_size)
        model = gears_cls(pert_data, device=device)
        model.model_initialize(hidden_size=self.config.hidden_size, num_similar_genes_go_graph=self.config.top_k)
        prepared = time.perf_counter()
        model.train(epochs=self.config.epochs, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.timings = {"prepare_s": prepared - start, "train_s": time.perf_counter() - prepared,
                        "epochs": float(self.config.epochs)}
        return model

    # -- predict ---------------------------------------------------------------------------
    def predict(self, conditions: Sequence[str]) -> Prediction:
        model = self.gears
        skipped: dict[str, str] = {}
        wanted: list[str] = []
        for raw in conditions:
            cond = canonical_condition(raw, where="GEARSModel.predict conditions")
            reason = "GEARS predicts perturbations, not the control" if cond == CTRL else \
                unusable_reason(cond, self._nodes, for_training=False)
            if reason is None:
                wanted.append(cond)
            else:
                skipped[cond] = reason
        mean = np.zeros((len(wanted), len(self._genes)))
        if wanted:
            with _seeded(self._seed), _quiet():
                result = model.predict([list(targets(c)) for c in wanted])
            mean = np.stack([np.asarray(result["_".join(targets(c))], dtype=np.float64) for c in wanted])
        return Prediction(self.name, wanted, list(self._genes), mean, skipped=skipped)


def _require_cells(train: PerturbDataset) -> ad.AnnData:
    if train.cells is None:
        raise DatasetError(f"{train.source}: GEARS needs cell-level data, "
                           f"but dataset {train.name!r} is pseudobulk-only")
    if train.cells.n_vars < N_DE:
        raise DatasetError(f"{train.source}: GEARS needs at least {N_DE} genes (it scores the top-{N_DE} "
                           f"DE genes), dataset {train.name!r} has {train.cells.n_vars}")
    return train.cells


def _checked_val(train: PerturbDataset, val: PerturbDataset | None) -> PerturbDataset | None:
    if val is None:
        return None
    if val.cells is None:
        raise DatasetError(f"{val.source}: GEARS validation data need cells; dataset {val.name!r} is pseudobulk-only")
    if val.genes != train.genes:
        raise DatasetError(f"{val.source}: validation genes differ from the training genes (names or order)")
    overlap = sorted(set(val.conditions) & set(train.conditions))
    if overlap:
        raise DatasetError(f"{val.source}: conditions in both training and validation data: {overlap[:5]}")
    return val


def _gears_cells(cells: ad.AnnData, train_conds: Sequence[str], val_cells: ad.AnnData | None,
                 val_conds: Sequence[str]) -> ad.AnnData:
    """Training cells (ctrl included) and validation cells in GEARS's input layout."""
    parts = [_select(cells, [CTRL, *train_conds])]
    if val_cells is not None and val_conds:
        parts.append(_select(val_cells, val_conds))
    labels = np.concatenate([p[0] for p in parts])
    x = sp.vstack([p[1] for p in parts], format="csr", dtype=np.float32)
    obs = pd.DataFrame({"condition": [gears_condition(c) for c in labels], "cell_type": _CELL_TYPE},
                       index=pd.Index([f"cell{i}" for i in range(len(labels))]))
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=pd.Index(list(cells.var_names)))
    return ad.AnnData(x, obs=obs, var=var)


def _select(cells: ad.AnnData, conditions: Sequence[str]) -> tuple[np.ndarray, sp.csr_matrix]:
    labels = cells.obs["condition"].astype(str).to_numpy()
    mask = np.isin(labels, list(conditions))
    x = cells.X[mask]
    return labels[mask], sp.csr_matrix(x)
