"""GEARS behind our contract: offline fit/predict, its files, and its metrics against ours.

The metric cross-check compares, on the same GEARS predictions, GEARS's own evaluation
(``gears.inference.evaluate`` → ``compute_metrics`` 'mse_de', ``deeper_analysis``
'pearson_delta') with ours (``METRICS['mse_de20']``, ``METRICS['pearson_delta']``). Conventions:

- GEARS averages per-cell predictions (each from one sampled control cell) and per-cell truths
  over a condition's cells; the truth mean is our pseudobulk. We are given the same means.
- c (control) in GEARS 'pearson_delta' is the mean expression of the control cells GEARS was
  given (our training ``ctrl`` pseudobulk).
- GEARS 'mse_de' uses the top 20 of ``uns['rank_genes_groups_cov_all']`` (scanpy t-test against
  control, ``rankby_abs``, computed on the train + val cells): the same list as our ``de20``,
  not the non-dropout list. GEARS maps a NaN correlation to 0; we keep NaN.
- GEARS works in float32; both sides get the same float32 values, so they agree to 1e-6.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import requests
import scipy.sparse as sp

from baselines.gears_files import GENE2GO_FILE, GO_EDGES_FILE, NODES_FILE, go_edge_table, graph_nodes, write_gears_files
from baselines.gears_model import GEARSConfig, GEARSModel, gears_condition
from perturbench.data.cells import dataset_from_cells
from perturbench.data.contract import DatasetError, PerturbDataset
from perturbench.errors import ConfigError
from perturbench.graphs import GeneGraph
from perturbench.metrics import METRICS, ConditionArrays
from perturbench.models.base import FitContext
from perturbench.models.registry import get_model

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PERTURBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
GO_TABLE = SHARED / "human_gene2go_2022.tsv.gz"
NORMAN_CELLS = SHARED / "norman2019_mcfaline2023_cells_subset.h5ad"

# 24 measured genes, all with GO terms in the 2022 table; IER5L has none, PLK4 is not measured.
GENES = ["KLF1", "CEBPE", "ETS2", "FOXO4", "MAPK1", "SGK1", "TGFBR2", "MAP2K6", "MAP2K3", "CBL", "HK2", "GATA1",
         "SPI1", "TP53", "MYC", "JUN", "FOS", "CEBPA", "CEBPB", "HOXB9", "FOXL2", "PTPN12", "SET", "RUNX1"]
TRAIN = ["CEBPE", "ETS2", "FOXO4", "SGK1", "CEBPE+ETS2", "IER5L"]
VAL = ["MAP2K6", "CBL+MAP2K3"]
TEST = ["CBL", "FOXO4+SGK1", "IER5L+KLF1", "PLK4"]


def _tiny_cells(rng: np.random.Generator, conditions: list[str], n_cells: int = 20) -> ad.AnnData:
    """Log-normalized Poisson cells; each condition shifts 6 random genes up or down."""
    base = rng.uniform(0.5, 3.0, len(GENES))
    blocks, labels = [], []
    for cond in ["control", *conditions]:
        rate = base.copy()
        if cond != "control":
            hit = rng.choice(len(GENES), 6, replace=False)
            rate[hit] *= rng.choice([0.2, 4.0], 6)
        blocks.append(np.log1p(rng.poisson(rate, (n_cells, len(GENES)))))
        labels += [cond] * n_cells
    obs = pd.DataFrame({"condition": labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(sp.csr_matrix(np.vstack(blocks), dtype=np.float32), obs=obs,
                      var=pd.DataFrame(index=pd.Index(GENES)))


class _NetworkGuard:
    """Make every non-loopback network call raise, and record the attempts."""

    LOOPBACK = {"127.0.0.1", "localhost", "::1"}

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        connect = socket.socket.connect

        def guarded_connect(sock: socket.socket, address: object) -> object:
            if isinstance(address, tuple) and address[0] not in self.LOOPBACK:
                return self._refuse(f"socket.connect {address!r}")
            return connect(sock, address)

        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(requests, "get", lambda url, *a, **k: self._refuse(f"requests.get {url}"))
        mp.setattr(urllib.request, "urlopen", lambda url, *a, **k: self._refuse(f"urlopen {url}"))

    def _refuse(self, what: str) -> None:
        self.attempts.append(what)
        raise OSError(f"network blocked in test: {what}")


def _need_go_table() -> None:
    if not GO_TABLE.exists():
        pytest.skip(f"shared GO table {GO_TABLE} not present (set PERTURBENCH_SHARED_DATA)")


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """One torch thread: tiny batches run ~10x slower with two threads on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> tuple[PerturbDataset, PerturbDataset]:
    """(train, val) datasets of the tiny cells; test conditions stay out of both."""
    cells = _tiny_cells(np.random.default_rng(7), TRAIN + VAL + TEST)
    full = dataset_from_cells(cells, name="tiny", source="<tiny>", control_label="control")
    return full.subset(TRAIN), full.subset(VAL)


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory):
    """GEARS fitted offline on the tiny data (1 epoch, hidden 8) with the network and make_GO blocked."""
    _need_go_table()
    train, val = tiny
    graph = GeneGraph(tuple(GENES + ["PLK4"]), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    workdir = tmp_path_factory.mktemp("gears-work")
    context = FitContext(seed=3, val=val, go_graph=graph, go_table=GO_TABLE, workdir=workdir)
    with warnings.catch_warnings():  # GEARS switches warnings off globally on import
        import gears.utils
    with pytest.MonkeyPatch.context() as mp, _single_thread():
        guard = _NetworkGuard(mp)  # also refuses GEARS's own GO-graph builder (a 25-process pool)
        mp.setattr(gears.utils, "make_GO", lambda *a, **k: guard._refuse("gears.utils.make_GO"))
        model = GEARSModel(epochs=1, hidden_size=8, batch_size=8).fit(train, context=context)
        prediction = model.predict(TEST)
    return model, prediction, guard.attempts, workdir


def test_fit_predict_offline(fitted, tiny):
    model, prediction, attempts, workdir = fitted
    assert attempts == []
    assert prediction.conditions == ["CBL", "FOXO4+SGK1", "PLK4"]
    assert prediction.genes == GENES
    assert prediction.mean.shape == (3, len(GENES)) and np.all(np.isfinite(prediction.mean))
    assert set(prediction.skipped) == {"IER5L+KLF1"} and "IER5L" in prediction.skipped["IER5L+KLF1"]
    assert set(model.dropped) == {"IER5L"}
    assert list(workdir.iterdir()) == []  # GEARS's scratch folder is removed after fit


def test_prediction_is_on_expression_scale(fitted, tiny):
    """GEARS predicts expression (control + change), so predictions sit near the control mean."""
    _, prediction, _, _ = fitted
    ctrl = tiny[0].ctrl
    assert np.abs(prediction.mean - ctrl).mean() < 0.5 * np.abs(ctrl).mean()


def test_metrics_agree_with_gears_evaluation(fitted, tiny):
    from gears.inference import compute_metrics, deeper_analysis, evaluate

    model, _, _, _ = fitted
    g = model.gears
    res = evaluate(g.dataloader["test_loader"], g.best_model, False, "cpu")
    _, gears_mse = compute_metrics(res)
    gears_pd = deeper_analysis(g.adata, res)
    is_ctrl = (g.adata.obs["condition"] == "ctrl").to_numpy()
    ctrl = np.asarray(g.adata.X[is_ctrl].mean(axis=0), dtype=np.float64).ravel()
    name_of = dict(g.adata.obs[["condition", "condition_name"]].astype(str).values)
    val = tiny[1]
    for cond in VAL:
        pert = gears_condition(cond)
        rows = res["pert_cat"] == pert
        truth = res["truth"][rows].mean(0).astype(np.float64)
        de_names = list(g.adata.uns["rank_genes_groups_cov_all"][name_of[pert]][:20])
        assert set(de_names) == set(val.de_genes("de20")[cond])  # GEARS's DE list is our de20
        np.testing.assert_allclose(truth, val.expression([cond])[0], atol=1e-5)  # truth mean = pseudobulk
        np.testing.assert_allclose(ctrl, tiny[0].ctrl, atol=1e-5)  # c = control pseudobulk
        arrays = ConditionArrays(
            pred=res["pred"][rows].mean(0).astype(np.float64), truth=truth, ctrl=ctrl, pert_ref=ctrl,
            top1000=np.arange(len(GENES)), de20=pd.Index(GENES).get_indexer(de_names), de20_nondropout=None,
            all_truths=truth[None, :], index=0,
        )
        assert METRICS["mse_de20"].fn(arrays) == pytest.approx(gears_mse[pert]["mse_de"], abs=1e-6)
        assert METRICS["pearson_delta"].fn(arrays) == pytest.approx(gears_pd[pert]["pearson_delta"], abs=1e-6)


def test_full_graph_from_gears_pickle_without_validation(tiny, tmp_path):
    """Online path: GEARS's own gene2go_all.pkl layout; 'full' graph = every gene in it.

    PLK4 (not measured, no FitContext.go_graph) is a node because the table has it; without
    validation data the training conditions serve as validation.
    """
    from perturbench.graphs import read_gene2go

    _need_go_table()
    table = read_gene2go(GO_TABLE)
    pkl = tmp_path / "gene2go_all.pkl"
    pd.to_pickle({g: set(table[g]) for g in GENES + ["PLK4", "GATA2"]}, pkl)
    model = GEARSModel(epochs=1, hidden_size=8, batch_size=8, go_graph="full", gene2go=str(pkl))
    with _single_thread():
        prediction = model.fit(tiny[0], context=FitContext(seed=1, workdir=tmp_path / "work")).predict(["PLK4"])
    assert model.gears.pert_list == sorted(GENES + ["PLK4", "GATA2"])
    assert prediction.conditions == ["PLK4"] and prediction.skipped == {}
    assert set(model.dropped) == {"IER5L"}


@pytest.mark.slow
def test_norman_cells_one_epoch(tmp_path):
    if not (NORMAN_CELLS.exists() and GO_TABLE.exists()):
        pytest.skip(f"{NORMAN_CELLS} or {GO_TABLE} not present (set PERTURBENCH_SHARED_DATA)")
    from perturbench.data.cells import read_cells_h5ad

    ds = read_cells_h5ad(NORMAN_CELLS, name="norman19", control_label="control", keep={"dataset": "norman19"})
    test = ["KLF1+MAP2K6", "MAP2K6", "IER5L"]
    val = ["SGK1", "CEBPE+RUNX1T1"]
    train = ds.subset([c for c in ds.conditions if c not in test + val])
    graph = GeneGraph(tuple(sorted(set(ds.genes) | {g for c in ds.conditions for g in c.split("+")})),
                      np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    context = FitContext(seed=0, val=ds.subset(val), go_graph=graph, go_table=GO_TABLE, workdir=tmp_path)
    with _single_thread():
        prediction = GEARSModel(epochs=1).fit(train, context=context).predict(test)
    assert prediction.conditions == ["KLF1+MAP2K6", "MAP2K6"]
    assert list(prediction.skipped) == ["IER5L"]
    assert np.all(np.isfinite(prediction.mean)) and prediction.mean.shape == (2, len(ds.genes))


# -- input errors (no GEARS run needed) --------------------------------------------------------
def test_pseudobulk_only_data_is_rejected(tiny):
    pb_only = PerturbDataset("pb_only", tiny[0].pseudobulk, None, False, "<pb>")
    with pytest.raises(DatasetError, match=r"<pb>: GEARS needs cell-level data, but dataset 'pb_only'"):
        GEARSModel(epochs=1).fit(pb_only, context=FitContext())


def test_too_few_genes_are_rejected(tiny):
    small = tiny[0].select_genes(GENES[:12])
    with pytest.raises(DatasetError, match=r"at least 20 genes .* dataset 'tiny' has 12"):
        GEARSModel(epochs=1).fit(small, context=FitContext())


def test_missing_go_table_is_rejected(tiny):
    with pytest.raises(ValueError, match=r"GEARSModel: no GO table"):
        GEARSModel(epochs=1).fit(tiny[0], context=FitContext(val=tiny[1]))


def test_validation_with_other_genes_is_rejected(tiny):
    val = tiny[1].select_genes(GENES[::-1])
    with pytest.raises(DatasetError, match=r"validation genes differ"):
        GEARSModel(epochs=1).fit(tiny[0], context=FitContext(val=val))


def test_validation_sharing_training_conditions_is_rejected(tiny):
    with pytest.raises(DatasetError, match=r"conditions in both training and validation data: \['CEBPE'\]"):
        GEARSModel(epochs=1).fit(tiny[0], context=FitContext(val=tiny[0].subset(["CEBPE"])))


def test_predict_before_fit_is_rejected():
    with pytest.raises(RuntimeError, match=r"not fitted yet"):
        GEARSModel().predict(["CBL"])


def test_unknown_hyper_parameter_is_rejected():
    with pytest.raises(ConfigError, match=r"model 'gears': params: unknown hyper-parameter\(s\) \['hidden'\]"):
        get_model("gears", hidden=8)


def test_unknown_go_graph_kind_is_rejected():
    with pytest.raises(ValueError, match=r"GEARSConfig.go_graph: .* got 'small'"):
        GEARSConfig(go_graph="small")


def test_non_positive_epochs_are_rejected():
    with pytest.raises(ValueError, match=r"GEARSConfig.epochs: expected an integer >= 1, got 0"):
        GEARSConfig(epochs=0)


def test_zero_learning_rate_is_rejected():
    with pytest.raises(ValueError, match=r"GEARSConfig.lr: expected a finite number > 0, got 0.0"):
        GEARSConfig(lr=0.0)


def test_gears_condition_names():
    assert [gears_condition(c) for c in ["ctrl", "KLF1", "CEBPE+ETS2"]] == ["ctrl", "KLF1+ctrl", "CEBPE+ETS2"]


# -- the offline GEARS files ---------------------------------------------------------------------
GENE2GO = {
    "A": frozenset({"GO:1", "GO:2", "GO:3"}),
    "B": frozenset({"GO:1", "GO:2"}),
    "C": frozenset({"GO:3", "GO:4", "GO:5", "GO:6", "GO:7", "GO:8", "GO:9", "GO:10", "GO:11", "GO:12", "GO:13"}),
    "D": frozenset({"GO:99"}),
    "E": frozenset(),
}


def _jaccard(a: str, b: str) -> float:
    return len(GENE2GO[a] & GENE2GO[b]) / len(GENE2GO[a] | GENE2GO[b])


def test_graph_nodes_full_and_dataset():
    assert graph_nodes(GENE2GO, kind="full") == ["A", "B", "C", "D"]
    assert graph_nodes(GENE2GO, kind="dataset", genes=["C", "A", "E", "Z"]) == ["A", "C"]


def test_graph_nodes_rejects_empty_node_list():
    with pytest.raises(ValueError, match=r"go_graph 'dataset': no gene has GO terms"):
        graph_nodes(GENE2GO, kind="dataset", genes=["E", "Z"])


def test_go_edge_table_matches_hand_jaccard():
    """Self-loops of 1.0; other edges are exactly the pairs with J > 0.1 (J(A,C) = 1/13 is not)."""
    table = go_edge_table(GENE2GO, ["A", "B", "C", "D"])
    got = {(s, t): w for s, t, w in table.itertuples(index=False)}
    want = {(g, g): 1.0 for g in "ABCD"}
    want.update({(s, t): _jaccard(s, t) for s in "ABCD" for t in "ABCD" if s != t and _jaccard(s, t) > 0.1})
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(v) for k, v in want.items())
    assert set(want) == {("A", "A"), ("B", "B"), ("C", "C"), ("D", "D"), ("A", "B"), ("B", "A")}


def test_go_edge_table_keeps_top_k_sources_per_target():
    table = go_edge_table(GENE2GO | {"F": frozenset({"GO:1", "GO:2", "GO:3"})}, ["A", "B", "F"], top_k=1)
    assert set(table.loc[table["target"] == "A", "source"]) == {"A", "F"}  # J(F,A) = 1 beats J(B,A) = 2/3


def test_go_edge_table_rejects_nodes_without_terms():
    with pytest.raises(ValueError, match=r"GEARS GO nodes without GO terms: \['E'\]"):
        go_edge_table(GENE2GO, ["A", "E"])


def test_write_gears_files_layout(tmp_path):
    paths = write_gears_files(tmp_path, GENE2GO, ["A", "B"])
    assert sorted(paths) == sorted([GENE2GO_FILE, NODES_FILE, GO_EDGES_FILE])
    assert pd.read_pickle(paths[NODES_FILE]) == ["A", "B"]
    assert pd.read_pickle(paths[GENE2GO_FILE]) == {"A": set(GENE2GO["A"]), "B": set(GENE2GO["B"])}
    edges = pd.read_csv(paths[GO_EDGES_FILE])
    assert list(edges.columns) == ["source", "target", "importance"]
    assert set(edges["source"]) | set(edges["target"]) <= {"A", "B"}
