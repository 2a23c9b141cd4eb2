"""One contract test for every registered model: fit → self, predict → Prediction, h5ad round trip.

Runs each registered model (:func:`perturbench.models.registry.registered`) on tiny cell-level
data (24 genes, 6 perturbed genes as singles and pairs), with a GO table and graph in the context,
with its ``quick_params`` trait. A registered model whose module cannot be imported fails.
"""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pytest
from _toydata import toy_dataset, write_go_table

from perturbench.graphs import go_similarity_graph, read_gene2go
from perturbench.models.base import FitContext, Prediction
from perturbench.models.registry import get_model, registered

TRAIN = ["G00", "G01", "G02", "G03", "G00+G01", "G01+G02"]
VAL = ["G01+G03"]
TEST = ["G04", "G00+G02", "G02+G04", "G04+G05", "G03+G05"]  # unseen single, seen2, seen1, seen0, seen1


@pytest.mark.parametrize("name", list(registered()))
def test_registered_module_imports(name: str) -> None:
    importlib.import_module(registered()[name].module)  # fails, never skips


@pytest.mark.parametrize("name", [n for n in registered() if n != "precomputed"])
def test_model_contract(name: str, rng: np.random.Generator, tmp_path) -> None:
    data = toy_dataset(rng, cells_per_condition=12)
    table = write_go_table(tmp_path / "gene2go.tsv", rng)
    context = FitContext(seed=0, val=data.subset(VAL), go_graph=go_similarity_graph(read_gene2go(table)),
                         go_table=table, workdir=tmp_path / "work", log_dir=tmp_path / "log")
    model = get_model(name, **registered()[name].quick_params)
    assert model.name == name
    assert model.fit(data.subset(TRAIN), context=context) is model

    pred = model.predict(TEST)
    assert isinstance(pred, Prediction) and pred.model == name
    assert pred.conditions == [c for c in TEST if c not in pred.skipped]
    assert all(isinstance(r, str) and r for r in pred.skipped.values()) and set(pred.skipped) <= set(TEST)
    assert pred.genes == data.genes
    assert pred.mean.shape == (len(pred.conditions), len(data.genes)) and np.all(np.isfinite(pred.mean))

    path = tmp_path / "predictions" / f"{name}.h5ad"
    pred.write(path)
    raw = ad.read_h5ad(path)
    assert raw.X.dtype == np.float32 and raw.uns["model"] == name and "skipped" in raw.uns
    back = Prediction.read(path)
    assert (back.conditions, back.genes, back.skipped) == (pred.conditions, pred.genes, pred.skipped)
    np.testing.assert_allclose(back.mean, pred.mean, rtol=1e-6, atol=1e-6)
    assert (back.logvar is None) == (pred.logvar is None)
